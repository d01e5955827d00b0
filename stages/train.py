"""train stage, one item per (model, seed): the He et al. recipe of params.yaml `train.recipe`."""
from pipeline.data.loader import load_prepared
from pipeline.study.item import Arg, Stage, StageItem
from pipeline.train.runner import RunOutputs, train_tracked


def work(item: StageItem) -> None:
    a = item.args
    train_tracked(item, model_id=a.model, seed=a.seed, recipe=item.sections["train"].recipe_for(a.model),
                  data=load_prepared(a.data), train_eval=True,
                  outputs=RunOutputs(a.weights, a.metrics, a.record, a.history, a.checkpoint, a.curve))


STAGE = Stage("train", __doc__, work, sections=("train",),
              args=(Arg("model", among="train.models", sizes="model", help='model id "<family>-<depth>", e.g. resnet-56'),
                    Arg("seed", int)),
              inputs=("data",), outputs=("weights", "metrics", "record", "history", "curve"),
              helps={"weights": "the trained model's weights file",
                     "curve": "the running training error and loss of the augmented batches against iterations (CSV)"},
              run_name="{model}-s{seed}", about=("model", "seed"), trains=True,
              resumes="the training state after its last epoch")

if __name__ == "__main__":
    STAGE.main()

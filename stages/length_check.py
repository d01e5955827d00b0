"""length_check stage, one item per model of `train.length_check.models`: the train item of seed
`train.length_check.seed` again with its schedule `factor` times as long (Recipe.lengthened), so the report
can say how far the study's errors are from convergence (issue 26: the 20-layer pair at 2T)."""
from pipeline.data.loader import load_prepared
from pipeline.study.item import Arg, Stage, StageItem
from pipeline.train.runner import RunOutputs, train_tracked


def work(item: StageItem) -> None:
    a, train = item.args, item.sections["train"]
    check = train.length_check
    train_tracked(item, model_id=a.model, seed=check.seed, recipe=train.recipe_for(a.model).lengthened(check.factor),
                  data=load_prepared(a.data), train_eval=True,
                  outputs=RunOutputs(a.weights, a.metrics, a.record, a.history, a.checkpoint, a.curve))


STAGE = Stage("length_check", __doc__, work, sections=("train",),
              args=(Arg("model", among="train.length_check.models", sizes="model",
                        help='model id "<family>-<depth>", e.g. resnet-20'),),
              inputs=("data",), outputs=("weights", "metrics", "record", "history", "curve"),
              helps={"weights": "the longer run's weights file",
                     "curve": "the running training error and loss of the augmented batches against iterations (CSV)"},
              run_name="{model}-long", about=("model",), trains=True,
              resumes="the training state after its last epoch")

if __name__ == "__main__":
    STAGE.main()

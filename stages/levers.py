"""levers stage, one item per transfer source: augmentation and the learning rate, for fine-tuning
with `transfer.levers.shots` labelled images per class, on the finetune stage's draws.

- augmentation off: the finetune strategy without the crop and flip (the finetune stage has it on);
- learning rate: the labelled set less `val_per_class` images per class trains fine-tuning at each
  rate of `lrs`; the held-out images choose the rate, the test images only score it.
"""
from pipeline.data.loader import load_prepared
from pipeline.study.item import Arg, Stage, StageItem
from pipeline.transfer.runner import levers


def work(item: StageItem) -> None:
    levers(item, item.sections["transfer"], item.args.source, load_prepared(item.args.data), item.args.weights)


STAGE = Stage("levers", __doc__, work, sections=("transfer",),
              args=(Arg("source", among="transfer.levers.sources", sizes="source", help="a name in transfer.sources"),),
              inputs=("data", "weights"), outputs=("metrics", "record"),
              helps={"weights": "the pretrain stage's weights of the source"},
              run_name="levers-{source}", about=("source",), trains=True, resumes="the finished draws")

if __name__ == "__main__":
    STAGE.main()

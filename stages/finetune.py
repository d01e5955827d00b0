"""finetune stage, one item per (source, shots): every strategy on `transfer.draws` labelled sets."""
from pipeline.data.loader import load_prepared
from pipeline.study.item import Arg, Stage, StageItem
from pipeline.transfer.runner import finetune


def work(item: StageItem) -> None:
    a = item.args
    finetune(item, item.sections["transfer"], a.source, a.shots, load_prepared(a.data), a.weights, a.history)


STAGE = Stage("finetune", __doc__, work, sections=("transfer",),
              args=(Arg("source", among="transfer.sources", sizes="source", help="a name in transfer.sources"),
                    Arg("shots", int, among="transfer.shots")),
              inputs=("data", "weights"), outputs=("metrics", "record", "history"),
              helps={"weights": "the pretrain stage's weights of the source"},
              run_name="finetune-{source}-{shots}", about=("source", "shots"), trains=True,
              resumes="the finished draws")

if __name__ == "__main__":
    STAGE.main()

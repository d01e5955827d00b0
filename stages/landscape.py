"""landscape stage, one item per model of `analysis.models`: the loss surfaces around its trained weights of
train seed `analysis.seed` (Li et al. 2018; pipeline/analysis/analyze.py), the report's landscape figures."""
from pipeline.analysis.analyze import LandscapeOutputs, landscape
from pipeline.study.item import Arg, Stage, StageItem


def work(item: StageItem) -> None:
    a = item.args
    landscape(item, a.model, item.sections["analysis"], item.sections["train"], a.data, a.weights,
              LandscapeOutputs(a.landscape_1d, a.landscape_2d))


STAGE = Stage("landscape", __doc__, work, sections=("analysis", "train"),
              args=(Arg("model", among="analysis.models", sizes="model"),),
              inputs=("data", "weights"), outputs=("metrics", "record", "landscape_1d", "landscape_2d"),
              helps={"weights": "the train item's weights file", "landscape_1d": "CSV: loss along one direction",
                     "landscape_2d": "CSV: loss over two directions"},
              run_name="landscape-{model}", about=("model",), resumes="the surface points done")

if __name__ == "__main__":
    STAGE.main()

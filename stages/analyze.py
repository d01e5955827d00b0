"""analyze stage, one item per model of `analysis.models`: why residual networks train
(pipeline/analysis/analyze.py): gradient flow at init and trained, and the loss landscape."""
from pipeline.analysis.analyze import AnalysisOutputs, analyze
from pipeline.study.item import Arg, Stage, StageItem


def work(item: StageItem) -> None:
    a = item.args
    analyze(item, a.model, item.sections["analysis"], item.sections["train"], a.data, a.weights,
            AnalysisOutputs(a.gradients, a.landscape_1d, a.landscape_2d))


STAGE = Stage("analyze", __doc__, work, sections=("analysis", "train"),
              args=(Arg("model", among="analysis.models", sizes="model"),),
              inputs=("data", "weights"), outputs=("metrics", "record", "gradients", "landscape_1d", "landscape_2d"),
              helps={"weights": "the train item's weights file", "gradients": "CSV: per-layer gradient norms",
                     "landscape_1d": "CSV: loss along one direction", "landscape_2d": "CSV: loss over two directions"},
              run_name="analyze-{model}", about=("model",), resumes="the surface points done")

if __name__ == "__main__":
    STAGE.main()

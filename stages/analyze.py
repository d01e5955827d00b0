"""analyze stage, one item per model of `analysis.models` and train seed: why residual networks train
(pipeline/analysis/analyze.py): gradient flow at init and trained, and the trained minimum's sharpness."""
from pipeline.analysis.analyze import AnalysisOutputs, analyze
from pipeline.study.item import Arg, Stage, StageItem


def work(item: StageItem) -> None:
    a = item.args
    analyze(item, a.model, a.seed, item.sections["analysis"], item.sections["train"], a.data, a.weights,
            AnalysisOutputs(a.gradients, a.sharpness))


STAGE = Stage("analyze", __doc__, work, sections=("analysis", "train"),
              args=(Arg("model", among="analysis.models", sizes="model"), Arg("seed", int, among="train.seeds")),
              inputs=("data", "weights"), outputs=("metrics", "record", "gradients", "sharpness"),
              helps={"weights": "the train item's weights file", "gradients": "CSV: per-layer gradient norms",
                     "sharpness": "CSV: the sharpness each random start of the ascent found"},
              run_name="analyze-{model}-s{seed}", about=("model", "seed"))

if __name__ == "__main__":
    STAGE.main()

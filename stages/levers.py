"""levers stage, one item per transfer source: augmentation and the learning rate, for fine-tuning
with `transfer.levers.shots` labelled images per class, on the finetune stage's draws.

- augmentation off: the finetune strategy without the crop and flip (the finetune stage has it on);
- learning rate: the labelled set less `val_per_class` images per class trains fine-tuning at each
  rate of `lrs`; the held-out images choose the rate, the test images only score it.
"""
import argparse

from pipeline import tracking
from pipeline.study.cli import add_paths, run_stage
from pipeline.config import ConfigError, fingerprint, flatten, load_section
from pipeline.data.loader import load_prepared
from pipeline.outputs import Progress, check_writable
from pipeline.provenance import environment
from pipeline.transfer.experiment import Experiment


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--source", required=True, help="a name in transfer.sources")
    add_paths(ap, "data", "metrics", "record", weights="the pretrain stage's weights of the source",
              checkpoint="the finished draws, while the item is unfinished")
    args = ap.parse_args(argv)
    study, cfg = load_section("study"), load_section("transfer")
    levers = cfg.levers
    if args.source not in levers.sources:
        raise ConfigError(f"--source {args.source}: not in transfer.levers.sources ({', '.join(levers.sources)})")
    check_writable(args.metrics, args.record, args.checkpoint)
    exp = Experiment.open(cfg, args.source, load_prepared(args.data), args.weights)
    params = {"source": args.source, "shots": levers.shots, "lrs": levers.lrs, "val_per_class": levers.val_per_class,
              "draws": cfg.draws, **{f"recipe.{k}": v for k, v in flatten(cfg.finetune).items()}, **exp.rt.describe()}
    # the draws an interrupted run finished (Experiment.run_levers)
    progress = Progress(args.checkpoint, fingerprint(params, cfg.seed, exp.digest))
    done = progress.load()
    with tracking.item_run(study.name, "levers", f"levers-{args.source}", params=params, env=environment(exp.rt.device),
                           about={"source": args.source, "model": exp.source.model}) as run:
        summary = exp.run_levers(cfg, done, on_result=lambda: progress.save(done))
        run.log_metrics({"augmentation_off.test_error": summary["augmentation_off"]["test_error"],
                         "lr_chosen_on_val.test_error": summary["lr_chosen_on_val"]["test_error"],
                         **{f"lr_{lr}.test_error": row["test_error"] for lr, row in summary["lr_sweep"].items()}})
        run.write_result(args.metrics, summary, args.record)
    progress.remove()


if __name__ == "__main__":
    run_stage(main, tracked=True)

"""levers stage, one item per transfer source: augmentation and the learning rate, for fine-tuning
with `transfer.levers.shots` labelled images per class, on the finetune stage's draws.

- augmentation off: the finetune strategy without the crop and flip (the finetune stage has it on);
- learning rate: the labelled set less `val_per_class` images per class trains fine-tuning at each
  rate of `lrs`; the held-out images choose the rate, the test images only score it.
"""
import argparse
from pathlib import Path

from pipeline import tracking
from pipeline.cli import run_stage
from pipeline.config import ConfigError, fingerprint, flatten, load_section
from pipeline.data.loader import load_prepared
from pipeline.outputs import Progress, check_writable
from pipeline.provenance import environment
from pipeline.train import evaluate
from pipeline.transfer import Draw, hold_out, run_strategy, summarize
from pipeline.transfer_experiment import Experiment


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--source", required=True, help="a name in transfer.sources")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--weights", type=Path, required=True, help="the pretrain stage's weights of the source")
    ap.add_argument("--metrics", type=Path, required=True)
    ap.add_argument("--record", type=Path, required=True, help="its settings and provenance (JSON)")
    ap.add_argument("--checkpoint", type=Path, required=True, help="the finished draws, while the item is unfinished")
    args = ap.parse_args(argv)
    study, cfg = load_section("study"), load_section("transfer")
    levers = cfg.levers
    if args.source not in levers.sources:
        raise ConfigError(f"--source {args.source}: not in transfer.levers.sources ({', '.join(levers.sources)})")
    check_writable(args.metrics, args.record, args.checkpoint)
    exp = Experiment.open(cfg, args.source, load_prepared(args.data), args.weights)
    params = {"source": args.source, "shots": levers.shots, "lrs": levers.lrs, "val_per_class": levers.val_per_class,
              "draws": cfg.draws, **{f"recipe.{k}": v for k, v in flatten(cfg.finetune).items()}, **exp.rt.describe()}
    # the draws an interrupted run finished: "augmentation_off" and "lr <rate>" results, one per draw
    progress = Progress(args.checkpoint, fingerprint(params, cfg.seed, exp.digest))
    done = progress.load()
    no_aug, sweep = done.setdefault("augmentation_off", []), {lr: done.setdefault(f"lr {lr}", []) for lr in levers.lrs}
    with tracking.item_run(study.name, "levers", f"levers-{args.source}", params=params, env=environment(exp.rt.device),
                           about={"source": args.source, "model": exp.source.model}) as run:
        for d, draw in enumerate(exp.draws(cfg, levers.shots, frozen_test=False)):
            if d == len(no_aug):
                no_aug.append(run_strategy("finetune", exp.make_model, draw, exp.prep, cfg.finetune, exp.rt,
                                           augment=False))
                progress.save(done)
            train, val = hold_out(draw.train, exp.target.num_classes, levers.val_per_class, draw.seed)
            part = Draw(train, draw.test, None, draw.num_classes, draw.seed)
            for lr in levers.lrs:
                if d < len(sweep[lr]):
                    continue
                model = exp.make_model(True, draw.seed)
                result = run_strategy("finetune", lambda *_: model, part, exp.prep, cfg.finetune, exp.rt, lr=lr)
                result["val_error"] = evaluate(model, val.to(exp.rt.device), exp.prep, exp.rt)["error"]
                sweep[lr].append(result)
                progress.save(done)
                print(f"[levers-{args.source}] draw {d} lr {lr}: held-out error {result['val_error'] * 100:.1f} %, "
                      f"test error {result['test_error'] * 100:.1f} %", flush=True)
        # per draw, the rate with the lowest held-out error (of equal ones, the first in `lrs`)
        chosen = [{**sweep[best][d], "lr": best} for d in range(cfg.draws)
                  for best in [min(levers.lrs, key=lambda lr: sweep[lr][d]["val_error"])]]
        summary = {"augmentation_off": summarize(no_aug),
                   "lr_sweep": {str(lr): {**summarize(r), "val_error": sum(x["val_error"] for x in r) / len(r)}
                                for lr, r in sweep.items()},
                   "lr_chosen_on_val": {**summarize(chosen), "lrs": [c["lr"] for c in chosen]}}
        run.log_metrics({"augmentation_off.test_error": summary["augmentation_off"]["test_error"],
                         "lr_chosen_on_val.test_error": summary["lr_chosen_on_val"]["test_error"],
                         **{f"lr_{lr}.test_error": row["test_error"] for lr, row in summary["lr_sweep"].items()}})
        run.write_result(args.metrics, summary, args.record)
    progress.remove()


if __name__ == "__main__":
    run_stage(main, tracked=True)

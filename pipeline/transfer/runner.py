"""The finetune and levers items, tracked and resumable: every strategy on one source's labelled sets, and
the levers of fine-tuning (pipeline/transfer/experiment.py does the work)."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import TransferConfig, flatten
from pipeline.data.loader import PreparedData
from pipeline.outputs import write_rows
from pipeline.provenance import environment
from pipeline.tracking import Item
from pipeline.transfer.experiment import Experiment, curves
from pipeline.strategy import strategy
from pipeline.transfer.strategies import summarize


def finetune(item: Item, cfg: TransferConfig, source: str, shots: int, data: PreparedData, weights: Path,
             history: Path) -> None:
    """Every strategy of `cfg.strategies` on `cfg.draws` labelled sets of `shots` images per class; the
    draws an interrupted item finished are kept (its resume state)."""
    exp = Experiment.open(cfg, source, data, weights)
    draws = exp.draws(cfg, shots, frozen_test=any(strategy(s).head_only for s in cfg.strategies))
    name = f"{source}-{shots}"
    params = {"source": source, "shots": shots, "model": exp.source.model, "draws": cfg.draws,
              "strategies": cfg.strategies, "target_classes": exp.target.num_classes, "test_images": len(exp.target.test),
              "input_size": exp.prep.size, **{f"recipe.{k}": v for k, v in flatten(cfg.finetune).items()},
              **exp.rt.describe()}
    print(f"[{name}] {exp.source.model}: {shots} labelled images per class of {exp.target.num_classes}, "
          f"{cfg.draws} draws, input {exp.prep.size} px, scored on {len(exp.target.test)} test images", flush=True)
    # the draws an interrupted run finished, each strategy's result and training curve
    progress = item.resume(params, cfg.seed, exp.digest)
    done = progress.load()
    with item.run(params=params, env=environment(exp.rt.device), about={"model": exp.source.model}) as run:
        def finished(d: int, strategy: str, result: dict) -> None:
            progress.save(done)
            run.log_metrics({f"{strategy}.test_error": result["test_error"]}, step=d)
            print(f"[{name}] draw {d} {strategy}: test error {result['test_error'] * 100:.1f} % "
                  f"({result['seconds']:.1f} s)", flush=True)

        exp.run_strategies(cfg, draws, done, finished)
        summary = {s: summarize(done[s]) for s in cfg.strategies}
        run.log_metrics({f"{s}.{k}": v for s, row in summary.items() for k, v in row.items() if isinstance(v, (int, float))})
        write_rows(history, curves(done, cfg.strategies))
        run.write_result({"strategies": summary})


def levers(item: Item, cfg: TransferConfig, source: str, data: PreparedData, weights: Path) -> None:
    """Fine-tuning without augmentation and over `cfg.levers.lrs` (Experiment.run_levers), resumable."""
    exp = Experiment.open(cfg, source, data, weights)
    lv = cfg.levers
    params = {"source": source, "shots": lv.shots, "lrs": lv.lrs, "val_per_class": lv.val_per_class,
              "draws": cfg.draws, **{f"recipe.{k}": v for k, v in flatten(cfg.finetune).items()}, **exp.rt.describe()}
    # the draws an interrupted run finished (Experiment.run_levers)
    progress = item.resume(params, cfg.seed, exp.digest)
    done = progress.load()
    with item.run(params=params, env=environment(exp.rt.device), about={"model": exp.source.model}) as run:
        summary = exp.run_levers(cfg, done, on_result=lambda: progress.save(done))
        run.log_metrics({"augmentation_off.test_error": summary["augmentation_off"]["test_error"],
                         "lr_chosen_on_val.test_error": summary["lr_chosen_on_val"]["test_error"],
                         **{f"lr_{lr}.test_error": row["test_error"] for lr, row in summary["lr_sweep"].items()}})
        run.write_result(summary)

"""finetune stage, one item per (source, shots): every strategy on `transfer.draws` labelled sets."""
import argparse

from pipeline import tracking
from pipeline.study.cli import add_paths, run_stage
from pipeline.config import ConfigError, fingerprint, flatten, load_section
from pipeline.data.loader import load_prepared
from pipeline.outputs import Progress, check_writable, write_rows
from pipeline.provenance import environment
from pipeline.strategy import strategy
from pipeline.transfer.strategies import summarize
from pipeline.transfer.experiment import Experiment, curves


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--source", required=True, help="a name in transfer.sources")
    ap.add_argument("--shots", type=int, required=True)
    add_paths(ap, "data", "metrics", "record", "history", weights="the pretrain stage's weights of the source",
              checkpoint="the finished draws, while the item is unfinished")
    args = ap.parse_args(argv)
    study, cfg = load_section("study"), load_section("transfer")
    if args.shots not in cfg.shots:
        raise ConfigError(f"--shots {args.shots}: not in transfer.shots ({', '.join(map(str, cfg.shots))})")
    check_writable(args.metrics, args.record, args.history, args.checkpoint)
    exp = Experiment.open(cfg, args.source, load_prepared(args.data), args.weights)
    draws = exp.draws(cfg, args.shots, frozen_test=any(strategy(s).head_only for s in cfg.strategies))
    name = f"{args.source}-{args.shots}"
    params = {"source": args.source, "shots": args.shots, "model": exp.source.model, "draws": cfg.draws,
              "strategies": cfg.strategies, "target_classes": exp.target.num_classes, "test_images": len(exp.target.test),
              "input_size": exp.prep.size, **{f"recipe.{k}": v for k, v in flatten(cfg.finetune).items()},
              **exp.rt.describe()}
    print(f"[{name}] {exp.source.model}: {args.shots} labelled images per class of {exp.target.num_classes}, "
          f"{cfg.draws} draws, input {exp.prep.size} px, scored on {len(exp.target.test)} test images", flush=True)
    # the draws an interrupted run finished, each strategy's result and training curve
    progress = Progress(args.checkpoint, fingerprint(params, cfg.seed, exp.digest))
    done = progress.load()
    with tracking.item_run(study.name, "finetune", f"finetune-{name}", params=params, env=environment(exp.rt.device),
                           about={"source": args.source, "model": exp.source.model, "shots": args.shots}) as run:
        def finished(d: int, strategy: str, result: dict) -> None:
            progress.save(done)
            run.log_metrics({f"{strategy}.test_error": result["test_error"]}, step=d)
            print(f"[{name}] draw {d} {strategy}: test error {result['test_error'] * 100:.1f} % "
                  f"({result['seconds']:.1f} s)", flush=True)

        exp.run_strategies(cfg, draws, done, finished)
        summary = {s: summarize(done[s]) for s in cfg.strategies}
        run.log_metrics({f"{s}.{k}": v for s, row in summary.items() for k, v in row.items() if isinstance(v, (int, float))})
        write_rows(args.history, curves(done, cfg.strategies))
        run.write_result(args.metrics, {"strategies": summary}, args.record)
    progress.remove()


if __name__ == "__main__":
    run_stage(main, tracked=True)

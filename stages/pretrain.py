"""pretrain stage: the transfer study's source model, trained on `transfer.source_classes` only."""
import argparse
from pathlib import Path

from pipeline.cli import run_stage
from pipeline.config import load_section
from pipeline.data.loader import load_prepared
from pipeline.runner import RunOutputs, train_tracked
from pipeline.transfer import check_classes


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--metrics", type=Path, required=True)
    ap.add_argument("--history", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path, required=True)
    args = ap.parse_args(argv)
    study, cfg = load_section("study"), load_section("transfer")
    data = load_prepared(args.data)
    check_classes(cfg, data.num_classes)
    train_tracked(study=study.name, stage="pretrain", name=f"source-{cfg.source_model}", model_id=cfg.source_model,
                  seed=cfg.seed, recipe=cfg.pretrain, data=data,
                  outputs=RunOutputs(args.weights, args.metrics, args.history, args.checkpoint),
                  classes=cfg.source_classes)


if __name__ == "__main__":
    run_stage(main)

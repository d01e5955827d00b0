"""train stage, one item per (model, seed): the He et al. recipe of params.yaml `train.recipe`."""
import argparse

from pipeline.study.cli import add_paths, run_stage
from pipeline.config import ConfigError, load_section
from pipeline.data.loader import load_prepared
from pipeline.train.runner import RunOutputs, train_tracked


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help='model id "<family>-<depth>", e.g. resnet-56')
    ap.add_argument("--seed", type=int, required=True)
    add_paths(ap, "data", "metrics", "record", "history", "checkpoint", weights="the trained model's weights file")
    args = ap.parse_args(argv)
    study, cfg = load_section("study"), load_section("train")
    if args.model not in cfg.models:
        raise ConfigError(f"--model {args.model}: not in train.models ({', '.join(cfg.models)})")
    train_tracked(study=study.name, stage="train", name=f"{args.model}-s{args.seed}", model_id=args.model,
                  seed=args.seed, recipe=cfg.recipe_for(args.model), data=load_prepared(args.data),
                  outputs=RunOutputs(args.weights, args.metrics, args.record, args.history, args.checkpoint))


if __name__ == "__main__":
    run_stage(main, tracked=True)

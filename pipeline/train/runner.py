"""One tracked, resumable training run: the glue the train and pretrain stages share.

It builds the model, picks the training images, resumes from a checkpoint when one with the
same settings exists, logs params, tags and per-epoch metrics to MLflow, and writes the
stage's outputs: model weights, a metrics JSON (DVC metrics), a per-epoch CSV and, for the train
stage, the step curve (DVC plots).
"""
from __future__ import annotations

from dataclasses import astuple, dataclass
from pathlib import Path

import torch

from pipeline.tracking import Item
from pipeline.train.checkpoint import SaveCheckpoint
from pipeline.config import Recipe, flatten
from pipeline.data.loader import Normalize, PreparedData, Split
from pipeline.models import count_params, create_model_from_id, parse_model_id
from pipeline.outputs import check_writable, save_model, write_rows
from pipeline.provenance import environment
from pipeline.train.runtime import Runtime
from pipeline.train.loop import OnEpochEnd, PrintProgress, fit

SUBSET_SEED = 0   # every model and seed of a study sees the same training subset
OUTCOME = ("status", "diverged_because")   # how a run ended: in its record and tags, not among its metrics


@dataclass(frozen=True)
class RunOutputs:
    model: Path        # weights + the settings that made them
    metrics: Path      # final metrics, JSON
    record: Path       # the run's settings and provenance, JSON (outputs.write_result)
    history: Path      # one row per epoch, CSV
    checkpoint: Path   # last.pt while the run is unfinished
    curve: Path | None = None   # the step curve, CSV: a row per window of steps (train.loop.CURVE_POINTS)


def training_subset(train: Split, images: int) -> Split:
    if not images or images >= len(train):
        return train
    gen = torch.Generator().manual_seed(SUBSET_SEED)
    return train.subset(torch.sort(torch.randperm(len(train), generator=gen)[:images]).values)


def train_tracked(item: Item, *, model_id: str, seed: int, recipe: Recipe, data: PreparedData, outputs: RunOutputs,
                  classes: list[int] | None = None, train_eval: bool = False) -> dict:
    """Train `model_id` on `data` (restricted to `classes` if given) as `item`; return the final metrics.

    `train_eval`: also the final error on the training images, un-augmented and in eval mode, beside the
    running error of the augmented batches (He et al.'s degradation is a claim about training error)."""
    stage, name = item.stage, item.name
    spec = parse_model_id(model_id)
    rt = Runtime.resolve(recipe.device, recipe.precision, recipe.channels_last)
    splits = data.splits
    if classes is not None:
        splits = {k: s.select_classes(classes) for k, s in splits.items()}
    train = training_subset(splits["train"], recipe.train_images).to(rt.device)
    # validation every epoch (the curves), test once after the last epoch (see train.fit)
    evals = {"val": splits["val"].to(rt.device)} if len(splits["val"]) else {}
    final_evals = {"test": splits["test"].to(rt.device), **({"train_eval": train} if train_eval else {})}
    num_classes = len(classes) if classes is not None else data.num_classes
    normalize = Normalize(data.manifest["mean"], data.manifest["std"], rt.device)

    params = {"model": model_id, "family": spec.family, "depth": spec.depth, "width": spec.width,
              "head": spec.head, "seed": seed, "stage": stage,
              "dataset": data.manifest["dataset"], "train_images": len(train), "num_classes": num_classes,
              **{f"recipe.{k}": v for k, v in flatten(recipe).items()}, **rt.describe()}
    if classes is not None:
        params["classes"] = classes
    checkpoint = item.resume(params, data.manifest["sha256"])
    resume = checkpoint.load()
    env = environment(rt.device)
    about = {"model": model_id, "family": spec.family, "depth": spec.depth, "seed": seed,
             "dataset_sha256": data.manifest["raw_sha256"]}

    torch.manual_seed(seed)   # He init drawn from the seed: same weights for every resume
    model = rt.prepare_model(create_model_from_id(model_id, num_classes=num_classes, in_chans=data.in_chans,
                                                  input_size=data.image_size))
    # float32 weights in the model file, and weights + momentum in the checkpoint and its temporary copy
    check_writable(*(path for path in astuple(outputs) if path), need_bytes=5 * 4 * count_params(model))
    print(f"[{name}] {model_id} on {len(train)} images, {env['device_name']}, {rt.describe()['precision']}",
          flush=True)
    with item.run(params=params, about=about, env=env, resume_run_id=resume["meta"]["run_id"] if resume else None) as run:
        if resume and run.lost_run_id:   # the new run gets the epochs its lost predecessor had logged
            for row in resume["history"]:
                run.log_metrics(row, step=row["epoch"])
        result = fit(model, train, evals, normalize, recipe, rt, seed, final_evals=final_evals, resume=resume,
                     callbacks=[PrintProgress(name), OnEpochEnd(lambda row: run.log_metrics(row, step=row["epoch"])),
                                SaveCheckpoint(checkpoint, meta={"run_id": run.run_id})])
        last = result.history[-1]
        final = {"status": result.status, "epochs": last["epoch"], "train_error": last["train_error"],
                 "train_loss": last["train_loss"], "images_per_s": sum(r["images_per_s"] for r in result.history)
                 / len(result.history), "train_seconds": sum(r["epoch_seconds"] for r in result.history)}
        if result.diverged_because:
            final["diverged_because"] = result.diverged_because
        for split in (*evals, *final_evals):
            final[f"{split}_error"] = last[f"{split}_error"]
            final[f"{split}_loss"] = last[f"{split}_loss"]
        run.log_metrics({f"final_{k}": v for k, v in final.items() if isinstance(v, (int, float))})
        run.set_tags({k: v for k, v in final.items() if k in OUTCOME})
        save_model(outputs.model, model, model_id=model_id, num_classes=num_classes, in_chans=data.in_chans,
                   classes=classes, params=params)
        write_rows(outputs.history, result.history)
        if outputs.curve:
            write_rows(outputs.curve, result.curve)
        numbers = {k: v for k, v in final.items() if k not in OUTCOME}
        run.write_result({**numbers, "params": count_params(model)}, extra={k: final[k] for k in OUTCOME if k in final})
    return final

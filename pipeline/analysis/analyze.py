"""The items of the analysis stages: why a residual network trains.

An analyze item (a model and train seed): for the weights at initialisation (the seed's He init, as training
began) and after training, per-layer gradient norms and the correlation of input gradients at nearby inputs
(gradient_flow.py); for the trained weights, Keskar et al.'s sharpness over many random starts (sharpness.py).
A landscape item (a model, at train seed `analysis.seed`): the loss along one and over two filter-normalised
random directions (landscape.py), the figures of Li et al. 2018. All on fixed images of the split the model
trained on, without augmentation.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.analysis.figures import plot_item_gradients, plot_item_landscape
from pipeline.analysis.gradient_flow import conv_layers, first_last_ratio, gradient_correlation, layer_gradient_norms
from pipeline.analysis.landscape import axis, filter_normalized_direction, surfaces
from pipeline.analysis.sharpness import keskar_sharpness
from pipeline.config import AnalysisConfig, TrainConfig, flatten
from pipeline.data.loader import Normalize, Split, eval_batches, load_prepared
from pipeline.integrity import file_digest
from pipeline.models import create_model_from_id, parse_model_id
from pipeline.outputs import load_model, write_rows
from pipeline.provenance import environment
from pipeline.tracking import Item
from pipeline.train.runner import training_subset
from pipeline.train.runtime import Runtime


@dataclass(frozen=True)
class AnalysisOutputs:
    gradients: Path      # CSV: per-layer gradient norms, at init and trained
    sharpness: Path      # CSV: the sharpness each draw found


@dataclass(frozen=True)
class LandscapeOutputs:
    landscape_1d: Path   # CSV: loss along one direction
    landscape_2d: Path   # CSV: loss over two directions


def first(split: Split, n: int) -> Split:
    return split.subset(torch.arange(min(n, len(split))))


def measure_gradients(model: torch.nn.Module, gradient_images: Split, shatter_images: Split, normalize: Normalize,
                      cfg: AnalysisConfig, batch_size: int, rt: Runtime) -> tuple[dict[str, float], float]:
    """Per-conv-layer gradient norms in training-size batches, and the input-gradient correlation."""
    batches = [(normalize(x), y) for x, y in eval_batches(gradient_images, batch_size)]
    gen = torch.Generator(device="cpu").manual_seed(cfg.direction_seed)   # the offsets of x'
    corr = gradient_correlation(model, normalize(shatter_images.x), shatter_images.y, cfg.shatter_sigma, gen, rt)
    return layer_gradient_norms(model, batches, rt), corr


@dataclass
class Analysed:
    """A trained model as the analysis stages see it: its model at initialisation, its trained state, and
    the training images it saw (unaugmented)."""
    model: torch.nn.Module
    trained: dict
    images: Split
    normalize: Normalize
    batch_size: int     # its training batch size
    train_images: int   # its recipe's train_images
    dataset_sha256: str
    rt: Runtime


def load_analysed(model_id: str, seed: int, cfg: AnalysisConfig, train_cfg: TrainConfig, data_dir: Path,
                  weights: Path) -> Analysed:
    saved = load_model(weights, f"dvc repro train@{model_id}-{seed}")
    recipe = train_cfg.recipe_for(model_id)
    rt = Runtime.resolve(cfg.device, cfg.precision, recipe.channels_last)
    data = load_prepared(data_dir)
    images = training_subset(data.splits["train"], recipe.train_images).to(rt.device)
    torch.manual_seed(seed)   # the same He init the train item started from (pipeline/train/runner.py)
    model = rt.prepare_model(create_model_from_id(model_id, num_classes=saved["num_classes"],
                                                  in_chans=data.in_chans, input_size=data.image_size))
    return Analysed(model, saved["state_dict"], images, Normalize(data.manifest["mean"], data.manifest["std"], rt.device),
                    recipe.batch_size, recipe.train_images, data.manifest["sha256"], rt)


def _identity(model_id: str, seed: int) -> dict:
    spec = parse_model_id(model_id)
    return {"model": model_id, "family": spec.family, "depth": spec.depth, "seed": seed}


def analyze(item: Item, model_id: str, seed: int, cfg: AnalysisConfig, train_cfg: TrainConfig, data_dir: Path,
            weights: Path, outputs: AnalysisOutputs) -> dict:
    """Analyse `model_id`'s `weights` (its train item of `seed`) as `item`; return its metrics."""
    started = time.perf_counter()
    a = load_analysed(model_id, seed, cfg, train_cfg, data_dir, weights)
    gradient_images, shatter_images, sharpness_images = (
        first(a.images, n) for n in (cfg.gradient_images, cfg.shatter_images, cfg.sharpness_images))
    init_norms, init_corr = measure_gradients(a.model, gradient_images, shatter_images, a.normalize, cfg,
                                              a.batch_size, a.rt)
    a.model.load_state_dict(a.trained)
    trained_norms, trained_corr = measure_gradients(a.model, gradient_images, shatter_images, a.normalize, cfg,
                                                    a.batch_size, a.rt)
    sizes = {name: conv.weight.numel() for name, conv in conv_layers(a.model)}
    gradients = [{"layer": i + 1, "name": name, "weights": sizes[name], "init": init_norms[name],
                  "trained": trained_norms[name]} for i, name in enumerate(init_norms)]
    gen = torch.Generator(device="cpu").manual_seed(cfg.direction_seed)   # the draws' random starts
    loss, peaks = keskar_sharpness(a.model, sharpness_images, a.normalize, a.rt, cfg.batch_size,
                                   epsilon=cfg.sharpness_epsilon, draws=cfg.sharpness_draws,
                                   steps=cfg.sharpness_steps, gen=gen)
    half = len(peaks) // 2
    weights_per_layer = [g["weights"] for g in gradients]
    # what was analysed, with how many images: its record; what was found: its metrics
    analysed = {**_identity(model_id, seed), "conv_layers": len(gradients), "gradient_images": len(gradient_images),
                "shatter_images": len(shatter_images), "sharpness_images": len(sharpness_images),
                "sharpness_epsilon": cfg.sharpness_epsilon, "sharpness_draws": len(peaks),
                "sharpness_steps": cfg.sharpness_steps}
    result = {
        "grad_first_last_ratio_init": first_last_ratio([g["init"] for g in gradients], weights_per_layer),
        "grad_first_last_ratio_trained": first_last_ratio([g["trained"] for g in gradients], weights_per_layer),
        "grad_correlation_init": init_corr, "grad_correlation_trained": trained_corr,
        "train_loss": loss,
        # the mean over the draws, and over each half of them: two runs of the same measurement
        "sharpness": float(np.mean(peaks)), "sharpness_std": float(np.std(peaks, ddof=1)),
        "sharpness_half_a": float(np.mean(peaks[:half])), "sharpness_half_b": float(np.mean(peaks[half:])),
        "analysis_seconds": time.perf_counter() - started,
    }
    params = {"model": model_id, "seed": seed, **flatten(cfg), **a.rt.describe(), "train_batch_size": a.batch_size}
    about = {"family": analysed["family"], "depth": analysed["depth"], "weights": str(weights)}
    with item.run(params=params, about=about, env=environment(a.rt.device)) as run:
        run.log_metrics({k: v for k, v in result.items() if isinstance(v, float)})
        write_rows(outputs.gradients, gradients)
        write_rows(outputs.sharpness, [{"draw": i, "sharpness": v} for i, v in enumerate(peaks)])
        with tempfile.TemporaryDirectory() as tmp:
            figure = Path(tmp) / f"gradients-{model_id}-s{seed}.png"
            plot_item_gradients(f"{model_id}, seed {seed}", gradients, figure)
            run.log_artifacts([(figure, None), (outputs.gradients, "gradients"), (outputs.sharpness, "sharpness")])
        run.write_result(result, extra=analysed)
    print(f"[analyze {model_id}-s{seed}] first/last conv per-weight gradient: {result['grad_first_last_ratio_init']:.3g}x "
          f"at init, {result['grad_first_last_ratio_trained']:.3g}x trained; input-gradient correlation "
          f"{init_corr:.3f} / {trained_corr:.3f}; loss {loss:.4f}, sharpness (eps {cfg.sharpness_epsilon:g}) "
          f"{result['sharpness']:.2f} +- {result['sharpness_std']:.2f} over {len(peaks)} draws "
          f"({result['analysis_seconds']:.0f} s)", flush=True)
    return result


def landscape(item: Item, model_id: str, cfg: AnalysisConfig, train_cfg: TrainConfig, data_dir: Path, weights: Path,
              outputs: LandscapeOutputs) -> dict:
    """The loss surfaces around `model_id`'s `weights` (its train item of seed `cfg.seed`) as `item`."""
    started = time.perf_counter()
    a = load_analysed(model_id, cfg.seed, cfg, train_cfg, data_dir, weights)
    a.model.load_state_dict(a.trained)
    landscape_images = first(a.images, cfg.landscape_images)
    # three directions: the 2-D surface's two axes and the 1-D curve's own (Li et al. draw them apart)
    gen = torch.Generator(device="cpu").manual_seed(cfg.direction_seed)
    x_dir, y_dir, curve_dir = (filter_normalized_direction(a.model, gen) for _ in range(3))
    alphas, grid = axis(cfg.points_1d, cfg.span), axis(cfg.points_2d, cfg.span)
    points = [(x, y) for y in grid for x in grid]
    # points already computed by an interrupted run with the same surface settings, weights and code are kept
    surface_settings = [cfg.seed, cfg.landscape_images, cfg.points_1d, cfg.points_2d, cfg.span, cfg.direction_seed,
                        cfg.batch_size, a.rt.describe(), a.train_images, a.dataset_sha256]
    progress = item.resume(surface_settings, file_digest(weights, "sha256"))
    done = surfaces(a.model, {"1d": ([curve_dir], [(x,) for x in alphas]), "2d": ([x_dir, y_dir], points)},
                    landscape_images, a.normalize, a.rt, cfg.batch_size, progress)
    curve = [{"alpha": x, **r} for x, r in zip(alphas, done["1d"])]
    plane = [{"alpha": x, "beta": y, **r} for (x, y), r in zip(points, done["2d"])]
    centre = curve[len(curve) // 2]
    drawn = {**_identity(model_id, cfg.seed), "landscape_images": len(landscape_images),
             "points_1d": cfg.points_1d, "points_2d": cfg.points_2d, "span": cfg.span}
    result = {"landscape_loss": centre["loss"], "landscape_error": centre["error"],
              "landscape_seconds": time.perf_counter() - started}
    params = {"model": model_id, **flatten(cfg), **a.rt.describe()}
    about = {"family": drawn["family"], "depth": drawn["depth"], "seed": cfg.seed, "weights": str(weights)}
    with item.run(params=params, about=about, env=environment(a.rt.device)) as run:
        run.log_metrics(result)
        write_rows(outputs.landscape_1d, curve)
        write_rows(outputs.landscape_2d, plane)
        with tempfile.TemporaryDirectory() as tmp:
            figure = Path(tmp) / f"landscape-{model_id}.png"
            plot_item_landscape(model_id, curve, plane, figure)
            run.log_artifacts([(figure, None), (outputs.landscape_1d, "landscape_1d"),
                               (outputs.landscape_2d, "landscape_2d")])
        run.write_result(result, extra=drawn)
    print(f"[landscape {model_id}] loss {centre['loss']:.4f} at the trained weights, {len(points)} + {len(curve)} "
          f"points on {len(landscape_images)} images ({result['landscape_seconds']:.0f} s)", flush=True)
    return result

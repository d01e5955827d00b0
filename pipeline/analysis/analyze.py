"""One analyze item: why a residual network trains (the analyze stage).

For the model's weights at initialisation (the seed's He init, as training began) and after training:
per-layer gradient norms and the correlation of input gradients at nearby inputs (gradient_flow.py); for
the trained weights: the loss along one and over two filter-normalised random directions and Keskar et
al.'s sharpness (landscape.py). All on fixed images of the split the model trained on, without augmentation.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.analysis.figures import plot_model_analysis
from pipeline.analysis.gradient_flow import conv_layers, first_last_ratio, gradient_correlation, layer_gradient_norms
from pipeline.analysis.landscape import axis, filter_normalized_direction, sharpness, surfaces
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


def analyze(item: Item, model_id: str, cfg: AnalysisConfig, train_cfg: TrainConfig, data_dir: Path, weights: Path,
            outputs: AnalysisOutputs) -> dict:
    """Analyse `model_id`'s `weights` (the train item of seed `cfg.seed`) as `item`; return its metrics."""
    started = time.perf_counter()
    saved = load_model(weights, f"dvc repro train@{model_id}-{cfg.seed}")
    recipe = train_cfg.recipe_for(model_id)
    rt = Runtime.resolve(cfg.device, cfg.precision, recipe.channels_last)
    data = load_prepared(data_dir)
    # the images the model was trained on (its subset of the training split), unaugmented
    images = training_subset(data.splits["train"], recipe.train_images).to(rt.device)
    gradient_images, shatter_images, landscape_images = (
        first(images, n) for n in (cfg.gradient_images, cfg.shatter_images, cfg.landscape_images))
    normalize = Normalize(data.manifest["mean"], data.manifest["std"], rt.device)

    torch.manual_seed(cfg.seed)   # the same He init the train item started from (pipeline/train/runner.py)
    model = rt.prepare_model(create_model_from_id(model_id, num_classes=saved["num_classes"],
                                                  in_chans=data.in_chans, input_size=data.image_size))
    init_norms, init_corr = measure_gradients(model, gradient_images, shatter_images, normalize, cfg,
                                              recipe.batch_size, rt)
    model.load_state_dict(saved["state_dict"])
    trained_norms, trained_corr = measure_gradients(model, gradient_images, shatter_images, normalize, cfg,
                                                    recipe.batch_size, rt)
    sizes = {name: conv.weight.numel() for name, conv in conv_layers(model)}
    gradients = [{"layer": i + 1, "name": name, "weights": sizes[name], "init": init_norms[name],
                  "trained": trained_norms[name]} for i, name in enumerate(init_norms)]

    # three directions: the 2-D surface's two axes and the 1-D curve's own (Li et al. draw them apart)
    gen = torch.Generator(device="cpu").manual_seed(cfg.direction_seed)
    x_dir, y_dir, curve_dir = (filter_normalized_direction(model, gen) for _ in range(3))
    alphas, grid = axis(cfg.points_1d, cfg.span), axis(cfg.points_2d, cfg.span)
    points = [(a, b) for b in grid for a in grid]
    # points already computed by an interrupted run with the same surface settings, weights and code are kept
    surface_settings = [cfg.seed, cfg.landscape_images, cfg.points_1d, cfg.points_2d, cfg.span, cfg.direction_seed,
                        cfg.batch_size, rt.describe(), recipe.train_images, data.manifest["sha256"]]
    progress = item.resume(surface_settings, file_digest(weights, "sha256"))
    done = surfaces(model, {"1d": ([curve_dir], [(a,) for a in alphas]), "2d": ([x_dir, y_dir], points)},
                    landscape_images, normalize, rt, cfg.batch_size, progress)
    curve = [{"alpha": a, **r} for a, r in zip(alphas, done["1d"])]
    plane = [{"alpha": a, "beta": b, **r} for (a, b), r in zip(points, done["2d"])]
    centre = curve[len(curve) // 2]
    weights_per_layer = [g["weights"] for g in gradients]
    spec = parse_model_id(model_id)
    # what was analysed, with how many images: its record; what was found: its metrics
    analysed = {"model": model_id, "family": spec.family, "depth": spec.depth, "seed": cfg.seed,
                "conv_layers": len(gradients), "gradient_images": len(gradient_images),
                "shatter_images": len(shatter_images), "landscape_images": len(landscape_images),
                "sharpness_at": cfg.sharpness_at}
    result = {
        "grad_first_last_ratio_init": first_last_ratio([g["init"] for g in gradients], weights_per_layer),
        "grad_first_last_ratio_trained": first_last_ratio([g["trained"] for g in gradients], weights_per_layer),
        "grad_correlation_init": init_corr, "grad_correlation_trained": trained_corr,
        "landscape_loss": centre["loss"], "landscape_error": centre["error"],
        "sharpness": sharpness(plane, cfg.sharpness_at),
        "analysis_seconds": time.perf_counter() - started,
    }
    params = {"model": model_id, **flatten(cfg), **rt.describe(), "train_batch_size": recipe.batch_size}
    about = {"family": spec.family, "depth": spec.depth, "seed": cfg.seed, "weights": str(weights)}
    with item.run(params=params, about=about, env=environment(rt.device)) as run:
        run.log_metrics({k: v for k, v in result.items() if isinstance(v, float)})
        write_rows(outputs.gradients, gradients)
        write_rows(outputs.landscape_1d, curve)
        write_rows(outputs.landscape_2d, plane)
        with tempfile.TemporaryDirectory() as tmp:
            figure = Path(tmp) / f"analysis-{model_id}.png"
            plot_model_analysis(model_id, gradients, curve, plane, figure)
            run.log_artifacts([(figure, None), (outputs.gradients, "gradients"), (outputs.landscape_1d, "landscape_1d"),
                               (outputs.landscape_2d, "landscape_2d")])
        run.write_result(result, extra=analysed)
    print(f"[analyze {model_id}] first/last conv per-weight gradient: {result['grad_first_last_ratio_init']:.3g}x "
          f"at init, {result['grad_first_last_ratio_trained']:.3g}x trained; input-gradient correlation "
          f"{init_corr:.3f} / {trained_corr:.3f}; loss {centre['loss']:.4f}, sharpness at {cfg.sharpness_at:g}: "
          f"{result['sharpness']:.2f} ({result['analysis_seconds']:.0f} s)", flush=True)
    return result

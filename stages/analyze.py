"""analyze stage, one item per model of `analysis.models`: why residual networks train.

For the model's weights at initialisation (the seed's He init, as training began) and after
training: per-layer gradient norms and the correlation of input gradients at nearby inputs
(pipeline/gradient_flow.py); for the trained weights: the loss along one and over two
filter-normalised random directions (pipeline/landscape.py). All on fixed images of the split
the model trained on, without augmentation.
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch

from pipeline import landscape, tracking
from pipeline.cli import run_stage
from pipeline.config import AnalysisConfig, ConfigError, fingerprint, flatten, load_section
from pipeline.data.loader import Normalize, Split, eval_batches, load_prepared
from pipeline.data.sources import file_digest
from pipeline.gradient_flow import gradient_correlation, layer_gradient_norms
from pipeline.landscape import Progress, axis, filter_normalized_direction, loss_rise, surfaces
from pipeline.models import create_model_from_id, parse_model_id
from pipeline.outputs import check_writable, load_model, write_json, write_rows
from pipeline.provenance import environment
from pipeline.report_analysis import plot_model_analysis
from pipeline.runner import code_digest, training_subset
from pipeline.train import Runtime


def first(split: Split, n: int) -> Split:
    return split.subset(torch.arange(min(n, len(split))))


def gradient_flow(model: torch.nn.Module, images: Split, normalize: Normalize, cfg: AnalysisConfig,
                  batch_size: int, rt: Runtime) -> tuple[dict[str, float], float]:
    """Per-conv-layer gradient norms on `cfg.gradient_images` images in training-size batches, and
    the input-gradient correlation on the first `cfg.shatter_images` of them."""
    batches = [(normalize(x), y) for x, y in eval_batches(first(images, cfg.gradient_images), batch_size)]
    shatter = first(images, cfg.shatter_images)
    gen = torch.Generator(device="cpu").manual_seed(cfg.direction_seed)
    corr = gradient_correlation(model, normalize(shatter.x), shatter.y, cfg.shatter_sigma, gen, rt)
    return layer_gradient_norms(model, batches, rt), corr


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", type=Path, required=True, help="the prepare stage's folder")
    ap.add_argument("--weights", type=Path, required=True, help="the train item's weights file")
    ap.add_argument("--metrics", type=Path, required=True)
    ap.add_argument("--gradients", type=Path, required=True, help="CSV: per-layer gradient norms")
    ap.add_argument("--landscape-1d", type=Path, required=True, help="CSV: loss along one direction")
    ap.add_argument("--landscape-2d", type=Path, required=True, help="CSV: loss over two directions")
    ap.add_argument("--checkpoint", type=Path, required=True, help="the surface points done, while unfinished")
    args = ap.parse_args(argv)
    study, cfg, train_cfg = load_section("study"), load_section("analysis"), load_section("train")
    if args.model not in cfg.models:
        raise ConfigError(f"--model {args.model}: not in analysis.models ({', '.join(cfg.models)})")
    outputs = (args.metrics, args.gradients, args.landscape_1d, args.landscape_2d, args.checkpoint)
    check_writable(*outputs)
    started = time.perf_counter()
    saved = load_model(args.weights, f"dvc repro train@{args.model}-{cfg.seed}")
    recipe = train_cfg.recipe_for(args.model)
    rt = Runtime.resolve(cfg.device, cfg.precision, recipe.channels_last)
    data = load_prepared(args.data)
    # the images the model was trained on (its subset of the training split), unaugmented
    images = training_subset(data.splits["train"], recipe.train_images).to(rt.device)
    normalize = Normalize(data.manifest["mean"], data.manifest["std"], rt.device)

    torch.manual_seed(cfg.seed)   # the same He init the train item started from (pipeline/runner.py)
    model = rt.prepare_model(create_model_from_id(args.model, num_classes=saved["num_classes"],
                                                  in_chans=data.in_chans, input_size=data.image_size))
    init_norms, init_corr = gradient_flow(model, images, normalize, cfg, recipe.batch_size, rt)
    model.load_state_dict(saved["state_dict"])
    trained_norms, trained_corr = gradient_flow(model, images, normalize, cfg, recipe.batch_size, rt)
    gradients = [{"layer": i + 1, "name": name, "init": init_norms[name], "trained": trained_norms[name]}
                 for i, name in enumerate(init_norms)]

    gen = torch.Generator(device="cpu").manual_seed(cfg.direction_seed)
    directions = [filter_normalized_direction(model, gen) for _ in range(2)]
    alphas, grid = axis(cfg.points_1d, cfg.span), axis(cfg.points_2d, cfg.span)
    points = [(a, b) for b in grid for a in grid]
    # points already computed by an interrupted run with the same settings, weights and code are kept
    settings = {k: v for k, v in flatten(cfg).items() if k != "models"}
    progress = Progress(args.checkpoint, fingerprint(
        settings, rt.describe(), recipe.train_images, data.manifest["sha256"], file_digest(args.weights, "sha256"),
        code_digest(), file_digest(Path(landscape.__file__), "sha256")))
    done = surfaces(model, {"1d": (directions[:1], [(a,) for a in alphas]), "2d": (directions, points)},
                    first(images, cfg.landscape_images), normalize, rt, cfg.batch_size, progress)
    curve = [{"alpha": a, **r} for a, r in zip(alphas, done["1d"])]
    plane = [{"alpha": a, "beta": b, **r} for (a, b), r in zip(points, done["2d"])]
    centre = curve[len(curve) // 2]
    # sharpness from the 2-D surface's two axes: four directions, not one
    slices = [[r["loss"] for r in plane if r[other] == 0.0] for other in ("beta", "alpha")]
    rises = [loss_rise(grid, losses, cfg.sharpness_at) for losses in slices]
    edge_rises = [loss_rise(grid, losses, cfg.span) for losses in slices]
    spec = parse_model_id(args.model)
    result = {
        "model": args.model, "family": spec.family, "depth": spec.depth, "seed": cfg.seed,
        "conv_layers": len(gradients),
        "grad_first_last_ratio_init": gradients[0]["init"] / gradients[-1]["init"],
        "grad_first_last_ratio_trained": gradients[0]["trained"] / gradients[-1]["trained"],
        "grad_correlation_init": init_corr, "grad_correlation_trained": trained_corr,
        "landscape_loss": centre["loss"], "landscape_error": centre["error"],
        "sharpness": sum(rises) / len(rises), "sharpness_at": cfg.sharpness_at,
        "edge_rise": sum(edge_rises) / len(edge_rises), "span": cfg.span,
        "landscape_max_loss": max(r["loss"] for r in plane),
        "analysis_seconds": time.perf_counter() - started,
    }
    env = environment(rt.device)
    tags = {"study": study.name, "stage": "analyze", "model": args.model, "family": spec.family,
            "depth": spec.depth, "seed": cfg.seed, "weights": str(args.weights), **env}
    params = {"model": args.model, **flatten(cfg), **rt.describe(), "train_batch_size": recipe.batch_size}
    with tracking.start_run(study.name, f"analyze-{args.model}", params, tags) as run:
        run.log_metrics({k: v for k, v in result.items() if isinstance(v, float)})
        write_rows(args.gradients, gradients)
        write_rows(args.landscape_1d, curve)
        write_rows(args.landscape_2d, plane)
        with tempfile.TemporaryDirectory() as tmp:
            figure = Path(tmp) / f"analysis-{args.model}.png"
            plot_model_analysis(args.model, gradients, curve, plane, figure)
            run.log_artifacts([(figure, None), (args.gradients, "gradients"), (args.landscape_1d, "landscape_1d"),
                               (args.landscape_2d, "landscape_2d")])
        write_json(args.metrics, {**result, "mlflow_run_id": run.run_id, **env})
    progress.remove()
    print(f"[analyze {args.model}] first/last conv gradient norm: {result['grad_first_last_ratio_init']:.3g} at "
          f"init, {result['grad_first_last_ratio_trained']:.3g} trained; input-gradient correlation "
          f"{init_corr:.3f} / {trained_corr:.3f}; loss {centre['loss']:.4f}, rise at {cfg.sharpness_at}: "
          f"{result['sharpness']:.4f} ({result['analysis_seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    run_stage(main, tracked=True)

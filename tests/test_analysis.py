"""Gradient flow and loss landscapes (pipeline/analysis/gradient_flow.py, pipeline/analysis/landscape.py): the
measurements against answers known in closed form, and the report's reading of them."""
import dataclasses
import json
import math

import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from conftest import tiny_splits
from pipeline.config import AnalysisConfig, load_section
from pipeline.data.loader import Normalize
from pipeline.analysis.gradient_flow import conv_layers, first_last_ratio, gradient_correlation, layer_gradient_norms
from pipeline.analysis import landscape
from pipeline.analysis.landscape import axis, filter_normalized_direction, surface, surfaces
from pipeline.analysis.sharpness import keskar_sharpness
from pipeline.outputs import ResumeState
from pipeline.models import create_model_from_id
from pipeline.report.analysis import gradient_flow_summary, sharpness_summary
from pipeline.study.compose import compose
from pipeline.train.runtime import Runtime
from pipeline.train.loop import evaluate

FP32 = Runtime(torch.device("cpu"), None, False)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return create_model_from_id("resnet-20", num_classes=4, in_chans=1, input_size=12)


def test_filter_normalised_direction_matches_each_filter_and_skips_bn_and_biases():
    model = small_net()
    direction = filter_normalized_direction(model, torch.Generator().manual_seed(3))
    weights = 0
    for p, d in zip(model.parameters(), direction):
        assert d.shape == p.shape
        if p.dim() <= 1:   # batch-norm scales and shifts, biases
            assert torch.count_nonzero(d) == 0
        else:
            weights += 1
            for w_filter, d_filter in zip(p.detach(), d):
                assert d_filter.norm().item() == pytest.approx(w_filter.norm().item(), rel=1e-5)
    assert weights == len(conv_layers(model)) + 1   # every conv and the classifier
    again = filter_normalized_direction(model, torch.Generator().manual_seed(3))
    other = filter_normalized_direction(model, torch.Generator().manual_seed(4))
    assert all(torch.equal(a, b) for a, b in zip(direction, again))
    assert not all(torch.equal(a, b) for a, b in zip(direction, other))


def test_the_surface_at_the_origin_is_the_models_evaluated_loss_and_the_weights_are_restored():
    model = small_net()
    images, _ = tiny_splits(torch.device("cpu"))
    normalize = Normalize([60.0], [50.0], torch.device("cpu"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    directions = [filter_normalized_direction(model, gen) for _ in range(2)]
    points = [(a, b) for b in axis(3, 1.0) for a in axis(3, 1.0)]
    rows = surface(model, directions, points, images, normalize, FP32, batch_size=40)
    assert rows[4] == evaluate(model, images, normalize, FP32, batch_size=40)   # (0, 0): the middle point
    assert rows[0]["loss"] != rows[4]["loss"]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_an_interrupted_surface_resumes_from_its_progress_file_and_ignores_another_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(landscape, "CHUNK", 2)
    model = small_net()
    images, _ = tiny_splits(torch.device("cpu"))
    normalize = Normalize([60.0], [50.0], torch.device("cpu"))
    directions = [filter_normalized_direction(model, torch.Generator().manual_seed(0))]
    jobs = {"1d": (directions, [(a,) for a in axis(5, 1.0)])}
    args = (images, normalize, FP32, 40)
    full = surfaces(model, jobs, *args, ResumeState(tmp_path / "a.json", "run"))["1d"]
    assert json.loads((tmp_path / "a.json").read_text())["1d"] == full
    # a run stopped after its first chunk: those points are kept, not recomputed
    marker = [{"loss": -1.0, "error": -1.0}] * 2
    ResumeState(tmp_path / "b.json", "run").save({"1d": marker})
    assert surfaces(model, jobs, *args, ResumeState(tmp_path / "b.json", "run"))["1d"] == marker + full[2:]
    # progress of other settings or weights is ignored
    ResumeState(tmp_path / "c.json", "other run").save({"1d": marker})
    assert surfaces(model, jobs, *args, ResumeState(tmp_path / "c.json", "run"))["1d"] == full


def test_axis_holds_zero_exactly():
    grid = axis(11, 1.0)
    assert grid[5] == 0.0 and grid[0] == -1.0 and grid[-1] == 1.0


def test_keskar_sharpness_finds_the_highest_corner_of_the_box_for_a_convex_loss_and_restores_the_weights():
    """Cross-entropy of logits linear in the weights is convex in the weights, so its maximum over Keskar et al.'s
    box is at one of the box's corners: with 4 weights, 16 to check by brute force."""
    images, _ = tiny_splits(torch.device("cpu"))
    normalize = Normalize([60.0], [50.0], torch.device("cpu"))
    torch.manual_seed(0)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 4, bias=False))
    before = model[2].weight.detach().clone()
    eps = 0.05
    centre, peaks = keskar_sharpness(model, images, normalize, FP32, 40, epsilon=eps, draws=4, steps=5,
                                     gen=torch.Generator().manual_seed(0))
    assert torch.equal(model[2].weight, before)
    assert centre == pytest.approx(evaluate(model, images, normalize, FP32, 40)["loss"], rel=1e-6)
    box = eps * (before.abs() + 1)
    corners = []
    for signs in torch.cartesian_prod(*[torch.tensor([-1.0, 1.0])] * 4):
        with torch.no_grad():
            model[2].weight.copy_(before + signs.view(4, 1) * box)
        corners.append(evaluate(model, images, normalize, FP32, 40)["loss"])
    highest = 100 * (max(corners) - centre) / (1 + centre)
    assert highest > 0
    assert peaks == pytest.approx([highest] * 4, rel=1e-5)
    # a box 0 wide has no sharpness; a wider one more
    assert keskar_sharpness(model, images, normalize, FP32, 40, epsilon=1e-12, draws=2, steps=2,
                            gen=torch.Generator().manual_seed(0))[1] == pytest.approx([0.0, 0.0], abs=1e-4)


def test_keskar_sharpness_is_reproducible_from_its_generator_and_moves_batch_norm_too():
    model = small_net()
    images, _ = tiny_splits(torch.device("cpu"))
    normalize = Normalize([60.0], [50.0], torch.device("cpu"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run = lambda seed: keskar_sharpness(model, images, normalize, FP32, 40, epsilon=1e-3, draws=2, steps=2,
                                        gen=torch.Generator().manual_seed(seed))
    first = run(0)
    assert run(0) == first and run(1) != first
    assert all(p > 0 for p in first[1])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


class ScaledChain(nn.Module):
    """Linear 1x1 convs whose weights are scale_l x identity: the gradient w.r.t. layer l's weights is
    (prod_k scale_k / scale_l) x (output gradient) x (input), so the layers' norms are in known ratios."""

    def __init__(self, scales: list[float], channels: int = 3):
        super().__init__()
        self.convs = nn.Sequential(*[nn.Conv2d(channels, channels, 1, bias=False) for _ in scales])
        with torch.no_grad():
            for conv, s in zip(self.convs, scales):
                conv.weight.copy_(s * torch.eye(channels)[:, :, None, None])

    def forward(self, x):
        return self.convs(x).flatten(1)


def test_layer_gradient_norms_give_the_analytic_ratios_of_a_scaled_linear_chain():
    factor, depth = 2.0, 6
    scales = [factor ** (l + 1) for l in range(depth)]   # layer l scales by factor^(l+1)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 1, 1, generator=gen), torch.randint(0, 3, (16,), generator=gen)
    norms = list(layer_gradient_norms(ScaledChain(scales), [(x[:8], y[:8]), (x[8:], y[8:])], FP32).values())
    assert len(norms) == depth
    # norm_l x scale_l is the same for every layer; first / last = factor^(depth - 1)
    assert [n * s / (norms[0] * scales[0]) for n, s in zip(norms, scales)] == pytest.approx([1.0] * depth, rel=1e-4)
    assert norms[0] / norms[-1] == pytest.approx(factor ** (depth - 1), rel=1e-4)


def test_the_first_last_ratio_is_per_weight():
    # a stem conv of 144 weights with gradient norm 4 and a last conv of 36,864 with norm 1: per weight,
    # 4 / 12 against 1 / 192
    assert first_last_ratio([4.0, 2.0, 1.0], [144, 1000, 36864]) == pytest.approx(64.0)


def test_gradient_norms_are_finite_and_positive_for_every_layer_of_every_analysed_model(repo, tmp_path):
    images, _ = tiny_splits(torch.device("cpu"))
    normalize = Normalize([60.0], [50.0], torch.device("cpu"))
    batches = [(normalize(images.x[:8]), images.y[:8]), (normalize(images.x[8:16]), images.y[8:16])]
    compose("cifar10", tmp_path / "cifar10.yaml")
    models = {*load_section("analysis", repo / "params.yaml").models, *load_section("analysis", tmp_path / "cifar10.yaml").models}
    for model_id in sorted(models):
        torch.manual_seed(0)
        model = create_model_from_id(model_id, num_classes=4, in_chans=1, input_size=12)
        norms = layer_gradient_norms(model, batches, FP32)
        assert len(norms) == len(conv_layers(model)) > 0
        assert all(math.isfinite(n) and n > 0 for n in norms.values()), (model_id, norms)


def test_gradient_correlation_is_one_for_a_linear_model_and_about_zero_for_white_noise_gradients():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 8, 8, generator=gen), torch.randint(0, 3, (64,), generator=gen)
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    assert gradient_correlation(linear, x, y, 0.1, torch.Generator().manual_seed(1), FP32) == pytest.approx(1.0, abs=1e-6)

    class WhiteNoise(nn.Module):
        """sum_i a_i sin(1000 x_i): an offset of 0.1 moves every pixel's gradient phase by ~100 radians."""

        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.randn(3, 64, generator=gen))

        def forward(self, x):
            return torch.sin(1000 * x.flatten(1)) @ self.a.T

    corr = gradient_correlation(WhiteNoise(), x, y, 0.1, torch.Generator().manual_seed(1), FP32)
    assert abs(corr) < 0.05


def test_gradient_correlation_measures_with_dropout_off():
    """Two dropout masks would decorrelate the two passes by themselves; with dropout off, an offset
    too small to change any ReLU's sign leaves the gradient as it was."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 1, 8, 8, generator=gen), torch.randint(0, 3, (32,), generator=gen)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 3))
    assert gradient_correlation(net, x, y, 1e-7, torch.Generator().manual_seed(1), FP32) == pytest.approx(1.0, abs=1e-4)


def _analysis(rows):
    """Analyze metrics, a row per (family, depth, seed, first/last ratio at init, trained, correlation at init,
    sharpness[, its two halves])."""
    out = []
    for family, depth, seed, r0, r1, c, sharp, *halves in rows:
        a, b = halves or (sharp, sharp)
        out.append({"model": f"{family}-{depth}", "family": family, "depth": depth, "seed": seed,
                    "grad_first_last_ratio_init": r0, "grad_first_last_ratio_trained": r1, "grad_correlation_init": c,
                    "sharpness": sharp, "sharpness_half_a": a, "sharpness_half_b": b, "sharpness_std": 0.1,
                    "sharpness_epsilon": 1e-3, "sharpness_draws": 10, "sharpness_steps": 5, "sharpness_images": 512,
                    "train_loss": 0.3, "gradient_images": 256, "shatter_images": 64})
    return pd.DataFrame(out)


def _seeds(family, depth, values):
    """Three seeds of one net: `values` are (ratio at init, trained, correlation, sharpness) per seed."""
    return [(family, depth, seed, *v) for seed, v in enumerate(values)]


def test_the_report_says_which_picture_the_gradient_numbers_support_with_an_interval_over_seeds():
    healthy = _analysis(_seeds("plain", 56, [(900.0, 1.5, 0.10, 9), (1100.0, 1.4, 0.12, 9), (1000.0, 1.6, 0.08, 9)])
                        + _seeds("resnet", 56, [(5.0, 1.0, 0.50, 1), (6.0, 1.1, 0.52, 1), (4.0, 0.9, 0.48, 1)]))
    text = gradient_flow_summary(healthy, sigma=0.01)
    assert "geometric mean over 3 seeds per model (range)" in text
    assert "plain-56 997 (900-1.1e+03)" in text
    assert "No plain net's gradients vanish towards the input" in text
    assert "plain-56's gradients grow towards the input more than resnet-56's, by 202x (95 % CI" in text
    assert "Welch's t on logarithms, n = 3/3)" in text
    assert "the residual net's gradients are more correlated than the plain net's, by +0.400 (95 % CI" in text
    # vanishing after training only; correlations whose interval holds zero
    vanishing = _analysis(_seeds("plain", 56, [(1.0, 0.01, 0.50, 1), (1.0, 0.01, 0.60, 1)])
                          + _seeds("resnet", 56, [(1.0, 1.0, 0.55, 1), (1.0, 1.0, 0.50, 1)]))
    text = gradient_flow_summary(vanishing, sigma=0.01)
    assert "the vanishing the slide describes, in plain-56" in text
    assert "no difference shown; this measurement does not show Balduzzi et al.'s finding" in text
    # one seed a side: no interval, so no verdict
    single = _analysis([("plain", 56, 0, 1000.0, 1.0, 0.1, 9), ("resnet", 56, 0, 5.0, 1.0, 0.5, 1)])
    assert "untested" in gradient_flow_summary(single, sigma=0.01)


def test_the_report_publishes_a_sharpness_verdict_only_where_both_halves_of_the_draws_agree():
    sharp = _seeds("plain", 56, [(1, 1, 0.5, 9.0), (1, 1, 0.5, 10.0), (1, 1, 0.5, 8.0)])
    flat = _seeds("resnet", 56, [(1, 1, 0.5, 1.0), (1, 1, 0.5, 1.2), (1, 1, 0.5, 0.9)])
    text = sharpness_summary(_analysis(sharp + flat))
    assert "At depth 56 the plain net's minimum is sharper than the residual net's, 8.74x (95 % CI" in text
    assert "both halves of the draws agree" in text
    # the same means, but one half of the draws says no difference: not published
    split = [(f, d, s, r0, r1, c, v, v, 1.0) for f, d, s, r0, r1, c, v in sharp]
    text = sharpness_summary(_analysis(split + flat))
    assert "the two halves of the draws, two runs of the same measurement, disagree" in text
    assert "no verdict is published" in text and "as Li et al." not in text
    # a sharpness that is not positive cannot be compared by its logarithm
    text = sharpness_summary(_analysis([("plain", 56, 0, 1, 1, 0.5, -0.1), ("resnet", 56, 0, 1, 1, 0.5, 1.0)]))
    assert "untested" in text


def test_every_analysis_setting_but_the_model_list_is_a_dvc_param_of_an_analysis_stage(repo):
    """A setting missing from dvc.yaml would leave stale analyses cached when it changes."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    declared = {*stages["analyze"]["params"], *stages["landscape"]["params"]}
    settings = {f"analysis.{f.name}" for f in dataclasses.fields(AnalysisConfig)} - {"analysis.models"}
    assert settings <= declared and "analysis.models" not in declared

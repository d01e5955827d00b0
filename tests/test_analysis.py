"""Gradient flow and loss landscapes (pipeline/gradient_flow.py, pipeline/landscape.py): the
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
from pipeline.gradient_flow import conv_layers, gradient_correlation, layer_gradient_norms
from pipeline import landscape
from pipeline.landscape import Progress, axis, filter_normalized_direction, loss_rise, surface, surfaces
from pipeline.models import create_model_from_id
from pipeline.report_analysis import gradient_flow_summary, landscape_summary
from pipeline.train import Runtime, evaluate

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
    full = surfaces(model, jobs, *args, Progress(tmp_path / "a.json", "run"))["1d"]
    assert json.loads((tmp_path / "a.json").read_text())["rows"]["1d"] == full
    # a run stopped after its first chunk: those points are kept, not recomputed
    marker = [{"loss": -1.0, "error": -1.0}] * 2
    Progress(tmp_path / "b.json", "run").save({"1d": marker})
    assert surfaces(model, jobs, *args, Progress(tmp_path / "b.json", "run"))["1d"] == marker + full[2:]
    # progress of other settings or weights is ignored
    Progress(tmp_path / "c.json", "other run").save({"1d": marker})
    assert surfaces(model, jobs, *args, Progress(tmp_path / "c.json", "run"))["1d"] == full


def test_axis_holds_zero_exactly_and_loss_rise_reads_a_parabola():
    alphas = axis(11, 1.0)
    assert alphas[5] == 0.0 and alphas[0] == -1.0 and alphas[-1] == 1.0
    assert loss_rise(alphas, [3 * a * a + 1 for a in alphas], at=0.2) == pytest.approx(3 * 0.04, rel=1e-9)


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


def test_gradient_norms_are_finite_and_positive_for_every_layer_of_every_analysed_model(repo):
    images, _ = tiny_splits(torch.device("cpu"))
    normalize = Normalize([60.0], [50.0], torch.device("cpu"))
    batches = [(normalize(images.x[:8]), images.y[:8]), (normalize(images.x[8:16]), images.y[8:16])]
    for model_id in load_section("analysis", repo / "params.yaml").models:
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


def _analysis(rows):
    return pd.DataFrame([{"model": f"{f}-{d}", "family": f, "depth": d, "grad_first_last_ratio_init": r,
                          "grad_correlation_init": c, "sharpness": s, "sharpness_at": 0.2, "edge_rise": 10 * s,
                          "span": 1.0, "landscape_loss": 0.3} for f, d, r, c, s in rows])


def test_the_report_says_which_picture_the_gradient_numbers_support():
    healthy = _analysis([("plain", 20, 3.0, 0.5, 0.1), ("plain", 56, 900.0, 0.1, 0.9),
                         ("resnet", 20, 2.0, 0.6, 0.1), ("resnet", 56, 5.0, 0.5, 0.1)])
    text = gradient_flow_summary(healthy, images=256, sigma=0.1)
    assert "plain-56 900x larger than the last's" in text
    assert "No plain net's gradients vanish" in text and "agrees with He et al." in text
    assert "closer to white noise" in text and "falls by 0.400 in the plain nets and by 0.100" in text
    vanishing = _analysis([("plain", 56, 0.01, 0.6, 0.1), ("resnet", 56, 1.0, 0.5, 0.1)])
    text = gradient_flow_summary(vanishing, images=256, sigma=0.1)
    assert "In plain-56 the gradients shrink towards the input" in text and "100x smaller" in text
    assert "not less correlated than the residual net's, unlike Balduzzi" in text


def test_the_report_compares_sharpness_at_equal_depth():
    text = landscape_summary(_analysis([("plain", 56, 1.0, 0.5, 0.9), ("resnet", 56, 1.0, 0.5, 0.1)]), 128, 0)
    assert "At depth 56, at distance 0.2 the plain net's loss rises 9.0x as much as the residual net's (sharper, as Li et al." in text
    analysis = _analysis([("plain", 56, 1.0, 0.5, 0.15), ("resnet", 56, 1.0, 0.5, 0.1)])
    analysis.loc[1, "edge_rise"] = 40.0   # the residual net's surface rises far more at the edge
    text = landscape_summary(analysis, 128, 0)
    assert "at distance 0.2 the two rises are within a factor 2: no clear difference" in text
    assert "at the edge (1) the residual net's loss rises 26.7x as much as the plain net's" in text


def test_every_analysis_setting_but_the_model_list_is_a_dvc_param_of_the_analyze_items(repo):
    """A setting missing from dvc.yaml would leave stale analyses cached when it changes."""
    declared = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["analyze"]["params"]
    settings = {f"analysis.{f.name}" for f in dataclasses.fields(AnalysisConfig)} - {"analysis.models"}
    assert settings <= set(declared) and "analysis.models" not in declared

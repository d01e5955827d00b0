"""How gradients flow through a network: per-layer gradient norms and gradient shattering.

Two pictures of why depth hurts plain networks and not residual ones:

- `layer_gradient_norms`: the norm of the loss gradient w.r.t. each conv layer's weights. The
  slide's story is that plain nets' early-layer gradients vanish; He et al. 2016 (Sec. 4.1) say
  that with batch norm they do not ("the backward propagated gradients exhibit healthy norms").
- `gradient_correlation`: Balduzzi et al. 2017 ("The Shattered Gradients Problem") find that what
  degrades with depth in plain nets is the correlation of gradients between nearby inputs -- they
  approach white noise -- while residual nets keep it.

Both use batch norm in training mode (batch statistics), the function SGD differentiates, with
dropout off (its random masks would decorrelate the two passes of `gradient_correlation` by
themselves), on a copy of the model, so its running statistics are left as they were.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.train.runtime import Runtime


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The conv layers in registration order, which for the study's nets is forward order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _as_in_training(model: nn.Module) -> nn.Module:
    """A copy with batch norm on batch statistics and dropout off."""
    model = copy.deepcopy(model).train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    return model


def first_last_ratio(norms: list[float], weights: list[int]) -> float:
    """The first conv layer's per-weight RMS gradient (norm / sqrt(weights)) over the last's. Per weight,
    so that a stem conv of 144 weights and a last conv of 36,864 compare as layers, not as sizes."""
    return (norms[0] / math.sqrt(weights[0])) / (norms[-1] / math.sqrt(weights[-1]))


def layer_gradient_norms(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]],
                         rt: Runtime) -> dict[str, float]:
    """L2 norm of d(mean cross-entropy over all `batches`)/d(weights) for each conv layer.

    `batches` are normalised inputs with labels, each as large as a training batch (its batch-norm
    statistics are those of one SGD step); the gradient is that of the loss averaged over them all."""
    model = _as_in_training(model)
    model.zero_grad(set_to_none=True)
    total = sum(len(y) for _, y in batches)
    for x, y in batches:
        with rt.autocast():
            logits = model(x)
        (F.cross_entropy(logits.float(), y, reduction="sum") / total).backward()
    return {name: conv.weight.grad.float().norm().item() for name, conv in conv_layers(model)}


def gradient_correlation(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float,
                         gen: torch.Generator, rt: Runtime) -> float:
    """Balduzzi et al. 2017's shattering, as one number: the Pearson correlation between the input
    gradient of the true class's logit at each image x and at x + N(0, sigma^2), averaged over images.

    1 for a linear model (its input gradient is constant); about 0 when the gradients are white noise.
    `x` is normalised; the two batches go through the net separately, so each keeps its own statistics."""
    model = _as_in_training(model)
    nearby = x + sigma * torch.randn(x.shape, generator=gen, device=gen.device).to(x.device)
    grads = []
    for inputs in (x, nearby):
        inputs = inputs.detach().clone().requires_grad_(True)
        with rt.autocast():
            logits = model(inputs)
        (grad,) = torch.autograd.grad(logits.float().gather(1, y[:, None]).sum(), inputs)
        grads.append(grad.flatten(1).float())
    a, b = (g - g.mean(1, keepdim=True) for g in grads)
    corr = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)
    return corr.mean().item()

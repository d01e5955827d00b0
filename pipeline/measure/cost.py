"""Cost of a model that does not depend on the machine: parameters, MACs/FLOPs, and the size of the
operations the MAC count leaves out. Latency, which does, is pipeline.measure.latency's.

Counting convention (torch.utils.flop_counter): multiply-adds of convolutions, linear layers and
matrix products, attention included: counting runs on the CPU under PyTorch's math attention
backend with nn.MultiheadAttention's fast path off, so attention decomposes into the matrix
products the counter knows, and every device gets the same count (the fused CPU and CUDA kernels
are counted differently or not at all). GMACs is the unit of torchvision's `_ops`, fvcore, thop and
ptflops; GFLOPs = 2 x GMACs. Not counted: batch norm, activations, residual adds, SE scaling,
pooling, softmax. Their size is reported beside it as "other ops": one op per output element of
every other operation that computes values (views and copies excluded) -- a lower bound on
their arithmetic, and the measure of the memory traffic that makes them cost time on real hardware.
"""
from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from pipeline.models import count_params, create_model_from_id, parse_model_id

# operations that move or allocate memory without computing values
_NOT_COMPUTING = {torch.ops.aten._to_copy, torch.ops.aten.clone, torch.ops.aten.copy_, torch.ops.aten.contiguous,
                  torch.ops.aten.empty_like, torch.ops.aten.zeros_like, torch.ops.aten.ones_like,
                  torch.ops.aten.new_empty, torch.ops.aten.new_zeros, torch.ops.aten.cat, torch.ops.aten.stack}


class OtherOpsCounter(TorchDispatchMode):
    """One op per output element of every operation that the MAC count leaves out."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        packet = func.overloadpacket
        # a view returns an alias it does not write; an in-place op (relu_, add_) writes the one it returns
        view = any(r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns)
        takes_tensor = any(isinstance(a, torch.Tensor) for a in args)
        if packet not in flop_registry and packet not in _NOT_COMPUTING and not view and takes_tensor:
            # values only: max pooling's int64 indices are bookkeeping
            self.total += sum(t.numel() for t in (out if isinstance(out, (tuple, list)) else (out,))
                              if isinstance(t, torch.Tensor) and t.is_floating_point())
        return out


@contextlib.contextmanager
def _attention_as_matmuls():
    """Math SDPA backend and no nn.MultiheadAttention fast path: attention runs as counted bmm/mm."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def count_ops(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(FLOPs, other ops) of one forward pass in eval mode on one image of `input_shape` (C, H, W),
    counted on a CPU copy when the model lives elsewhere."""
    on_cpu = model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).cpu()
    on_cpu.eval()
    with (torch.no_grad(), _attention_as_matmuls(), FlopCounterMode(display=False) as flops,
          OtherOpsCounter() as other):
        on_cpu(torch.zeros(1, *input_shape))
    return flops.get_total_flops(), other.total


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs (2 x MACs) of one forward pass on one image, by the convention above."""
    return count_ops(model, input_shape)[0]


def model_cost(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, float | int]:
    """Params, GMACs and GFLOPs per image, and the ops they leave out (GOPs and % of the GMACs)."""
    flops, other = count_ops(model, input_shape)
    return {"params": count_params(model), "gflops": flops / 1e9, "gmacs": flops / 2e9,
            "other_gops": other / 1e9, "other_ops_per_mac_pct": 100 * other / (flops / 2) if flops else 0.0}


def measure_model_id(model_id: str, input_shape: tuple[int, ...], num_classes: int) -> dict:
    """What the measure stage records for one model: what it is and what it costs per image."""
    spec = parse_model_id(model_id)
    model = create_model_from_id(model_id, num_classes=num_classes, in_chans=input_shape[0],
                                 input_size=input_shape[1:])
    return {"model": model_id, "family": spec.family, "depth": spec.depth, "width": spec.width, "head": spec.head,
            "input_shape": list(input_shape), "num_classes": num_classes, **model_cost(model, input_shape)}

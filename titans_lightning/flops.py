"""FLOP counting: torch's FlopCounterMode, completed where it misses the toolkit's ops.

FlopCounterMode counts matmuls (mm, bmm, addmm, baddbmm, ...) by registered formulas. Two gaps
matter here, and both are filled:

- in-place `baddbmm_` / `addmm_` (the memory's chunk step accumulates with them) are not
  registered: they get the out-of-place formulas;
- the CPU attention kernel (`_scaled_dot_product_flash_attention_for_cpu` and its backward) is
  not registered: it gets torch's SDPA formulas (4 b h s_q s_k d forward; 2.5 times that
  backward: the recomputed scores and the four gradient products), halved when `is_causal` (the
  kernel skips the blocks above the diagonal). An explicit mask is counted in full: the kernel
  computes every masked score.

Used by the benchmarks (`benchmarks/flops.py`) and by the `Throughput` callback (model FLOPs and
MFU). Pure torch.
"""

from __future__ import annotations

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def _same_formula(op):
    """The registered formula of `op`, for its in-place form."""
    formula = flop_counter.flop_registry[op]  # already takes raw arguments

    def count(*args, **kwargs):
        return formula(*args, **kwargs)

    count._get_raw = True
    return count


def _sdpa_cpu_forward(query, key, value, dropout_p=0.0, is_causal=False, **kwargs) -> int:
    """query (b, h, s_q, d), key/value (b, h, s_k, d) -> FLOPs of QK^T and PV."""
    flops = flop_counter.sdpa_flop_count(query.shape, key.shape, value.shape)
    return flops // 2 if is_causal else flops


def _sdpa_cpu_backward(grad_out, query, key, value, out, logsumexp, dropout_p=0.0, is_causal=False, **kwargs) -> int:
    """The five products of the attention backward (scores recomputed, dV, dP, dQ, dK)."""
    flops = flop_counter.sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape)
    return flops // 2 if is_causal else flops


_sdpa_cpu_forward._get_raw = True
_sdpa_cpu_backward._get_raw = True

EXTRA_FLOPS = {
    aten.baddbmm_: _same_formula(aten.baddbmm),
    aten.addmm_: _same_formula(aten.addmm),
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_forward,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward,
}


def flop_counter_mode() -> FlopCounterMode:
    """A FlopCounterMode with the gaps above filled (enter it, run, read ``get_total_flops()``)."""
    return FlopCounterMode(display=False, custom_mapping=EXTRA_FLOPS)


def counted_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Matmul and attention FLOPs of one forward + backward of `model(x) -> (y, state)`."""
    with flop_counter_mode() as counter:
        y, _ = model(x)
        y.float().square().mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()

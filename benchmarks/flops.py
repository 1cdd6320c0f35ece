"""FLOP counting for the benchmarks: torch's FlopCounterMode, completed where it misses our ops.

FlopCounterMode counts matmuls (mm, bmm, addmm, baddbmm, ...) by registered formulas. Two gaps
matter here, and both are filled:

- in-place `baddbmm_` / `addmm_` (the memory's chunk step accumulates with them) are not
  registered: they get the out-of-place formulas;
- the CPU attention kernel (`_scaled_dot_product_flash_attention_for_cpu` and its backward) is
  not registered: it gets torch's SDPA formulas (4 b h s_q s_k d forward; 2.5 times that
  backward: the recomputed scores and the four gradient products), halved when `is_causal` (the
  kernel skips the blocks above the diagonal). An explicit mask is counted in full: the kernel
  computes every masked score.
"""

from __future__ import annotations

import time

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


def counted_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Matmul and attention FLOPs of one forward + backward of `model(x) -> (y, state)`."""
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOPS) as counter:
        y, _ = model(x)
        y.float().square().mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_gflops(size: int = 2048, repeats: int = 3) -> float:
    """Same-run ceiling: fp32 size^3 matmul GFLOP/s (best of repeats)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def memory_chunk_bmm_gflops(memories: int, chunk: int, widths: list[int], seconds: float = 1.0) -> float:
    """Same-run ceiling for the memory's own products: GFLOP/s of the chunk step's batched matmuls
    alone, operands hot in cache, nothing else in between.

    Per memory layer i -> o (N = memories, b = chunk): the key pass (N, b, i) @ (N, i, o), the
    retrieval against [W | S] (N, b, 2i) @ (N, 2i, o) and the chunk-end update (N, o, b) @ (N, b, 2i),
    run in turn for about `seconds`.
    """
    products = []
    for i, o in zip(widths[:-1], widths[1:]):
        for a, b in (((memories, chunk, i), (memories, i, o)), ((memories, chunk, 2 * i), (memories, 2 * i, o)),
                     ((memories, o, chunk), (memories, chunk, 2 * i))):
            products.append((torch.randn(a), torch.randn(b)))
    flops = sum(2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2] for a, b in products)
    for a, b in products:
        torch.bmm(a, b)
    rounds, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for a, b in products:
            torch.bmm(a, b)
        rounds += 1
    return rounds * flops / (time.perf_counter() - start) / 1e9

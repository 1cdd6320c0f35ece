"""FLOP counting for the benchmarks: the counter is the library's (`titans_lightning/flops.py`:
torch's FlopCounterMode, completed where it misses our ops); the same-run ceilings are here.
"""

from __future__ import annotations

import time

import torch

from titans_lightning.flops import EXTRA_FLOPS, counted_flops, flop_counter_mode

__all__ = ["EXTRA_FLOPS", "counted_flops", "flop_counter_mode", "matmul_gflops", "memory_chunk_bmm_gflops"]


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

"""The chunk step under torch.compile: one graph with no breaks, and its kernel budget.

Every compiled function here wraps `chunk_step` in a function of this module, so that its dynamo
cache (and recompile count) is its own and never shared with the backbone tests' compiled step.
Budgets sit slightly above the counts measured when they were set: a change that launches more
kernels per chunk (the cost that dominates on a GPU, where a chunk's arithmetic is microseconds)
fails here and must raise them knowingly.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounter

from benchmarks.kernels import compiled_kernels, eager_kernels
from titans_lightning.memory.chunk import chunk_step

N, B = 4, 4  # memories, chunk tokens
#: (forward, backward) ATen kernels of one eager chunk (depth 2, gelu, output norm); measured 47, 205
EAGER_BUDGET = (50, 215)
#: (forward, backward) kernel launches of one compiled chunk (fused + extern); measured 18, 38
COMPILED_BUDGET = (20, 41)


def _traced_step(*args):
    return chunk_step(*args)


def _inductor_step(*args):
    return chunk_step(*args)


def chunk_inputs(depth: int, dim: int = 8, hidden: int = 16, ref: bool = False, seed: int = 0) -> list[torch.Tensor]:
    """One chunk's tensors, all requiring grad: q, k, v (N, b, dim), beta, f (N, b), G (N, b, b),
    m_end (N,), m_mix (N, b), WS_l (N, o_l, 2 i_l) per layer, then R_l (N, o_l, i_l) if ``ref``."""
    g = torch.Generator().manual_seed(seed)
    widths = [dim] + [hidden] * (depth - 1) + [dim]
    shapes = [(N, B, dim)] * 3 + [(N, B), (N, B), (N, B, B), (N,), (N, B)]
    shapes += [(N, widths[i + 1], 2 * widths[i]) for i in range(depth)]
    shapes += [(N, widths[i + 1], widths[i]) for i in range(depth)] if ref else []
    tensors = [torch.rand(s, generator=g) if len(s) < 3 or s == (N, B, B) else 0.3 * torch.randn(s, generator=g)
               for s in shapes]
    return [t.requires_grad_() for t in tensors]


def forward_backward(step, activation: str, depth: int, output_norm: bool, inputs: list[torch.Tensor]):
    """Outputs of one chunk and the gradients of a fixed probe of them."""
    outputs = step(activation, depth, output_norm, *inputs)
    probes = [torch.linspace(-1, 1, o.numel()).view_as(o) for o in outputs]
    return outputs, torch.autograd.grad(outputs, inputs, probes)


TRACE_CASES = [  # (activation, depth, output_norm, ref, grad)
    pytest.param("gelu", 2, True, False, True, id="mlp2-gelu-norm"),
    pytest.param("gelu", 2, True, False, False, id="mlp2-gelu-norm-no-grad"),
    pytest.param("silu", 1, False, False, True, id="matrix-silu"),
    pytest.param("relu", 3, True, True, True, id="mlp3-relu-norm-resumed"),
]


@pytest.mark.parametrize("activation, depth, output_norm, ref, grad", TRACE_CASES)
def test_chunk_step_is_one_graph_without_breaks(activation, depth, output_norm, ref, grad):
    """fullgraph=True raises on any graph break; with grad, the one graph holds forward and
    backward (no grad: inference, e.g. validation and decoding, traces forward alone)."""
    counter = CompileCounter()
    step = torch.compile(_traced_step, backend=counter, fullgraph=True)
    inputs = chunk_inputs(depth, ref=ref)
    if not grad:
        with torch.no_grad():
            assert torch.isfinite(step(activation, depth, output_norm, *inputs)[0]).all()
        assert counter.frame_count == 1
        return
    _, grads = forward_backward(step, activation, depth, output_norm, inputs)
    assert counter.frame_count == 1
    assert all(g is not None and g.abs().sum() > 0 for g in grads[:3] + grads[8:]), "q, k, v, WS need gradients"


def test_kernels_per_chunk_within_budget():
    """Counted as in ``benchmarks/bench_compile.py`` (``benchmarks/kernels.py``)."""
    inputs = chunk_inputs(depth=2)
    args = ("gelu", 2, True, *inputs)
    chunk_step(*args)  # first call: lazy initialisations are not the step's
    eager = eager_kernels(chunk_step, args, inputs)
    compiled = compiled_kernels(_inductor_step, args, inputs)
    within = all(n <= cap for n, cap in zip(eager + compiled, EAGER_BUDGET + COMPILED_BUDGET))
    assert within, f"kernels per chunk (forward, backward): eager {eager}, compiled {compiled}"
    assert eager[0] > 2 * compiled[0] and eager[1] > 4 * compiled[1], "inductor should fuse"

"""The first chunk from the initial memory with one product per head (memory/shared_start.py)
equals the per-sequence chunk step in float64: outputs, final state and every gradient, with
masks, one and several chunks; the layer's retrieval at M_0 likewise."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from titans_lightning.memory import NeuralMemory
from titans_lightning.memory.chunk import chunk_step
from titans_lightning.memory.shared_start import shared_start_chunk

F64 = torch.float64


def close(a, b, tol=1e-10):
    return (a - b).abs().max().item() <= tol * max(1.0, b.abs().max().item())


@pytest.mark.parametrize("output_norm", [True, False], ids=["output-norm", "plain"])
@pytest.mark.parametrize("activation", ["gelu", "silu", "relu"])
def test_shared_first_chunk_equals_the_chunk_step(output_norm, activation):
    torch.manual_seed(0)
    B, H, b, d, e = 3, 2, 5, 4, 2
    N = B * H
    M0 = [(torch.randn(H, e * d, d, dtype=F64) * 0.5).requires_grad_(),
          (torch.randn(H, d, e * d, dtype=F64) * 0.5).requires_grad_()]
    q, k, v = (torch.randn(N, b, d, dtype=F64).requires_grad_() for _ in range(3))
    beta, f, m_mix = (torch.rand(N, b, dtype=F64).requires_grad_() for _ in range(3))
    G = (torch.rand(N, b, b, dtype=F64).tril() * 0.3).requires_grad_()
    m_end = torch.rand(N, dtype=F64).requires_grad_()
    inputs = (q, k, v, beta, f, G, m_end, m_mix)
    WS = [torch.cat((w.repeat(B, 1, 1), torch.zeros(N, *w.shape[1:], dtype=F64)), -1) for w in M0]
    expected = chunk_step(activation, 2, output_norm, *inputs, *WS)
    got = shared_start_chunk(activation, 2, output_norm, *inputs, M0)
    for a, c in zip(got, expected):
        assert close(a, c)
    probes = [torch.randn_like(t) for t in expected]
    wrt = [q, k, v, beta, G, m_mix, *M0]
    grads = torch.autograd.grad(sum((t * p).sum() for t, p in zip(got, probes)), wrt)
    want = torch.autograd.grad(sum((t * p).sum() for t, p in zip(expected, probes)), wrt)
    for name, a, c in zip(["q", "k", "v", "beta", "G", "m_mix", "M0_0", "M0_1"], grads, want):
        assert close(a, c), name


def layer_outputs(layer: NeuralMemory, x: torch.Tensor, mask, shared: bool, retrieve: bool):
    """Outputs, final weights and every parameter's gradient, from the initial state with or
    without its per-head weights (without: every chunk takes the per-sequence step)."""
    state = layer.initial_state(x.shape[0])
    if not shared:
        state = replace(state, fast=replace(state.fast, shared=()))
    y, new = (layer.retrieve if retrieve else layer)(x, state, mask)
    probe = torch.linspace(-1, 1, y.numel(), dtype=F64).view_as(y)
    loss = (y * probe).sum() + sum((w * w).sum() for w in new.fast.weights)
    return y, new.fast.weights, torch.autograd.grad(loss, [x, *layer.parameters()], allow_unused=True)


@pytest.mark.parametrize("T", [5, 8, 19], ids=["within-a-chunk", "one-whole-chunk", "three-chunks-ragged"])
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("retrieve", [False, True], ids=["store", "retrieve"])
def test_the_layer_from_its_initial_state_is_unchanged(T, masked, retrieve):
    torch.manual_seed(1)
    layer = NeuralMemory(8, heads=2, chunk_size=8, memory_depth=2, memory_expansion=2, init_decay_bias=-2.0,
                         init_lr_bias=1.0).to(F64)
    x = torch.randn(3, T, 8, dtype=F64, requires_grad=True)
    mask = None
    if masked:
        mask = torch.ones(3, T, dtype=torch.bool)
        mask[1, T // 2:] = False
        mask[2, 0] = False
    y0, w0, g0 = layer_outputs(layer, x, mask, shared=True, retrieve=retrieve)
    y1, w1, g1 = layer_outputs(layer, x, mask, shared=False, retrieve=retrieve)
    assert close(y0, y1)
    for a, c in zip(w0, w1):
        assert close(a, c)
    for a, c in zip(g0, g1):
        assert (a is None) == (c is None) and (a is None or close(a, c))

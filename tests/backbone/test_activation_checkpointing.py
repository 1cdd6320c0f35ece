"""Activation checkpointing applied from outside (``parallelize.checkpoint_blocks``): the same
outputs and gradients in float64 for every variant, with less kept for backward."""

import pytest
import torch
from backbone_cases import CASES, make_backbone, randn

from titans_lightning.memory import NeuralMemory
from titans_lightning.parallelize import checkpoint_blocks

T = 13


def _output_and_grads(model, x):
    h, state = model(x)
    probe = randn(*h.shape, seed=7)
    loss = (h * probe).sum()
    params = [p for p in model.parameters()]
    return h, torch.autograd.grad(loss, params, allow_unused=True)


@pytest.mark.parametrize("variant, overrides", CASES)
def test_checkpointed_blocks_give_the_same_gradients(variant, overrides):
    plain, checkpointed = make_backbone(variant, **overrides).train(), make_backbone(variant, **overrides).train()
    checkpoint_blocks(checkpointed.blocks, memory_segment=2)
    x = randn(2, T, 16)
    h, grads = _output_and_grads(plain, x)
    h_ckpt, grads_ckpt = _output_and_grads(checkpointed, x)
    torch.testing.assert_close(h_ckpt, h, rtol=1e-12, atol=1e-12)
    for (name, _), g, g_ckpt in zip(plain.named_parameters(), grads, grads_ckpt):
        assert (g is None) == (g_ckpt is None), name
        if g is not None:
            torch.testing.assert_close(g_ckpt, g, rtol=1e-10, atol=1e-12, msg=name)
    memories = [m for m in checkpointed.modules() if isinstance(m, NeuralMemory)]
    assert all(m.checkpoint_segment == 2 for m in memories)


def _saved_bytes(model, x) -> int:
    """Bytes autograd keeps for backward outside checkpointed regions after one forward."""
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(saved)


def test_checkpointed_blocks_keep_only_their_inputs():
    plain, checkpointed = make_backbone("mac").train(), make_backbone("mac").train()
    checkpoint_blocks(checkpointed.blocks)
    x = randn(2, 48, 16).requires_grad_()
    assert _saved_bytes(checkpointed, x) < _saved_bytes(plain, x) / 10

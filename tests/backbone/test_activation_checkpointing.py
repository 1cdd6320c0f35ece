"""Activation checkpointing applied from outside (``parallelize.checkpoint_blocks``): the same
outputs and gradients in float64 for every variant, with less kept for backward."""

import pytest
import torch
from backbone_cases import CASES, make_backbone, randn
from torch.utils.checkpoint import CheckpointPolicy

from titans_lightning.memory import NeuralMemory
from titans_lightning.memory.chunk import chunk_step
from titans_lightning.parallelize import checkpoint_blocks, save_chunk_segments, save_segments_and_matmuls

T = 13


def _output_and_grads(model, x):
    h, state = model(x)
    probe = randn(*h.shape, seed=7)
    loss = (h * probe).sum()
    params = [p for p in model.parameters()]
    return h, torch.autograd.grad(loss, params, allow_unused=True)


@pytest.mark.parametrize("policy", [None, save_chunk_segments, save_segments_and_matmuls],
                         ids=["kept-segments", "sac-segments", "sac-matmuls"])
@pytest.mark.parametrize("variant, overrides", CASES)
def test_checkpointed_blocks_give_the_same_gradients(variant, overrides, policy):
    plain, checkpointed = make_backbone(variant, **overrides).train(), make_backbone(variant, **overrides).train()
    checkpoint_blocks(checkpointed.blocks, memory_segment=2, policy=policy)
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


def _recompute_everything(ctx, op, *args, **kwargs):
    return CheckpointPolicy.PREFER_RECOMPUTE


@pytest.mark.parametrize("policy, extra", [
    pytest.param(None, 0, id="kept-segments"),
    pytest.param(save_chunk_segments, 0, id="sac-segments"),
    pytest.param(save_segments_and_matmuls, 0, id="sac-matmuls"),
    pytest.param(_recompute_everything, 8, id="plain-checkpoint-reruns-segments"),
])
def test_block_recompute_does_not_rerun_the_recurrence(policy, extra):
    """Count chunk steps. LMM, 13 tokens, chunk 3: 5 chunks per memory layer, 2 layers. With the
    segments' outputs kept (the default, or a selective policy), the backward runs each chunk
    once more (the segment ops rerun chunks 0-3, the block recompute the last one); plain block
    checkpointing also reruns the 4 segment chunks of each layer inside the block recompute
    (8 more)."""
    model = make_backbone("lmm").train()
    checkpoint_blocks(model.blocks, memory_segment=2, policy=policy)
    calls = []

    def counting_step(*args):
        calls.append(args)
        return chunk_step(*args)

    for memory in (m for m in model.modules() if isinstance(m, NeuralMemory)):
        memory.chunk_step = counting_step
    h, _ = model(randn(2, T, 16))
    forward = len(calls)
    (h * randn(*h.shape, seed=7)).sum().backward()
    assert forward == 10
    assert len(calls) - forward == forward + extra


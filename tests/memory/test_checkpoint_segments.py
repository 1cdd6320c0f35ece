"""Checkpointed chunk recurrence: the same outputs, states and gradients as the reference, with
fewer chunk states kept for backward."""

import pytest
import torch

from titans_lightning.memory import neural_memory, neural_memory_reference

from .conftest import make_problem
from .test_functional import DIFFERENTIABLE, _assert_close


def _run(fn, tokens, state, **kwargs):
    """Output, state and gradients of a probe loss w.r.t. q, k, v, gates (and M_0 when the stream
    starts here: a resumed stream carries its weights in the state)."""
    p = make_problem(tokens=tokens, depth=2)
    weights = [] if state else [w.requires_grad_() for w in p["weights"]]
    leaves = [p[n].requires_grad_() for n in DIFFERENTIABLE] + weights
    y, new = fn(**p, state=state, **kwargs)
    probe = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    loss = (y * probe).sum() + sum((w**2).sum() for w in new.weights + new.momentum)
    return y, new, torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("segment, tokens, resume_at", [
    pytest.param(1, 23, 0, id="every-chunk"),
    pytest.param(2, 23, 0, id="pairs-ragged"),
    pytest.param(3, 24, 0, id="longer-than-remainder"),
    pytest.param(2, 23, 7, id="resumed-mid-chunk"),
])
def test_checkpointed_recurrence_matches_reference(segment, tokens, resume_at):
    kwargs = dict(chunk_size=4, activation="gelu", output_norm=True)
    state = None
    if resume_at:  # a stream that stopped mid-chunk: the first chunk has its own reference
        p = make_problem(tokens=resume_at, depth=2)
        _, state = neural_memory(**p, **kwargs)
    fast = _run(neural_memory, tokens, state, checkpoint_segment=segment, **kwargs)
    slow = _run(neural_memory_reference, tokens, state, **kwargs)
    _assert_close(fast[0], slow[0])
    for a, b in zip(fast[1].weights + fast[1].momentum + fast[1].ref_weights,
                    slow[1].weights + slow[1].momentum + slow[1].ref_weights):
        _assert_close(a, b)
    for a, b in zip(fast[2], slow[2]):
        assert a.abs().sum() > 0
        _assert_close(a, b)


def _saved_bytes(segment: int) -> int:
    """Bytes autograd keeps for backward after a forward over 64 chunks."""
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    p = make_problem(tokens=256, depth=2)
    p["weights"] = [w.requires_grad_() for w in p["weights"]]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        neural_memory(**p, chunk_size=4, checkpoint_segment=segment)
    return sum(saved)


def test_checkpointed_recurrence_keeps_fewer_states():
    kept_all, kept_one_in_eight = _saved_bytes(0), _saved_bytes(8)
    assert kept_one_in_eight < kept_all / 3, (kept_one_in_eight, kept_all)

"""Checkpointed chunk recurrence: the same outputs, states and gradients as the reference, with
fewer chunk states kept for backward."""

import pytest
import torch
from torch.utils.checkpoint import checkpoint

from titans_lightning.memory import functional, neural_memory, neural_memory_reference
from titans_lightning.memory.chunk import chunk_step

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


@pytest.mark.parametrize("with_reference", [False, True], ids=["R-from-WS", "R-given"])
def test_chunk_segment_op_registration(with_reference):
    """`titans::chunk_segment` (3 chunks of 4): schema, autograd registration, fake (meta)
    implementation against the real one, and AOT tracing of forward and backward (what
    torch.compile does with it; once: it takes seconds)."""
    g = torch.Generator().manual_seed(0)
    N, K, b, i, h = 2, 3, 4, 4, 6

    def leaf(*shape, scale=1.0):
        return (scale * torch.rand(*shape, generator=g, dtype=torch.float64)).requires_grad_()

    chunks = (leaf(N, K, b, i), leaf(N, K, b, i), leaf(N, K, b, i), leaf(N, K, b), leaf(N, K, b),
              leaf(N, K, b, b, scale=0.1), leaf(N, K), leaf(N, K, b))
    WS = [leaf(N, h, 2 * i, scale=0.3), leaf(N, i, 2 * h, scale=0.3)]
    R = [leaf(N, h, i, scale=0.3), leaf(N, i, h, scale=0.3)] if with_reference else []
    args = (functional._step_name(chunk_step), "gelu", True, *chunks, WS, R)
    checks = ["test_schema", "test_autograd_registration", "test_faketensor"]
    checks += [] if with_reference else ["test_aot_dispatch_dynamic"]
    results = torch.library.opcheck(torch.ops.titans.chunk_segment.default, args, test_utils=checks)
    assert results == {check: "SUCCESS" for check in checks}


def test_kept_segment_outputs_skip_the_rerun_and_replay_once():
    """`keep_segment_outputs` as the context_fn of torch.utils.checkpoint around the memory (23
    tokens, chunk 4: 6 chunks, segments of 2 before the last): the recompute reruns only the
    last chunk, the segments' backward the other 5, gradients equal the uncheckpointed ones,
    and a second backward, which would replay consumed outputs, is refused."""
    p = make_problem(tokens=23, depth=2)
    calls = []

    def counting_step(*args):
        calls.append(args)
        return chunk_step(*args)

    def memory(q, segment):
        return neural_memory(**{**p, "q": q}, chunk_size=4, checkpoint_segment=segment, step=counting_step)[0]

    q = p["q"].clone().requires_grad_()
    expected = torch.autograd.grad(memory(q, 0).square().sum(), q)[0]
    calls.clear()
    y = checkpoint(memory, q, 2, use_reentrant=False, context_fn=functional.keep_segment_outputs)
    forward = len(calls)
    (grad,) = torch.autograd.grad(y.square().sum(), q, retain_graph=True)
    assert (forward, len(calls) - forward) == (6, 6)
    _assert_close(grad, expected)
    with pytest.raises(RuntimeError, match="recomputed twice"):
        torch.autograd.grad(y.square().sum(), q)

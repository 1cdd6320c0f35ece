"""The fast chunked op against the token-by-token reference, and its stream properties."""

import pytest
import torch

from titans_lightning.memory import neural_memory, neural_memory_reference

from .conftest import make_problem

DIFFERENTIABLE = ("q", "k", "v", "lr", "momentum", "decay")

CASES = [  # (depth, chunk_size, tokens, activation, output_norm)
    pytest.param(1, 1, 9, "gelu", False, id="matrix-b1"),
    pytest.param(1, 4, 23, "gelu", False, id="matrix-b4-ragged"),
    pytest.param(2, 1, 9, "gelu", False, id="mlp2-b1"),
    pytest.param(2, 5, 23, "gelu", False, id="mlp2-b5-ragged"),
    pytest.param(2, 8, 24, "silu", False, id="mlp2-b8-silu"),
    pytest.param(2, 16, 23, "gelu", False, id="mlp2-b16-longer-than-call"),
    pytest.param(3, 3, 20, "gelu", False, id="mlp3-b3-ragged"),
    pytest.param(3, 4, 16, "relu", False, id="mlp3-b4-relu"),
    pytest.param(1, 4, 18, "gelu", True, id="matrix-b4-norm"),
    pytest.param(2, 5, 23, "gelu", True, id="mlp2-b5-norm"),
    pytest.param(3, 4, 16, "silu", True, id="mlp3-b4-silu-norm"),
]


def _leaves(problem):
    for name in DIFFERENTIABLE:
        problem[name] = problem[name].clone().requires_grad_()
    problem["weights"] = [w.clone().requires_grad_() for w in problem["weights"]]
    return [problem[n] for n in DIFFERENTIABLE] + problem["weights"]


def _outputs_and_grads(fn, problem, **kwargs):
    leaves = _leaves(problem)
    y, state = fn(**problem, **kwargs)
    probe = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    loss = (y * probe).sum() + sum((w**2).sum() for w in state.weights + state.momentum)
    return y, state, torch.autograd.grad(loss, leaves)


def _assert_close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("depth, chunk_size, tokens, activation, output_norm", CASES)
def test_fast_path_matches_reference(depth, chunk_size, tokens, activation, output_norm):
    kwargs = dict(chunk_size=chunk_size, activation=activation, output_norm=output_norm)
    fast = _outputs_and_grads(neural_memory, make_problem(tokens=tokens, depth=depth), **kwargs)
    slow = _outputs_and_grads(neural_memory_reference, make_problem(tokens=tokens, depth=depth), **kwargs)
    _assert_close(fast[0], slow[0])
    for a, b in zip(fast[1].weights + fast[1].momentum, slow[1].weights + slow[1].momentum):
        _assert_close(a, b)
    for name, a, b in zip(DIFFERENTIABLE + ("w",) * depth, fast[2], slow[2]):
        assert a.abs().sum() > 0, f"no gradient reaches {name}"
        _assert_close(a, b)


@pytest.mark.parametrize("cuts", [[7], [1, 2, 3, 11], [5, 10, 15, 16], list(range(1, 23))],
                         ids=["one", "ragged", "on-boundaries", "token-by-token"])
def test_pieces_equal_whole(cuts):
    p = make_problem(tokens=23)
    whole, whole_state = neural_memory(**p, chunk_size=5)
    state, ys = None, []
    for lo, hi in zip([0] + cuts, cuts + [23]):
        piece = {n: p[n][:, lo:hi] for n in ("q", "k", "v", "lr", "momentum", "decay")}
        y, state = neural_memory(**piece, weights=p["weights"], chunk_size=5, state=state)
        ys.append(y)
    _assert_close(torch.cat(ys, dim=1), whole)
    for a, b in zip(state.weights + state.momentum + state.ref_weights,
                    whole_state.weights + whole_state.momentum + whole_state.ref_weights):
        _assert_close(a, b)
    assert state.position == whole_state.position == 23


def test_reference_continues_from_a_state_like_the_fast_path():
    p = make_problem(tokens=23)
    first = {n: p[n][:, :9] for n in ("q", "k", "v", "lr", "momentum", "decay")}
    rest = {n: p[n][:, 9:] for n in ("q", "k", "v", "lr", "momentum", "decay")}
    _, state = neural_memory(**first, weights=p["weights"], chunk_size=4)
    fast, _ = neural_memory(**rest, weights=p["weights"], chunk_size=4, state=state)
    slow, _ = neural_memory_reference(**rest, weights=p["weights"], chunk_size=4, state=state)
    _assert_close(fast, slow)


@pytest.mark.parametrize("t", [0, 4, 5, 9, 21], ids=lambda t: f"t{t}")
def test_causal(t):
    p = make_problem(tokens=23)
    y, _ = neural_memory(**p, chunk_size=5)
    for name in ("q", "k", "v", "lr", "momentum", "decay"):
        p[name] = p[name].clone()
        p[name][:, t + 1 :] += 0.5
    y2, _ = neural_memory(**p, chunk_size=5)
    torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1], rtol=0, atol=0)
    if t < 22:
        assert not torch.allclose(y2[:, t + 1 :], y[:, t + 1 :])


def test_batch_independence():
    p = make_problem(batch=4, tokens=17)
    y, _ = neural_memory(**p, chunk_size=4)
    perm = torch.tensor([2, 0, 3, 1])
    permuted = {n: (x[perm] if torch.is_tensor(x) else [w[perm] for w in x]) for n, x in p.items()}
    y2, _ = neural_memory(**permuted, chunk_size=4)
    _assert_close(y2, y[perm])


def test_masked_tokens_leave_state_exactly_unchanged():
    p = make_problem(tokens=20)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[0, 6:13] = False  # a hole across a chunk boundary, with momentum in flight
    mask[1, 15:] = False  # right padding
    _, before = neural_memory(**{n: p[n][:, :6] if n != "weights" else p[n] for n in p}, chunk_size=4)
    _, state = neural_memory(**p, chunk_size=4, mask=mask)
    _, during = neural_memory(
        **{n: p[n][:, 6:13] if n != "weights" else p[n] for n in p}, chunk_size=4, state=before, mask=mask[:, 6:13]
    )
    for a, b in zip(during.weights + during.momentum, before.weights + before.momentum):
        torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
    slow_y, slow_state = neural_memory_reference(**p, chunk_size=4, mask=mask)
    fast_y, _ = neural_memory(**p, chunk_size=4, mask=mask)
    _assert_close(fast_y, slow_y)
    for a, b in zip(state.weights + state.momentum, slow_state.weights + slow_state.momentum):
        _assert_close(a, b)
    unpadded = {n: p[n][1:, :15] if n != "weights" else [w[1:] for w in p[n]] for n in p}
    _, short = neural_memory(**unpadded, chunk_size=4)
    for a, b in zip(state.weights, short.weights):
        _assert_close(a[1:], b)


def test_inner_gradient_is_not_detached():
    """The outer loss reaches k and v only through the writes (meta-gradient)."""
    p = make_problem(tokens=12)
    k, v = p["k"].clone().requires_grad_(), p["v"].clone().requires_grad_()
    y, _ = neural_memory(**{**p, "k": k, "v": v}, chunk_size=4)
    gk, gv = torch.autograd.grad(y[:, -1].sum(), (k, v))
    assert gk[:, :-1].abs().sum() > 0 and gv[:, :-1].abs().sum() > 0


def test_bf16_autocast_is_finite_and_close_to_float32():
    p = {n: (x.float() if torch.is_tensor(x) else [w.float() for w in x]) for n, x in make_problem(tokens=64).items()}
    ref, _ = neural_memory(**p, chunk_size=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = {n: (x.bfloat16() if n in ("q", "k", "v") else x) for n, x in p.items()}
        y, state = neural_memory(**low, chunk_size=16)
    assert all(w.dtype == torch.float32 for w in state.weights + state.momentum)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), ref, rtol=0.05, atol=0.05)


def test_long_decay_products_do_not_underflow_to_nan():
    p = make_problem(tokens=256)
    p["decay"] = torch.full_like(p["decay"], 0.999)
    p["momentum"] = torch.zeros_like(p["momentum"])
    p = {n: (x.float() if torch.is_tensor(x) else [w.float() for w in x]) for n, x in p.items()}
    y, state = neural_memory(**p, chunk_size=64)
    assert torch.isfinite(y).all() and all(torch.isfinite(w).all() for w in state.weights)


def test_gradients_through_a_state_cut_mid_chunk_match_reference():
    """The second piece starts mid-chunk: its gradients use the carried chunk-start weights."""
    grads = []
    for fn in (neural_memory, neural_memory_reference):
        p = make_problem(tokens=15, depth=2)
        leaves = _leaves(p)
        first = {n: p[n][:, :6] for n in DIFFERENTIABLE}
        rest = {n: p[n][:, 6:] for n in DIFFERENTIABLE}
        _, state = fn(**first, weights=p["weights"], chunk_size=4)
        y, end = fn(**rest, weights=p["weights"], chunk_size=4, state=state)
        loss = y.square().sum() + sum(w.square().sum() for w in end.weights + end.momentum)
        grads.append(torch.autograd.grad(loss, leaves))
    for a, b in zip(*grads):
        _assert_close(a, b)


def _per_channel(problem, seed=1):
    """Replace the per-token decay by one (B, T, o_l) per-channel decay per layer."""
    g = torch.Generator().manual_seed(seed)
    B, T = problem["lr"].shape
    problem["decay"] = [0.2 * torch.rand(B, T, w.shape[1], generator=g, dtype=w.dtype) for w in problem["weights"]]
    return problem


CHANNEL_CASES = [  # (depth, chunk_size, tokens, output_norm)
    pytest.param(1, 1, 7, False, id="matrix-b1"),
    pytest.param(1, 4, 18, False, id="matrix-b4-ragged"),
    pytest.param(2, 5, 23, True, id="mlp2-b5-norm"),
    pytest.param(3, 3, 14, False, id="mlp3-b3"),
]


@pytest.mark.parametrize("depth, chunk_size, tokens, output_norm", CHANNEL_CASES)
def test_per_channel_decay_matches_reference(depth, chunk_size, tokens, output_norm):
    grads = []
    for fn in (neural_memory, neural_memory_reference):
        p = make_problem(tokens=tokens, depth=depth)
        leaves = _leaves(p)
        p = _per_channel(p)
        p["decay"] = [d.requires_grad_() for d in p["decay"]]
        leaves = leaves + p["decay"]
        y, state = fn(**p, chunk_size=chunk_size, output_norm=output_norm)
        probe = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
        loss = (y * probe).sum() + sum((w**2).sum() for w in state.weights + state.momentum)
        used = [x for x in leaves if x is not leaves[5]]  # the per-token decay is replaced
        grads.append((y, state, torch.autograd.grad(loss, used)))
    (fast_y, fast_state, fast_g), (slow_y, slow_state, slow_g) = grads
    _assert_close(fast_y, slow_y)
    for a, b in zip(fast_state.weights + fast_state.momentum, slow_state.weights + slow_state.momentum):
        _assert_close(a, b)
    for a, b in zip(fast_g, slow_g):
        assert a.abs().sum() > 0
        _assert_close(a, b)


def test_per_channel_decay_equal_channels_is_the_shared_decay():
    p = make_problem(tokens=19)
    shared, _ = neural_memory(**p, chunk_size=4)
    p["decay"] = [p["decay"][..., None].expand(-1, -1, w.shape[1]) for w in p["weights"]]
    channel, _ = neural_memory(**p, chunk_size=4)
    _assert_close(channel, shared)


def test_per_channel_decay_pieces_and_mask():
    p = _per_channel(make_problem(tokens=17))
    mask = torch.ones(2, 17, dtype=torch.bool)
    mask[0, 3:9] = False
    whole, whole_state = neural_memory(**p, chunk_size=4, mask=mask)
    slow, _ = neural_memory_reference(**p, chunk_size=4, mask=mask)
    _assert_close(whole, slow)
    state, ys = None, []
    for lo, hi in [(0, 5), (5, 6), (6, 14), (14, 17)]:
        piece = {n: p[n][:, lo:hi] for n in ("q", "k", "v", "lr", "momentum")}
        y, state = neural_memory(**piece, decay=[d[:, lo:hi] for d in p["decay"]], weights=p["weights"],
                                 chunk_size=4, state=state, mask=mask[:, lo:hi])
        ys.append(y)
    _assert_close(torch.cat(ys, dim=1), whole)
    for a, b in zip(state.weights + state.momentum, whole_state.weights + whole_state.momentum):
        _assert_close(a, b)


@pytest.mark.parametrize("decay_shapes, message", [
    ([(2, 9, 6)], "one tensor per memory layer"),
    ([(2, 9, 6), (2, 9, 6)], r"layer 1 must be \(B, T, 4\)"),
], ids=["count", "width"])
def test_per_channel_decay_shape_errors(decay_shapes, message):
    p = make_problem(tokens=9)
    p["decay"] = [torch.rand(*s, dtype=torch.float64) for s in decay_shapes]
    with pytest.raises(ValueError, match=message):
        neural_memory(**p, chunk_size=4)

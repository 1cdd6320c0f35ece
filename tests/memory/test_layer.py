"""The NeuralMemory layer: streaming, causality, padding, parameters."""

import io

import pytest
import torch

from titans_lightning.memory import NeuralMemory


def _layer(**kwargs):
    torch.manual_seed(0)
    options = dict(heads=2, chunk_size=4, memory_depth=2, memory_expansion=2)
    return NeuralMemory(16, **{**options, **kwargs}).double()


def _x(batch=3, tokens=19, seed=1):
    return torch.randn(batch, tokens, 16, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("cuts", [[1], [3, 4, 11], list(range(1, 19))], ids=["first-token", "ragged", "token-by-token"])
@pytest.mark.parametrize("residual", [True, False], ids=["residual", "plain"])
def test_layer_pieces_equal_whole(cuts, residual):
    layer, x = _layer(residual_memory=residual), _x()
    whole, _ = layer(x)
    state, ys = None, []
    for lo, hi in zip([0] + cuts, cuts + [19]):
        y, state = layer(x[:, lo:hi], state)
        ys.append(y)
    torch.testing.assert_close(torch.cat(ys, 1), whole, rtol=1e-9, atol=1e-10)
    assert state.numel() == layer.initial_state(3).numel()


@pytest.mark.parametrize("t", [2, 3, 8, 15], ids=lambda t: f"t{t}")
def test_layer_causal_with_conv(t):
    layer, x = _layer(), _x()
    y, _ = layer(x)
    x2 = x.clone()
    x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :])
    y2, _ = layer(x2)
    torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1], rtol=0, atol=0)


def test_retrieve_reads_without_writing():
    layer, x = _layer(), _x()
    _, state = layer(x[:, :8])
    r1, after = layer.retrieve(x[:, 8:], state)
    assert all(a is b for a, b in zip(after.fast.weights, state.fast.weights))
    r2, _ = layer.retrieve(x[:, 8:], state)
    torch.testing.assert_close(r1, r2)
    pieces = torch.cat([layer.retrieve(x[:, 8:12], state)[0],
                        layer.retrieve(x[:, 12:], layer.retrieve(x[:, 8:12], state)[1])[0]], 1)
    torch.testing.assert_close(pieces, r1)


def test_left_padding_does_not_change_real_tokens():
    layer = _layer(chunk_size=1)  # chunk_size 1: absolute positions do not matter
    x = _x(batch=1, tokens=10)
    y, state = layer(x)
    padded = torch.cat([torch.randn(1, 5, 16, dtype=torch.float64), x], 1)
    mask = torch.arange(15)[None] >= 5
    y_pad, state_pad = layer(padded, mask=mask)
    torch.testing.assert_close(y_pad[:, 5:], y)
    for a, b in zip(state_pad.fast.weights, state.fast.weights):
        torch.testing.assert_close(a, b)


def test_batch_independence():
    layer, x = _layer(), _x(batch=4)
    y, _ = layer(x)
    perm = torch.tensor([3, 1, 0, 2])
    torch.testing.assert_close(layer(x[perm])[0], y[perm])


def test_gradients_reach_every_parameter_and_detach_cuts():
    layer, x = _layer(), _x()
    y, state = layer(x)
    y.square().mean().backward()
    missing = [n for n, p in layer.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient: {missing}"
    detached = state.detach()
    assert not any(w.requires_grad for w in detached.fast.weights + detached.fast.momentum)


def test_per_head_weights_survive_optimizer_step_and_state_dict_round_trip():
    layer, x = _layer(), _x()
    opt = torch.optim.AdamW(layer.parameters(), lr=1e-2)
    layer(x)[0].square().mean().backward()
    before = [w.detach().clone() for w in layer.memory_init]
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, layer.memory_init))
    assert not torch.equal(layer.memory_init[0][0], layer.memory_init[0][1])
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    fresh = _layer()
    fresh.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(fresh(x)[0], layer(x)[0])


def test_bf16_autocast_layer_keeps_float32_state():
    layer, x = _layer().float(), _x().float()
    ref, _ = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, state = layer(x)
    assert all(w.dtype == torch.float32 for w in state.fast.weights)
    assert torch.isfinite(y).all()
    assert (y.float() - ref).abs().mean() < 0.05 * ref.abs().mean() + 1e-3


@pytest.mark.parametrize("depth, scale", [(2, 1.0), (2, 3.0), (3, 3.0)], ids=["d2-unit", "d2-large", "d3-large"])
def test_long_stream_stays_finite_with_extreme_gates(depth, scale):
    """theta at its maximum and eta = 0.99 over 4096 tokens: the normalised memory stays finite.

    (Without memory_norm this diverges within a few hundred tokens for most of these cases.)
    """
    torch.manual_seed(0)
    layer = NeuralMemory(32, heads=2, chunk_size=16, memory_depth=depth, init_lr_bias=10.0, init_momentum_bias=4.6)
    state = None
    with torch.no_grad():
        for _ in range(8):
            y, state = layer(scale * torch.randn(2, 512, 32), state)
    assert torch.isfinite(y).all()
    assert all(torch.isfinite(w).all() and w.abs().max() < 1e3 for w in state.fast.weights)



def test_per_channel_decay_layer_starts_as_shared_streams_and_learns_its_gates():
    shared, channel = _layer(), _layer(per_channel_decay=True)
    missing, unexpected = channel.load_state_dict(shared.state_dict(), strict=False)
    assert missing == ["to_channel_decay.weight", "to_channel_decay.bias"] and not unexpected
    x = _x()
    y, _ = channel(x)
    torch.testing.assert_close(y, shared(x)[0], rtol=1e-9, atol=1e-10)  # equal gates at init
    state, ys = None, []
    for lo, hi in [(0, 3), (3, 4), (4, 13), (13, 19)]:
        piece, state = channel(x[:, lo:hi], state)
        ys.append(piece)
    torch.testing.assert_close(torch.cat(ys, 1), y, rtol=1e-9, atol=1e-10)
    y.square().mean().backward()
    assert channel.to_channel_decay.weight.grad.abs().sum() > 0
    assert channel.to_channel_decay.weight.shape == (2 * (16 + 8), 16)  # heads x (hidden 16 + out 8)

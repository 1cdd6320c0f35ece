"""Attention kernels against dense references; persistent tokens and RoPE are shift-invariant."""

import pytest
import torch
from backbone_cases import randn

from titans_lightning.backbone.attention import (
    Attention,
    KVCache,
    Prefix,
    apply_rope,
    full_attention,
    rope_angles,
    sliding_attention,
)


def dense_reference(q, k, v, valid, window, prefix):
    """Explicit masked softmax: query t (the last T of S keys) sees keys within the window."""
    T, S, d = q.shape[2], k.shape[2], q.shape[-1]
    rows = torch.arange(T)[:, None] + S - T
    cols = torch.arange(S)[None, :]
    allowed = (cols <= rows) & (cols > rows - window) & (valid[:, None, None, :] | (cols == rows))
    scores = q @ k.transpose(-1, -2)
    values = v
    if prefix is not None:
        scores = torch.cat((prefix.q_raw @ prefix.k.transpose(-1, -2).expand(q.shape[0], -1, -1, -1), scores), -1)
        prefix_allowed = allowed.new_ones(*allowed.shape[:-1], prefix.k.shape[2]).expand(q.shape[0], 1, T, -1)
        allowed = torch.cat((prefix_allowed, allowed.expand(-1, 1, -1, -1)), -1)
        values = torch.cat((prefix.v.expand(q.shape[0], -1, -1, -1), v), 2)
    scores = scores.masked_fill(~allowed, float("-inf")) / d**0.5
    return torch.softmax(scores, -1) @ values


@pytest.mark.parametrize("T, window, persistent", [
    (1, 5, 0), (7, 5, 2), (13, 1, 0), (200, 130, 3), (150, 200, 0),
], ids=["one-token", "short", "window-1", "several-blocks-padded", "window-beyond-call"])
def test_sliding_attention_matches_dense(T, window, persistent):
    B, H, d = 2, 2, 8
    q = randn(B, H, T, d, seed=1)
    k, v = randn(B, H, window - 1 + T, d, seed=2), randn(B, H, window - 1 + T, d, seed=3)
    valid = torch.rand(B, window - 1 + T, generator=torch.Generator().manual_seed(4)) > 0.2
    prefix = Prefix(randn(1, H, persistent, d, seed=5), randn(1, H, persistent, d, seed=6),
                    randn(B, H, T, d, seed=7)) if persistent else None
    out = sliding_attention(q, k, v, valid, window, prefix)
    torch.testing.assert_close(out, dense_reference(q, k, v, valid, window, prefix), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cached, persistent", [(0, 0), (0, 2), (6, 2)], ids=["plain", "persistent", "cache"])
def test_full_attention_matches_dense(cached, persistent):
    B, H, T, d = 2, 2, 9, 8
    q = randn(B, H, T, d, seed=1)
    k, v = randn(B, H, cached + T, d, seed=2), randn(B, H, cached + T, d, seed=3)
    valid = torch.ones(B, cached + T, dtype=torch.bool)
    valid[0, 2] = False
    prefix = Prefix(randn(1, H, persistent, d, seed=5), randn(1, H, persistent, d, seed=6),
                    randn(B, H, T, d, seed=7)) if persistent else None
    out = full_attention(q, k, v, valid, prefix)
    torch.testing.assert_close(out, dense_reference(q, k, v, valid, 10**9, prefix), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("window", [None, 3], ids=["full", "window"])
def test_attention_is_shift_invariant(window):
    """RoPE is relative and persistent tokens score at distance 0, so shifting every position
    by a million leaves the output unchanged (float64 angles keep it exact enough)."""
    torch.manual_seed(0)
    attn = Attention(16, 2, persistent_tokens=2, window=window).double()
    x = randn(1, 7, 16)
    valid = torch.ones(1, 7, dtype=torch.bool)
    out = [attn(x, torch.arange(7) + shift, valid, attn.empty_cache(1, x))[0] for shift in (0, 10**6)]
    torch.testing.assert_close(out[1], out[0], rtol=1e-7, atol=1e-9)


def test_sliding_cache_keeps_exactly_window_minus_one_slots():
    attn = Attention(8, 2, window=4).double()
    cache = attn.empty_cache(1, torch.zeros(1, dtype=torch.float64))
    for t in range(6):
        _, cache = attn(randn(1, 1, 8, seed=t), torch.tensor([t]), torch.ones(1, 1, dtype=torch.bool), cache)
        assert isinstance(cache, KVCache) and cache.length == 3
    assert cache.valid.all()


def _sdpa_input_dtypes(monkeypatch) -> list:
    """Record the dtypes of (q, k, v) of every SDPA call the attention module makes."""
    import titans_lightning.backbone.attention as attention

    seen, sdpa = [], attention.F.scaled_dot_product_attention

    def recording(q, k, v, *args, **kwargs):
        seen.append((q.dtype, k.dtype, v.dtype))
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", recording)
    return seen


@pytest.mark.parametrize("window", [None, 4], ids=["full", "window"])
def test_bf16_autocast_keeps_q_and_k_in_bf16(window, monkeypatch):
    """RoPE angles and the start cache come in the float32 residual's dtype; neither may upcast
    the bf16 projections, so SDPA gets bf16 q, k, v. In float32 nothing changes dtype."""
    torch.manual_seed(0)
    attn = Attention(16, 2, persistent_tokens=2, window=window)
    x, positions = torch.randn(2, 9, 16), torch.arange(5, 14)
    valid = torch.ones(2, 9, dtype=torch.bool)
    seen = _sdpa_input_dtypes(monkeypatch)
    reference, _ = attn(x, positions, valid, attn.empty_cache(2, x))
    assert seen == [(torch.float32,) * 3]
    seen.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q, k, _, _ = attn.project(x, positions)
        out, cache = attn(x, positions, valid, attn.empty_cache(2, x))
    assert q.dtype == k.dtype == cache.k.dtype == torch.bfloat16
    assert seen == [(torch.bfloat16,) * 3]
    torch.testing.assert_close(out.float(), reference, rtol=0.05, atol=0.05 * reference.abs().max().item())


def test_rope_rotates_float32_as_the_complex_product():
    """q e^{i pos freq} over the (x1, x2) halves, float32 against float64."""
    x, positions = randn(2, 2, 6, 8).float(), torch.arange(10**5, 10**5 + 6)
    cos, sin = rope_angles(positions, 8, 10000.0, torch.float32)
    rotated = apply_rope(x, cos, sin)
    freq = 10000.0 ** (-torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    turn = torch.polar(torch.ones(6, 4, dtype=torch.float64), positions.double()[:, None] * freq)
    expected = torch.view_as_real(torch.complex(*x.double().chunk(2, -1)) * turn).unbind(-1)
    assert rotated.dtype == torch.float32
    torch.testing.assert_close(rotated.double(), torch.cat(expected, -1), rtol=0, atol=1e-5)

"""Llama-style layers and causal attention with persistent tokens and bounded streaming caches.

Shape legend: B batch, T new tokens, L cached tokens, S = L + T keys, P persistent tokens,
H heads, d head width, D model width, n query blocks, W window.

All masks are boolean, True = may attend. Every query may always attend to itself and to the
persistent tokens, so a row is never empty (padded queries stay finite).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """RMSNorm with a learned scale: ``x / rms(x) * w`` over the last dim (D parameters).

    Computed in the scale's dtype (float32 under mixed precision), returned in the input's.
    ``init``: the scale's initial value (every entry)."""

    def __init__(self, dim: int, eps: float = 1e-6, init: float = 1.0) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        """(..., D) -> (..., D)."""
        return F.rms_norm(x.to(self.weight.dtype), (x.shape[-1],), self.weight, self.eps).to(x.dtype)


class SwiGLU(nn.Module):
    """Llama MLP ``W_2 (silu(W_1 x) * W_3 x)``: 3 * D * hidden parameters, no biases."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, T, D)."""
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.dropout(self.down(F.silu(gate) * up))


def rope_angles(positions: Tensor, head_dim: int, base: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos, sin of shape (T, d/2) for absolute ``positions`` (T,).

    Angles are formed in float64: a float32 ``position * frequency`` loses about 0.1 rad at
    position 1e6, and streams here run that long.
    """
    wide = torch.float32 if positions.device.type == "mps" else torch.float64  # MPS has no float64
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=wide, device=positions.device) / head_dim)
    angles = positions.to(wide)[:, None] * inv_freq[None, :]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate (B, H, T, d) by (T, d/2) angles (rotate-half convention); returns x's dtype.

    The rotation runs in the wider of the two dtypes (float32 angles with bf16 q/k under autocast:
    one rounding, of the result) and comes back in x's own, so bf16 q/k reach SDPA as bf16, not
    upcast by the residual stream's float32 angles. Equal dtypes: the same ops as without a cast.
    """
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)


@dataclass(frozen=True)
class KVCache:
    """Keys/values of past tokens, RoPE already applied; an immutable value.

    k, v: (B, H, L, d); valid: (B, L) bool, False for padding and for the not-yet-filled slots
    of a sliding-window cache (which keeps exactly W - 1 slots from the start).
    """

    k: Tensor
    v: Tensor
    valid: Tensor

    @property
    def length(self) -> int:
        return self.k.shape[2]

    def detach(self) -> KVCache:
        return KVCache(self.k.detach(), self.v.detach(), self.valid)

    def append(self, k: Tensor, v: Tensor, valid: Tensor) -> KVCache:
        """Concatenate new (B, H, T, d) keys/values and (B, T) validity, in the new keys' dtype.

        The cache follows the projections' dtype: a start cache made like the float32 residual
        would otherwise promote bf16 keys/values (autocast) to float32 on their way to SDPA."""
        old_k, old_v = self.k.to(k.dtype), self.v.to(v.dtype)
        return KVCache(torch.cat((old_k, k), 2), torch.cat((old_v, v), 2), torch.cat((self.valid, valid), 1))

    def last(self, n: int) -> KVCache:
        """The last ``n`` slots (n may be 0), copied so the cache never pins a long call's keys."""
        start = self.length - n
        return KVCache(self.k[:, :, start:].clone(), self.v[:, :, start:].clone(), self.valid[:, start:].clone())

    @staticmethod
    def empty(batch: int, heads: int, length: int, head_dim: int, like: Tensor) -> KVCache:
        """``length`` invalid zero slots, dtype/device of ``like``."""
        k = like.new_zeros(batch, heads, length, head_dim)
        return KVCache(k, k.clone(), torch.zeros(batch, length, dtype=torch.bool, device=like.device))


@dataclass(frozen=True)
class Prefix:
    """Persistent tokens for one attention call.

    k, v: (1, H, P, d) persistent keys/values; q_raw: queries before RoPE, shaped like q.
    Persistent tokens have no position: every query scores them as if they sat at its own
    position (relative distance 0), so their pull does not drift with the absolute position of
    a query in a long stream. SDPA has one query per row, so the query is widened to
    ``[q_rope, q_raw]`` (2d) and the keys to ``[k_rope, 0]`` / ``[0, k_persistent]``.
    """

    k: Tensor
    v: Tensor
    q_raw: Tensor


def sdpa_with_prefix(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, prefix: Optional[Prefix],
                     dropout: float) -> Tensor:
    """SDPA over (..., T, d) queries and (..., S, d) keys, with persistent keys/values prepended
    (visible to every query). ``allowed`` broadcasts to (..., T, S); returns (..., T, d)."""
    scale, width = q.shape[-1] ** -0.5, v.shape[-1]
    if prefix is not None:
        lead = k.shape[:-2]
        pk, pv = prefix.k.expand(*lead, -1, -1), prefix.v.expand(*lead, -1, -1)
        q = torch.cat((q, prefix.q_raw), -1)
        k = torch.cat((torch.cat((torch.zeros_like(pk), pk), -1), torch.cat((k, torch.zeros_like(k)), -1)), -2)
        v = torch.cat((pv, v), -2)
        ones = allowed.new_ones(*allowed.shape[:-1], pk.shape[-2])
        allowed = torch.cat((ones.expand(*allowed.shape[:-1], -1), allowed), -1)
        # values widened with zeros to the queries' 2d: the fused CPU kernel wants equal head widths
        v = torch.cat((v, torch.zeros_like(v)), -1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout, scale=scale)[..., :width]


def full_attention(q: Tensor, k: Tensor, v: Tensor, valid: Tensor,
                   prefix: Optional[Prefix] = None, dropout: float = 0.0, padded: bool = True) -> Tensor:
    """Causal attention of T queries over S = L + T keys (the queries are the last T keys).

    q: (B, H, T, d); k, v: (B, H, S, d); valid: (B, S) key padding mask -> (B, H, T, d).
    ``padded=False`` promises every key is valid (no device sync to find out).
    """
    T, S = q.shape[2], k.shape[2]
    if prefix is None and T == S and not padded:
        # the plain training case takes the kernel's own causal path (no mask tensor)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
    return sdpa_with_prefix(q, k, v, causal_mask(T, valid), prefix, dropout)


def causal_mask(T: int, valid: Tensor) -> Tensor:
    """(B, 1, T, S) mask of T queries that are the last T of S keys with validity (B, S):
    a query sees the valid keys up to itself, and always itself."""
    S = valid.shape[1]
    rows = torch.arange(T, device=valid.device)[:, None] + (S - T)
    cols = torch.arange(S, device=valid.device)[None, :]
    return (cols <= rows) & (valid[:, None, None, :] | (cols == rows))


def sliding_attention(q: Tensor, k: Tensor, v: Tensor, valid: Tensor, window: int,
                      prefix: Optional[Prefix] = None, dropout: float = 0.0) -> Tensor:
    """Causal sliding-window attention, blocked so the cost is O(T * W), not O(T * S).

    q: (B, H, T, d); k, v: (B, H, W - 1 + T, d) = a W - 1 slot cache then the T new keys;
    valid: (B, W - 1 + T). Query t sees keys t .. t + W - 1 (its window, itself last).
    Queries go in blocks of ``n_q = min(T, max(W / 2, 64))``; each block reads n_q + W - 1 keys.
    """
    B, H, T, d = q.shape
    nq = min(T, max(window // 2, 64))  # measured: W/2 beats W (fewer wasted keys) and W/8
    n = -(-T // nq)
    pad = n * nq - T
    if pad:
        q = F.pad(q, (0, 0, 0, pad))
        k, v = F.pad(k, (0, 0, 0, pad)), F.pad(v, (0, 0, 0, pad))
        valid = F.pad(valid, (0, pad), value=False)
        if prefix is not None:
            prefix = Prefix(prefix.k, prefix.v, F.pad(prefix.q_raw, (0, 0, 0, pad)))
    span = nq + window - 1
    # blocks go to the batch dim, (B n, H, ., d): 4-D inputs take the fused CPU kernel, where a
    # (B, H, n, ., d) layout falls back to the math path (slower: the scores are materialised)
    kb, vb = (x.unfold(2, span, nq).permute(0, 2, 1, 4, 3).reshape(B * n, H, span, d) for x in (k, v))
    vmask = valid.unfold(1, span, nq).reshape(B * n, 1, 1, span)
    rows = torch.arange(nq, device=q.device)[:, None]
    cols = torch.arange(span, device=q.device)[None, :]
    band = (cols >= rows) & (cols <= rows + window - 1)
    allowed = band & (vmask | (cols == rows + window - 1))  # (B n, 1, nq, span)
    qb = _blocks_to_batch(q, n)
    if prefix is not None:
        prefix = Prefix(prefix.k, prefix.v, _blocks_to_batch(prefix.q_raw, n))
    out = sdpa_with_prefix(qb, kb, vb, allowed, prefix, dropout)  # (B n, H, nq, d)
    return out.reshape(B, n, H, nq, d).transpose(1, 2).reshape(B, H, n * nq, d)[:, :, :T]


def _blocks_to_batch(x: Tensor, n: int) -> Tensor:
    """(B, H, n * nq, d) -> (B n, H, nq, d): query block j of batch b at row b * n + j."""
    B, H, T, d = x.shape
    return x.reshape(B, H, n, T // n, d).transpose(1, 2).reshape(B * n, H, T // n, d)


class Attention(nn.Module):
    """Multi-head causal self-attention with RoPE and persistent tokens (docs/method.md section 2).

    ``window=None`` is full causal attention (a growing cache); otherwise a sliding window of
    ``window`` keys per query (a cache of exactly ``window - 1`` slots). Persistent tokens are
    learned (P, D) inputs projected by the same key/value maps, visible to every query, and
    scored at relative distance 0 (see ``Prefix``). Parameters: 4 * D^2 + P * D.
    """

    def __init__(self, dim: int, heads: int, persistent_tokens: int = 0, window: Optional[int] = None,
                 rope_base: float = 10000.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.head_dim, self.window = heads, dim // heads, window
        self.rope_base, self.dropout = rope_base, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        # unit entries: the scale of the RMS-normed tokens they sit beside
        self.persistent = nn.Parameter(torch.randn(persistent_tokens, dim)) if persistent_tokens else None

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, H, T, d)."""
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def project(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor, Optional[Prefix]]:
        """q, k, v (B, H, T, d) of x (B, T, D) at absolute positions (T,), RoPE applied to q and k,
        and the persistent tokens for these queries (None without persistent tokens)."""
        q, k, v = (self.split_heads(t) for t in self.qkv(x).chunk(3, dim=-1))
        cos, sin = rope_angles(positions, self.head_dim, self.rope_base, x.dtype)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v, self.prefix(q)

    def project_kv(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """k (RoPE at ``positions``) and v, each (B, H, T, d), of x (B, T, D)."""
        D = x.shape[-1]
        k, v = (self.split_heads(t) for t in F.linear(x, self.qkv.weight[D:]).chunk(2, dim=-1))
        cos, sin = rope_angles(positions, self.head_dim, self.rope_base, x.dtype)
        return apply_rope(k, cos, sin), v

    def prefix(self, q_raw: Tensor) -> Optional[Prefix]:
        """Persistent keys/values (1, H, P, d) for the un-rotated queries q_raw, or None."""
        if self.persistent is None:
            return None
        _, k, v = self.qkv(self.persistent[None]).chunk(3, dim=-1)
        return Prefix(self.split_heads(k), self.split_heads(v), q_raw)

    def empty_cache(self, batch: int, like: Tensor) -> KVCache:
        """Start-of-stream cache: empty for full attention, W - 1 invalid slots for a window."""
        length = 0 if self.window is None else self.window - 1
        return KVCache.empty(batch, self.heads, length, self.head_dim, like)

    def merge(self, o: Tensor) -> Tensor:
        """(B, H, T, d) head outputs -> (B, T, D) through the output projection."""
        return self.out(o.transpose(1, 2).flatten(2))

    def forward(self, x: Tensor, positions: Tensor, valid: Tensor, cache: KVCache,
                padded: bool = True) -> tuple[Tensor, KVCache]:
        """x (B, T, D) at positions (T,), valid (B, T) -> (B, T, D) and the updated cache.
        ``padded=False`` promises that ``valid`` is all True."""
        q, k, v, prefix = self.project(x, positions)
        keys = cache.append(k, v, valid)
        drop = self.dropout if self.training else 0.0
        if self.window is None:
            o = full_attention(q, keys.k, keys.v, keys.valid, prefix, drop, padded)
            return self.merge(o), keys
        o = sliding_attention(q, keys.k, keys.v, keys.valid, self.window, prefix, drop)
        return self.merge(o), keys.last(self.window - 1)

"""The slow reference of MAC (docs/method.md section 3), written as literally as possible.

Everything is recomputed from the start of the stream for each segment and each query is
attended to on its own, so this is quadratic and only for tests on tiny inputs. The fast
``MACMixer`` must match it (tests/backbone/test_backbone_mac.py).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from .attention import apply_rope, rope_angles
from .mac import MACMixer


def _heads(x: Tensor, heads: int) -> Tensor:
    """(B, n, D) -> (B, H, n, d)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def _rope(x: Tensor, positions: Tensor, base: float) -> Tensor:
    cos, sin = rope_angles(positions, x.shape[-1], base, x.dtype)
    return apply_rope(x, cos, sin)


def mac_reference(mixer: MACMixer, xn: Tensor) -> Tensor:
    """MAC branch output ``o = norm(y) * s(norm(M_new(y)))`` for normed inputs xn (B, T, D) from stream start."""
    B, T, D = xn.shape
    memory, attn, C, span = mixer.memory, mixer.attn, mixer.segment_len, mixer.span
    start_state = memory.initial_state(B, xn.device)
    state, ys, outs = start_state, [], []
    for s in range(0, T, C):
        e = min(T, s + C)
        # h_i = M_prev(x_i): the read conv runs over the whole prefix, the weights are the segment's
        h = memory.retrieve(xn[:, :e], replace(start_state, fast=state.fast))[0][:, s:e]
        ends = list(range(s + span - 1, e, span))  # positions where a memory token completes
        pooled = torch.stack([h[:, p - s - span + 1: p - s + 1].mean(1) for p in ends], 1) if ends else h[:, :0]
        y = torch.cat([_attend_one(attn, xn, pooled, ends, s, t) for t in range(s, e)], 1)
        ys.append(mixer.memory_input(y, xn[:, s:e]))
        y_mem, state = memory(torch.cat(ys, 1))  # store every y so far, from the stream start
        outs.append(mixer.norm_attn(y) * mixer.gate(mixer.norm_memory(y_mem[:, s:e])))
    return torch.cat(outs, 1)


def _attend_one(attn, xn: Tensor, pooled: Tensor, ends: list, s: int, t: int) -> Tensor:
    """Attention output (B, 1, D) of query t over [persistent || memory tokens ended by t || x_s..x_t]."""
    H = attn.heads
    q, _, _ = (_heads(z, H) for z in attn.qkv(xn[:, t:t + 1]).chunk(3, -1))
    _, k, v = (_heads(z, H) for z in attn.qkv(xn[:, s:t + 1]).chunk(3, -1))
    positions = torch.arange(s, t + 1)
    keys, values = [_rope(k, positions, attn.rope_base)], [v]
    seen = [i for i, p in enumerate(ends) if p <= t]
    if seen:
        _, mk, mv = (_heads(z, H) for z in attn.qkv(pooled[:, seen]).chunk(3, -1))
        keys.insert(0, _rope(mk, torch.tensor([ends[i] for i in seen]), attn.rope_base))
        values.insert(0, mv)
    qr = _rope(q, torch.tensor([t]), attn.rope_base)
    scores = [qr @ kk.transpose(-1, -2) for kk in keys]
    if attn.persistent is not None:  # scored at relative distance 0: both sides un-rotated
        _, pk, pv = (_heads(z, H) for z in attn.qkv(attn.persistent[None]).chunk(3, -1))
        scores.insert(0, q @ pk.transpose(-1, -2))
        values.insert(0, pv.expand(xn.shape[0], -1, -1, -1))
    probs = torch.softmax(torch.cat(scores, -1) / q.shape[-1] ** 0.5, -1)
    o = probs @ torch.cat(values, 2)  # (B, H, 1, d)
    return attn.out(o.transpose(1, 2).flatten(2))

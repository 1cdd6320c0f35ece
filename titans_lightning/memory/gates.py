"""Decay and momentum coefficients of the chunked memory, in log space (docs/method.md section 1.1).

Shape legend: B = independent memories, C = chunks, b = chunk_size, o = a layer's output channels.
See `functional.py` for the formulas these coefficients enter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

_LOG_FLOOR = 1e-30  # log(0) -> log(1e-30): finite gradients, products still underflow to 0


@dataclass
class ChunkGates:
    """Decay/momentum coefficients of every chunk, computed for all chunks at once.

    Attributes (each (B, C, ...)):
        beta, f: (B, C, b) coefficients of the chunk-start weights and momentum in W_t.
        G: (B, C, b, b) lower-triangular mixing of the per-token gradients into W_t.
        momentum_end: (B, C) m_b; momentum_mix: (B, C, b) theta_s m_b / m_s, for S at chunk end.
    """

    beta: Tensor
    f: Tensor
    G: Tensor
    momentum_end: Tensor
    momentum_mix: Tensor


def segment_sum(x: Tensor) -> Tensor:
    """(..., b) -> (..., b, b): out[t, s] = sum_{j=s+1..t} x_j for s <= t, -inf above.

    Summing masked copies (not differencing a cumsum) keeps it exact in log space.
    """
    b = x.shape[-1]
    x = x[..., :, None].expand(*x.shape, b)  # [..., j, s] = x_j
    below = torch.ones(b, b, dtype=torch.bool, device=x.device).tril(-1)
    out = torch.cumsum(x.masked_fill(~below, 0), dim=-2)
    keep = torch.ones(b, b, dtype=torch.bool, device=x.device).tril()
    return out.masked_fill(~keep, float("-inf"))


def chunk_gates(lr: Tensor, momentum: Tensor, decay: Tensor, write: Tensor) -> ChunkGates:
    """Log-space cumulative products of every chunk (fp32 or fp64, never bf16).

    Args:
        lr, momentum, decay, write: (B, C, b) theta, eta, alpha and u on the chunk grid.
    """
    log_keep = torch.log(torch.clamp_min(1 - decay, _LOG_FLOOR))
    log_eta = torch.log(torch.clamp_min(momentum, _LOG_FLOOR))
    decay_ts = torch.exp(segment_sum(log_keep))  # (B,C,b,b): beta_t / beta_r
    momentum_rs = torch.exp(segment_sum(log_eta))  # (B,C,b,b): m_r / m_s
    beta = torch.exp(torch.cumsum(log_keep, dim=-1))
    m = torch.exp(torch.cumsum(log_eta, dim=-1))
    f = (decay_ts @ (write * m)[..., None]).squeeze(-1)
    G = (decay_ts * write[..., None, :]) @ momentum_rs * lr[..., None, :]
    return ChunkGates(beta, f, G, m[..., -1], momentum_rs[..., -1, :] * lr)


def channel_gates(lr: Tensor, momentum: Tensor, decays, write: Tensor):
    """Per-layer beta, f (N, b, o_l) and G (N, o_l, b, b) of one chunk; m_end (N,), m_mix (N, b).

    Args:
        lr, momentum, write: (N, b) theta (times 2), eta and u; decays: per layer (N, b, o_l) alpha.
    """
    log_eta = torch.log(torch.clamp_min(momentum, _LOG_FLOOR))
    momentum_rs = torch.exp(segment_sum(log_eta))  # (N, b, b): m_r / m_s
    m = torch.exp(torch.cumsum(log_eta, dim=-1))
    betas, fs, Gs = [], [], []
    for decay in decays:
        log_keep = torch.log(torch.clamp_min(1 - decay, _LOG_FLOOR)).transpose(1, 2)  # (N, o, b)
        decay_ts = torch.exp(segment_sum(log_keep))  # (N, o, b, b): beta_t / beta_r per channel
        betas.append(torch.exp(torch.cumsum(log_keep, dim=-1)).transpose(1, 2))
        fs.append((decay_ts @ (write * m)[:, None, :, None]).squeeze(-1).transpose(1, 2))
        Gs.append((decay_ts * write[:, None, None, :]) @ momentum_rs[:, None] * lr[:, None, None, :])
    return betas, fs, Gs, m[..., -1], momentum_rs[..., -1, :] * lr

"""Forecasting layers around the backbone, and a linear baseline. Pure torch.

Shape legend: B windows, L lookback, H horizon, C target channels, K covariate channels,
N = B * C univariate series (channel independence), P patches (tokens) per series, D width.

The Titans forecaster (Behrouz et al. 2025, section 4 of docs/method.md: the memory as the token mixer
of a time-series model) is ``RevIN -> patches -> backbone -> flatten head -> RevIN^-1``, applied
to every channel separately with shared weights, as PatchTST (Nie et al. 2023) does:

    x (B, L, C) --normalise--> (N, L) --patch--> (N, P, D) --backbone--> (N, P, D)
      --flatten, linear--> (N, H) --> (B, H, C) --denormalise--> forecast
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RevIN(nn.Module):
    """Reversible instance normalisation (Kim et al. 2022): each window's channels are
    standardised by their own lookback mean and std, and the forecast is mapped back.

    ``affine`` adds a learned per-channel scale and shift. Stateless: ``normalize`` returns the
    statistics that ``denormalize`` needs, so one module serves concurrent calls.
    """

    def __init__(self, channels: int, affine: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def normalize(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, L, C) -> (B, L, C) normalised, and (mean, std) each (B, 1, C)."""
        mean = x.mean(dim=1, keepdim=True).detach()
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
        x = (x - mean) / std
        if self.weight is not None:
            x = x * self.weight + self.bias
        return x, (mean, std)

    def denormalize(self, y: Tensor, stats: tuple[Tensor, Tensor]) -> Tensor:
        """y (B, H, C) in the normalised space -> original scale of the window."""
        mean, std = stats
        if self.weight is not None:
            y = (y - self.bias) / (self.weight + self.eps * self.eps)
        return y * std + mean


class Cycle(nn.Module):
    """Residual cycle forecasting (CycleNet, Lin et al. 2024): a learned periodic profile
    Q (W, C) of period W rows (24 for a daily cycle of hourly data) is subtracted from the inputs
    and added back to the forecast, so the model only learns what the cycle does not explain.

    The phase of a window is its first row modulo W: file rows must be evenly spaced.
    """

    def __init__(self, period: int, channels: int) -> None:
        super().__init__()
        if period < 1:
            raise ValueError(f"Cycle: expected a period >= 1, got {period}")
        self.profile = nn.Parameter(torch.zeros(period, channels))

    def forward(self, start: Tensor, length: int) -> Tensor:
        """start (B,) first file row of each span -> the profile over ``length`` rows (B, length, C)."""
        steps = torch.arange(length, device=start.device)
        return self.profile[(start.unsqueeze(1) + steps) % self.profile.shape[0]]


def num_patches(lookback: int, patch_len: int, stride: int) -> int:
    """Patches that cover ``lookback`` steps: ``ceil((L - patch_len) / stride) + 1``."""
    if not 1 <= patch_len <= lookback or stride < 1:
        raise ValueError(f"patching: expected 1 <= patch_len <= lookback ({lookback}) and "
                         f"stride >= 1, got patch_len {patch_len} and stride {stride}")
    return math.ceil((lookback - patch_len) / stride) + 1


class PatchEmbedding(nn.Module):
    """Cuts each univariate series into patches and embeds every patch as one token.

    ``patch_len = stride = 1`` is point embedding (one token per time step). If the patches
    do not tile the lookback exactly, the series is padded at the end by repeating its last value,
    so the last patch always holds the most recent step. Covariates (K channels) are cut the same
    way and concatenated to each patch before the linear map: every target channel sees them.
    A learned position embedding is added (P tokens).
    """

    def __init__(self, lookback: int, patch_len: int, stride: int, dim: int,
                 covariates: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        self.patch_len, self.stride = patch_len, stride
        self.num_patches = num_patches(lookback, patch_len, stride)
        self.pad = (self.num_patches - 1) * stride + patch_len - lookback
        self.project = nn.Linear(patch_len * (1 + covariates), dim)
        self.position = nn.Parameter(torch.randn(self.num_patches, dim) * 0.02)
        self.dropout = nn.Dropout(dropout)

    def patches(self, x: Tensor) -> Tensor:
        """(N, L, F) -> (N, P, patch_len * F)."""
        if self.pad:
            x = torch.cat([x, x[:, -1:].expand(-1, self.pad, -1)], dim=1)
        x = x.unfold(1, self.patch_len, self.stride)  # (N, P, F, patch_len)
        return x.transpose(2, 3).flatten(2)

    def forward(self, series: Tensor, covariates: Tensor) -> Tensor:
        """series (N, L), covariates (N, L, K) -> tokens (N, P, D)."""
        features = torch.cat([series.unsqueeze(-1), covariates], dim=-1)
        return self.dropout(self.project(self.patches(features)) + self.position)


class FlattenHead(nn.Module):
    """(N, P, D) hidden states -> (N, H): all tokens flattened, one linear map (PatchTST's head)."""

    def __init__(self, tokens: int, dim: int, horizon: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(tokens * dim, horizon)

    def forward(self, h: Tensor) -> Tensor:
        return self.linear(self.dropout(h.flatten(1)))


class ForecastingHead(nn.Module):
    """The forecaster's own layers: the input side (``encode``) and the output side (``decode``)
    of the backbone, channel independent.

    Args:
        channels: C target channels. covariates: K covariate channels.
        lookback, horizon: L and H. dim: backbone width D.
        patch_len, stride: patching (1 and 1 = point embedding).
        revin: per-window normalisation with a learned affine map.
        dropout: on the token embeddings and before the flatten head.
        cycle: period W of a learned cycle removed before and restored after (``Cycle``); 0 = none.
        linear_skip: add a linear map from the lookback to the horizon (per channel, shared) to
            the head's output, so the backbone learns a correction of a linear forecast.
    """

    def __init__(self, channels: int, covariates: int, lookback: int, horizon: int, dim: int,
                 patch_len: int = 16, stride: int = 8, revin: bool = True, dropout: float = 0.0,
                 cycle: int = 0, linear_skip: bool = False) -> None:
        super().__init__()
        self.channels, self.lookback, self.horizon = channels, lookback, horizon
        self.revin = RevIN(channels) if revin else None
        self.covariate_revin = RevIN(covariates, affine=False) if revin and covariates else None
        self.cycle = Cycle(cycle, channels) if cycle else None
        self.embed = PatchEmbedding(lookback, patch_len, stride, dim, covariates, dropout)
        self.out = FlattenHead(self.embed.num_patches, dim, horizon, dropout)
        self.skip = nn.Linear(lookback, horizon) if linear_skip else None

    def encode(self, x: Tensor, covariates: Tensor, start: Tensor) -> tuple[Tensor, dict]:
        """x (B, L, C), covariates (B, L, K), start (B,) first file row of each window ->
        tokens (N, P, D) and what ``decode`` needs (RevIN statistics, the inputs)."""
        stats = None
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        if self.cycle is not None:
            x = x - self.cycle(start, self.lookback)
        if self.covariate_revin is not None:
            covariates, _ = self.covariate_revin.normalize(covariates)
        B, L, C = x.shape
        series = x.transpose(1, 2).reshape(B * C, L)
        shared = covariates.unsqueeze(1).expand(-1, C, -1, -1).reshape(B * C, L, -1)
        return self.embed(series, shared), {"stats": stats, "series": series, "start": start}

    def decode(self, h: Tensor, context: dict) -> Tensor:
        """h (N, P, D) -> forecast (B, H, C) in the input's scale."""
        y = self.out(h)
        if self.skip is not None:
            y = y + self.skip(context["series"])
        y = y.view(-1, self.channels, self.horizon).transpose(1, 2)
        if self.cycle is not None:
            y = y + self.cycle(context["start"] + self.lookback, self.horizon)
        return self.revin.denormalize(y, context["stats"]) if self.revin is not None else y


class MovingAverage(nn.Module):
    """Centred moving average over time with edge replication: (B, L, C) -> (B, L, C)."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"MovingAverage: expected an odd kernel >= 1, got {kernel}")
        self.kernel = kernel

    def forward(self, x: Tensor) -> Tensor:
        half = (self.kernel - 1) // 2
        padded = torch.cat([x[:, :1].expand(-1, half, -1), x, x[:, -1:].expand(-1, half, -1)], dim=1)
        return F.avg_pool1d(padded.transpose(1, 2), self.kernel, stride=1).transpose(1, 2)


class DLinear(nn.Module):
    """DLinear (Zeng et al. 2023): the lookback is split into a moving-average trend and the
    remainder, each mapped to the horizon by a linear layer over time, and the two are summed.

    Weights are shared by all channels (``individual=False``, the paper's default) or one pair
    per channel. Covariates, if any, add one linear map from their whole lookback (L K) to the
    horizon, shared by every target channel. ``revin`` (off in the original) normalises each
    window first.

    Parameters: 2 (L H + H) shared, or C times that; + (L K H + H) with covariates.
    """

    def __init__(self, channels: int, covariates: int, lookback: int, horizon: int,
                 kernel: int = 25, individual: bool = False, revin: bool = False) -> None:
        super().__init__()
        self.decompose = MovingAverage(kernel)
        self.individual = individual
        count = channels if individual else 1
        self.seasonal = nn.Parameter(torch.full((count, horizon, lookback), 1.0 / lookback))
        self.trend = nn.Parameter(torch.full((count, horizon, lookback), 1.0 / lookback))
        self.bias = nn.Parameter(torch.zeros(count, horizon, 1))
        self.covariate_map = nn.Linear(lookback * covariates, horizon) if covariates else None
        self.revin = RevIN(channels) if revin else None

    def forward(self, x: Tensor, covariates: Tensor) -> Tensor:
        """x (B, L, C), covariates (B, L, K) -> forecast (B, H, C)."""
        stats = None
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        trend = self.decompose(x)
        seasonal, trend = (x - trend).transpose(1, 2), trend.transpose(1, 2)  # (B, C, L)
        C = x.shape[-1]
        # Shared weights are expanded to every channel: one einsum serves both layouts.
        w_seasonal, w_trend, bias = (t.expand(C, -1, -1) for t in (self.seasonal, self.trend, self.bias))
        y = torch.einsum("chl,bcl->bch", w_seasonal, seasonal) + torch.einsum("chl,bcl->bch", w_trend, trend)
        y = (y + bias.squeeze(-1)).transpose(1, 2)  # (B, H, C)
        if self.covariate_map is not None:
            y = y + self.covariate_map(covariates.flatten(1)).unsqueeze(-1)
        return self.revin.denormalize(y, stats) if self.revin is not None else y

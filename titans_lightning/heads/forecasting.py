"""Forecasting layers around the backbone, and a linear baseline. Pure torch.

Shape legend: B windows, L lookback, H horizon, C target channels, K covariate channels,
N = B * C univariate series (channel independence), P patches (tokens) per series, D width,
Q quantile levels (probabilistic forecasts), F known-future features.

The Titans forecaster (Behrouz et al. 2025, section 4 of docs/method.md: the memory as the token mixer
of a time-series model) is ``RevIN -> patches -> backbone -> flatten head -> RevIN^-1``, applied
to every channel separately with shared weights, as PatchTST (Nie et al. 2023) does:

    x (B, L, C) --normalise--> (N, L) --patch--> (N, P, D) --backbone--> (N, P, D)
      --flatten, linear--> (N, H) --> (B, H, C) --denormalise--> forecast

With Q quantile levels the flatten head maps to H Q outputs and every forecast is (B, H, C, Q);
without, it is the point forecast (B, H, C). Known-future features (B, H, F) enter both models
the same way: one linear map ``FutureInputs`` per horizon step, F -> C (Q), added to the output
in the normalised space (before RevIN is undone), so step h of the forecast moves with the
features of step h.
"""

from __future__ import annotations

import math
from typing import Optional

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

    The phase of a window is its first row (on its series' time axis: the file row of a single
    series) modulo W: rows must be evenly spaced.
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


class FutureInputs(nn.Module):
    """Known-future features to an additive term of the forecast, step by step: one linear map
    F -> C * max(Q, 1) applied at every horizon step (shared over steps). Parameters: F C Q + C Q."""

    def __init__(self, features: int, channels: int, quantiles: int = 0) -> None:
        super().__init__()
        self.channels, self.outputs = channels, max(quantiles, 1)
        self.linear = nn.Linear(features, channels * self.outputs)

    def forward(self, future: Optional[Tensor]) -> Tensor:
        """future (B, H, F) -> (B, H, C, max(Q, 1))."""
        if future is None:
            raise ValueError(f"the model was built for {self.linear.in_features} known-future features, "
                             f"but the batch has no 'future' (B, H, F)")
        return self.linear(future).unflatten(-1, (self.channels, self.outputs))


def denormalize(revin: RevIN, y: Tensor, stats: tuple[Tensor, Tensor]) -> Tensor:
    """``revin.denormalize`` of every output of y (B, H, C, Q): statistics (B, 1, C) per channel."""
    B, H, C, Q = y.shape
    flat = y.permute(0, 3, 1, 2).reshape(B, Q * H, C)
    return revin.denormalize(flat, stats).view(B, Q, H, C).permute(0, 2, 3, 1)


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
        quantiles: Q outputs per step (one per quantile level); 0 = the point forecast.
        future: F known-future features over the horizon (``FutureInputs``); 0 = none. Their
            lookback part is among the K covariates.
    """

    def __init__(self, channels: int, covariates: int, lookback: int, horizon: int, dim: int,
                 patch_len: int = 16, stride: int = 8, revin: bool = True, dropout: float = 0.0,
                 cycle: int = 0, linear_skip: bool = False, quantiles: int = 0, future: int = 0) -> None:
        super().__init__()
        self.channels, self.lookback, self.horizon, self.quantiles = channels, lookback, horizon, quantiles
        self.revin = RevIN(channels) if revin else None
        self.covariate_revin = RevIN(covariates, affine=False) if revin and covariates else None
        self.cycle = Cycle(cycle, channels) if cycle else None
        self.embed = PatchEmbedding(lookback, patch_len, stride, dim, covariates, dropout)
        self.out = FlattenHead(self.embed.num_patches, dim, horizon * max(quantiles, 1), dropout)
        self.skip = nn.Linear(lookback, horizon) if linear_skip else None
        self.future = FutureInputs(future, channels, quantiles) if future else None

    def encode(self, x: Tensor, covariates: Tensor, start: Tensor,
               future: Optional[Tensor] = None) -> tuple[Tensor, dict]:
        """x (B, L, C), covariates (B, L, K), start (B,) first row of each window on its series'
        axis, future (B, H, F) or None -> tokens (N, P, D) and what ``decode`` needs (RevIN
        statistics, the inputs, the future features)."""
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
        context = {"stats": stats, "series": series, "start": start, "future": future}
        return self.embed(series, shared), context

    def decode(self, h: Tensor, context: dict) -> Tensor:
        """h (N, P, D) -> forecast (B, H, C), or (B, H, C, Q) with quantiles, in the input's scale."""
        y = self.out(h).view(h.shape[0], self.horizon, -1)  # (N, H, max(Q, 1))
        if self.skip is not None:
            y = y + self.skip(context["series"]).unsqueeze(-1)
        y = y.view(-1, self.channels, *y.shape[1:]).transpose(1, 2)  # (B, H, C, max(Q, 1))
        if self.future is not None:
            y = y + self.future(context["future"])
        if self.cycle is not None:
            y = y + self.cycle(context["start"] + self.lookback, self.horizon).unsqueeze(-1)
        if self.revin is not None:
            y = denormalize(self.revin, y, context["stats"])
        return y if self.quantiles else y.squeeze(-1)


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
    window first. With Q quantiles every map has Q outputs per step (all start as the average of
    the lookback); known-future features (F) add ``FutureInputs`` per step.

    Parameters (Q' = max(Q, 1)): 2 (L H Q' + H Q') shared, or C times that; + (L K H Q' + H Q')
    with covariates; + (F C Q' + C Q') with future features.
    """

    def __init__(self, channels: int, covariates: int, lookback: int, horizon: int,
                 kernel: int = 25, individual: bool = False, revin: bool = False,
                 quantiles: int = 0, future: int = 0) -> None:
        super().__init__()
        self.decompose = MovingAverage(kernel)
        self.individual, self.quantiles = individual, quantiles
        count, outputs = (channels if individual else 1), horizon * max(quantiles, 1)
        self.seasonal = nn.Parameter(torch.full((count, outputs, lookback), 1.0 / lookback))
        self.trend = nn.Parameter(torch.full((count, outputs, lookback), 1.0 / lookback))
        self.bias = nn.Parameter(torch.zeros(count, outputs, 1))
        self.covariate_map = nn.Linear(lookback * covariates, outputs) if covariates else None
        self.revin = RevIN(channels) if revin else None
        self.future = FutureInputs(future, channels, quantiles) if future else None

    def forward(self, x: Tensor, covariates: Tensor, future: Optional[Tensor] = None) -> Tensor:
        """x (B, L, C), covariates (B, L, K), future (B, H, F) or None -> forecast (B, H, C), or
        (B, H, C, Q) with quantiles."""
        stats = None
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        trend = self.decompose(x)
        seasonal, trend = (x - trend).transpose(1, 2), trend.transpose(1, 2)  # (B, C, L)
        C = x.shape[-1]
        # Shared weights are expanded to every channel: one einsum serves both layouts.
        w_seasonal, w_trend, bias = (t.expand(C, -1, -1) for t in (self.seasonal, self.trend, self.bias))
        y = torch.einsum("chl,bcl->bch", w_seasonal, seasonal) + torch.einsum("chl,bcl->bch", w_trend, trend)
        B, outputs = x.shape[0], max(self.quantiles, 1)
        y = (y + bias.squeeze(-1)).view(B, C, -1, outputs).transpose(1, 2)  # (B, H, C, max(Q, 1))
        if self.covariate_map is not None:
            y = y + self.covariate_map(covariates.flatten(1)).view(B, -1, 1, outputs)
        if self.future is not None:
            y = y + self.future(future)
        if self.revin is not None:
            y = denormalize(self.revin, y, stats)
        return y if self.quantiles else y.squeeze(-1)

"""Forecasting baselines without parameters: the seasonal-naive forecast, on the forecasting task
harness, so that its metrics are computed by the same code as the learned models'.

The seasonal-naive forecast of step h (1..H) from a lookback ending at time t repeats the last
observed value at the same phase of the season m (Hyndman and Athanasopoulos, *Forecasting:
Principles and Practice*, section 5.2)::

    yhat[t + h] = y[t + h - m k],   k = ceil(h / m)

i.e. lookback position ``L - m + (h - 1) mod m`` (0-based). Seasonal naive is affine-equivariant,
so forecasting the standardised windows and mapping back equals forecasting in the data's units.

Quantiles (levels tau, 0.5 among them) come from the window's own seasonal-naive residuals
``r[j] = x[j] - x[j - m]``, j = m..L-1: ``q_tau[t + h] = yhat[t + h] + sqrt(k) (Q_tau(r) - Q_0.5(r))``,
with Q the empirical quantile (linear interpolation). Centred on the residuals' median, so that
the median is exactly the seasonal-naive point forecast; widened by ``sqrt(k)`` for steps more
than one season ahead, as the seasonal-naive forecast variance grows (fpp3 section 5.5, Table 5.2).

Shape legend: B windows, L lookback, H horizon, C channels, Q quantile levels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor

from titans_lightning.tasks.forecasting import _Forecaster


def seasonal_naive(x: Tensor, horizon: int, season: int) -> Tensor:
    """x (B, L, C) -> (B, H, C): step h repeats ``x[:, L - m + (h - 1) mod m]`` (L >= m)."""
    lookback = x.shape[1]
    if lookback < season:
        raise ValueError(f"seasonal_naive: the lookback ({lookback} rows) must cover one season ({season} rows)")
    index = lookback - season + torch.arange(horizon, device=x.device) % season
    return x[:, index]


def seasonal_naive_quantiles(x: Tensor, horizon: int, season: int, levels: Sequence[float]) -> Tensor:
    """x (B, L, C) -> (B, H, C, Q): the seasonal-naive forecast plus ``sqrt(k)`` times the centred
    empirical quantiles of the lookback's seasonal-naive residuals (module docstring). Without a
    residual (L = m) every level is the point forecast."""
    point = seasonal_naive(x, horizon, season)
    if x.shape[1] == season:
        return point.unsqueeze(-1).expand(*point.shape, len(levels)).contiguous()
    residuals = (x[:, season:] - x[:, :-season]).float()  # (B, L - m, C)
    tau = torch.tensor([*levels, 0.5], dtype=torch.float32, device=x.device)
    spread = torch.quantile(residuals, tau, dim=1)  # (Q + 1, B, C)
    offsets = (spread[:-1] - spread[-1]).permute(1, 2, 0).unsqueeze(1)  # (B, 1, C, Q)
    k = torch.div(torch.arange(horizon, device=x.device), season, rounding_mode="floor") + 1
    widen = k.to(offsets.dtype).sqrt().view(1, horizon, 1, 1)
    return point.unsqueeze(-1) + (widen * offsets).to(point.dtype)


class SeasonalNaiveTask(_Forecaster):
    """The seasonal-naive baseline: every step repeats the lookback's last value at the same
    phase of the season (``season=1``: the naive forecast, the last value). No parameters: it
    stands on the task harness, takes no optimizer steps, and is evaluated, tested and predicted
    like the learned forecasters (same metrics, same MASE scale). Run it for one epoch
    (``trainer.max_epochs: 1``; ``limit_train_batches: 1``: there is nothing to learn).

    Args:
        season: the season m in rows (12 for monthly data with a yearly cycle); also the season
            of the MASE scale, so that the baseline's in-sample counterpart is the denominator.
        quantiles: levels to forecast (0.5 required): the point forecast plus the centred
            empirical quantiles of the lookback's seasonal-naive residuals, widened by
            ``sqrt(ceil(h / m))`` (module docstring); None = the point forecast.
        data_sizes: linked from the DataModule (``lookback`` must be at least ``season``).
    """

    def __init__(self, season: int = 12, quantiles: Optional[list[float]] = None,
                 data_sizes: Optional[dict[str, int]] = None) -> None:
        super().__init__(lr_scheduler=None, data_sizes=data_sizes)
        self.set_forecast_options(quantiles, season)

    def configure_models(self) -> None:
        """No layers; checks that the lookback covers a season."""
        lookback = self.data_sizes.get("lookback")
        if lookback is not None and lookback < self.season:
            raise ValueError(f"SeasonalNaiveTask: lookback {lookback} is shorter than the season {self.season}; "
                             f"give --data.lookback >= {self.season}")

    def configure_optimizers(self) -> None:
        return None

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Nothing to learn."""

    def forecast(self, batch: dict[str, Tensor]) -> Tensor:
        horizon = self.data_sizes.get("horizon") or batch["y"].shape[1]
        if self.quantiles is None:
            return seasonal_naive(batch["x"], horizon, self.season)
        return seasonal_naive_quantiles(batch["x"], horizon, self.season, self.quantiles)


__all__ = ["SeasonalNaiveTask", "seasonal_naive", "seasonal_naive_quantiles"]

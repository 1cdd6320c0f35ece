"""Forecasting losses and metrics beyond MSE and MAE: the scaled and relative errors of point
forecasts, and the scores of quantile forecasts.

Point forecasts (with quantiles, the median is the point forecast), every element (window x
step x channel) counted once:

- ``mase``: mean of ``|y - yhat| / s``, where s is the in-sample MAE of the seasonal-naive
  forecast ``y[t - m]`` over the training rows of the element's series and channel (Hyndman and
  Koehler 2006), m the season (the task's ``season``, else its ``cycle``, else 1: the naive
  forecast). Computed on the standardised scale, where it equals the original-unit ratio (each
  series and channel is standardised by one affine map). The DataModule gives s
  (``naive_scale``); without one s = 1.
- ``smape``: ``mean 2 |y - yhat| / (|y| + |yhat|)`` in the data's own units, a fraction in
  [0, 2] (x 100 for the percentage of the M competitions; torchmetrics' definition).

Quantile forecasts at levels tau_1 < ... < tau_Q (0.5 among them):

- ``quantile_loss``: the pinball loss ``max(tau (y - q), (tau - 1) (y - q))`` averaged over
  elements and levels, standardised scale; also the training loss.
- ``crps``: ``2 x quantile_loss``: the continuous ranked probability score approximated by the
  pinball losses at the levels (CRPS = 2 x the integral of the pinball loss over tau in (0, 1)).
- ``coverage``: the share of targets inside ``[q_1, q_Q]`` (the lowest and highest levels); a
  calibrated [0.1, 0.9] interval covers 0.8.

Shape legend: B windows, H horizon, C channels, Q quantile levels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from torch import Tensor
from torchmetrics import (
    MeanAbsoluteError,
    MeanMetric,
    MeanSquaredError,
    Metric,
    SymmetricMeanAbsolutePercentageError,
)


def check_quantiles(levels: Optional[Sequence[float]]) -> Optional[tuple[float, ...]]:
    """The quantile levels sorted, or None; they must be distinct, inside (0, 1), and include 0.5
    (the point forecast)."""
    if levels is None:
        return None
    values = sorted(float(q) for q in levels)
    if not values or any(not 0 < q < 1 for q in values) or len(set(values)) < len(values) or 0.5 not in values:
        raise ValueError(f"quantiles {list(levels)}: expected distinct levels inside (0, 1) that include "
                         f"0.5 (the median is the point forecast), e.g. [0.1, 0.5, 0.9]")
    return tuple(values)


def pinball_loss(forecast: Tensor, target: Tensor, levels: Sequence[float]) -> Tensor:
    """forecast (..., Q) at ``levels``, target (...) -> the pinball loss of every level (..., Q):
    ``max(tau u, (tau - 1) u)`` with ``u = target - forecast``."""
    tau = forecast.new_tensor(levels)
    error = target.unsqueeze(-1) - forecast
    return (tau * error).maximum((tau - 1) * error)


def interval_coverage(forecast: Tensor, target: Tensor) -> Tensor:
    """forecast (..., Q) sorted by level, target (...) -> 1.0 where the target lies inside
    [lowest, highest] quantile, else 0.0 (...)."""
    return ((target >= forecast[..., 0]) & (target <= forecast[..., -1])).float()


def build_forecast_metrics(quantiles: bool) -> dict[str, Metric]:
    """The metrics of a forecaster by name (logged as ``val/<name>`` and ``test/<name>``)."""
    metrics = {"mse": MeanSquaredError(), "mae": MeanAbsoluteError(),
               "mse_original": MeanSquaredError(), "mae_original": MeanAbsoluteError(),
               "mase": MeanMetric(), "smape": SymmetricMeanAbsolutePercentageError()}
    if quantiles:
        metrics.update(quantile_loss=MeanMetric(), crps=MeanMetric(), coverage=MeanMetric())
    return metrics


def metric_inputs(point: Tensor, target: Tensor, original: tuple[Tensor, Tensor], scale: Tensor,
                  quantiles: Optional[Tensor] = None,
                  levels: Optional[Sequence[float]] = None) -> dict[str, tuple[Tensor, ...]]:
    """What each metric of ``build_forecast_metrics`` is updated with, flattened.

    point, target (B, H, C) standardised; original: both in the data's units; scale (B or 1, 1, C)
    the MASE denominator of each window's series; quantiles (B, H, C, Q) at ``levels`` or None.
    """
    flat = point.reshape(-1), target.reshape(-1)
    in_units = original[0].reshape(-1), original[1].reshape(-1)
    inputs = {"mse": flat, "mae": flat, "mse_original": in_units, "mae_original": in_units,
              "smape": in_units, "mase": (((point - target).abs() / scale).reshape(-1),)}
    if quantiles is not None:
        pinball = pinball_loss(quantiles, target, levels)
        inputs.update(quantile_loss=(pinball.reshape(-1),), crps=(2 * pinball.mean(-1).reshape(-1),),
                      coverage=(interval_coverage(quantiles, target).reshape(-1),))
    return inputs

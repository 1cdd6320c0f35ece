"""Time-series data: reading and checking a table (``io``) and the forecasting windows of
``TimeSeriesDataModule`` (``datamodules.timeseries.TimeSeriesDataModule`` in recipes)."""

from .datamodule import TimeSeriesDataModule

__all__ = ["TimeSeriesDataModule"]

"""The time axis continued past the end of the data (``--data.predict_split future``, calendar
features of the horizon): by calendar months for monthly, quarterly and yearly data, by the
most common step otherwise."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from datamodules.timeseries.io import calendar_stride, continued_times

D, T = dt.date, dt.datetime


@pytest.mark.parametrize("times, expected", [
    ([D(2019, 7, 1), D(2019, 8, 1), D(2019, 9, 1)], [D(2019, 10, 1), D(2019, 11, 1), D(2019, 12, 1), D(2020, 1, 1)]),
    ([D(2019, 1, 31), D(2019, 2, 28), D(2019, 3, 31)],
     [D(2019, 4, 30), D(2019, 5, 31), D(2019, 6, 30), D(2019, 7, 31)]),
    ([D(2019, 1, 15), D(2019, 2, 15)], [D(2019, 3, 15), D(2019, 4, 15), D(2019, 5, 15), D(2019, 6, 15)]),
    ([T(2018, 10, 1), T(2019, 1, 1), T(2019, 4, 1)], [T(2019, 7, 1), T(2019, 10, 1), T(2020, 1, 1), T(2020, 4, 1)]),
    ([D(2016, 2, 29), D(2017, 2, 28), D(2018, 2, 28)], [D(2019, 2, 28), D(2020, 2, 29), D(2021, 2, 28),
                                                        D(2022, 2, 28)]),
], ids=["month-starts", "month-ends", "mid-month", "quarters", "year-ends-of-february"])
def test_calendar_months_continue_on_the_calendar(times, expected):
    assert continued_times(pl.Series("ds", times), 4) == expected


@pytest.mark.parametrize("times, expected", [
    ([T(2019, 1, 1, 0), T(2019, 1, 1, 1), T(2019, 1, 1, 2)], [T(2019, 1, 1, 3), T(2019, 1, 1, 4)]),
    ([D(2019, 1, 30), D(2019, 1, 31), D(2019, 2, 1)], [D(2019, 2, 2), D(2019, 2, 3)]),
    ([D(2019, 1, 1), D(2019, 1, 8), D(2019, 1, 15)], [D(2019, 1, 22), D(2019, 1, 29)]),
    ([10, 20, 30], [40, 50]),
], ids=["hours", "days-across-a-month", "weeks", "integers"])
def test_other_axes_continue_by_their_step(times, expected):
    column = pl.Series("ds", times)
    assert calendar_stride(column) is None
    assert continued_times(column, 2) == expected


def test_a_month_start_series_with_times_of_day_that_differ_is_not_calendar_monthly():
    column = pl.Series("ds", [T(2019, 1, 1, 0), T(2019, 2, 1, 6), T(2019, 3, 1, 0)])
    assert calendar_stride(column) is None

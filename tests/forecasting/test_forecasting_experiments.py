"""The forecasting experiments' own logic (``experiments/forecasting/``): the validation sweep trains
as its recipe says and selects on validation only; the ETTh1 table's overrides reach both commands."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from experiments.forecasting import etth1, sweep
from titans_lightning.runs import cli_overrides


def hourly_table(path: Path, rows: int = 2000) -> Path:
    """An hourly table with a daily cycle, a drift and noise: a non-ETT name, so the ratio split."""
    t = np.arange(rows)
    noise = np.random.default_rng(0).normal(size=(2, rows))
    pl.DataFrame({
        "date": [datetime(2021, 1, 1) + timedelta(hours=int(k)) for k in t],
        "load": 50 + 10 * np.sin(2 * np.pi * t / 24) + 0.01 * t + noise[0],
        "price": 3 + np.cos(2 * np.pi * t / 24) + 0.3 * noise[1],
    }).write_csv(path)
    return path


def test_shared_overrides_reach_fit_and_test_and_fit_only_ones_the_fit(tmp_path: Path, monkeypatch) -> None:
    """``titans test`` rebuilds model and data from the recipe: a lookback given to the fit only
    would test the checkpoint on other windows. The two commands are recorded, not run."""
    calls = []

    def fake_titans(args: list[str], log: Path) -> None:
        calls.append(args)
        run = tmp_path / "dlinear_96" / "csv" / f"version_{len(calls) - 1}"
        (run / "checkpoints").mkdir(parents=True)
        if args[0] == "fit":
            (run / "checkpoints" / "best-step=5.ckpt").touch()
            (run / "metrics.csv").write_text("step,val/mse\n5,0.7\n")
        else:
            (run / "metrics.csv").write_text("test/mse,test/mae,test/mse_original,test/mae_original\n"
                                             "0.4,0.41,3.0,1.2\n")

    monkeypatch.setattr(etth1, "titans", fake_titans)
    shared = cli_overrides(["data.init_args.lookback=336"])
    result = etth1.run_one("dlinear", 96, tmp_path, ["--seed_everything", "3"], shared)
    fit, test = calls
    assert fit[0] == "fit" and test[0] == "test"
    for args in (fit, test):
        assert args[args.index("--data.init_args.lookback") + 1] == "336"
    assert "--seed_everything" in fit and "--seed_everything" not in test
    assert test[test.index("--ckpt_path") + 1].endswith("best-step=5.ckpt")
    assert result["mse"] == 0.4 and result["val_mse"] == 0.7


def test_sweep_follows_the_dlinear_recipe_schedule_at_any_lookback() -> None:
    """The recipe halves the rate every epoch (StepLR, stepped per optimizer step): at another
    lookback the step size is that run's epoch, and the rate is halved exactly once per epoch."""
    recipe = sweep.load_recipe("dlinear", 96)
    task = sweep.build_task(recipe, revin=True, data_sizes={"channels": 2, "covariates": 0,
                                                                       "lookback": 336, "horizon": 96})
    assert task.head.revin is not None
    optimizer, schedule = sweep.build_optimization(recipe, task, steps_per_epoch=7, epochs=10)
    rates = []
    for _ in range(15):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx(0.005) and rates[6] == pytest.approx(0.005)
    assert rates[7] == pytest.approx(0.0025) and rates[14] == pytest.approx(0.00125)


def test_sweep_cosine_spans_the_whole_run() -> None:
    recipe = sweep.load_recipe("titans", 96)
    task = sweep.build_task(recipe, revin=False, data_sizes={"channels": 2, "covariates": 0,
                                                                        "lookback": 96, "horizon": 96})
    assert task.head.revin is None and task.head.cycle is not None  # the recipe's cycle is kept
    optimizer, schedule = sweep.build_optimization(recipe, task, steps_per_epoch=5, epochs=3)
    assert schedule.total_steps == 15


def test_summary_selects_on_validation_and_reports_the_disagreement() -> None:
    row = lambda lookback, revin, horizon, val, test: dict(lookback=lookback, revin=revin, horizon=horizon,  # noqa: E731
                                                           val_mse=val, test_mse=test)
    rows = [row(96, False, 96, 0.60, 0.40), row(96, True, 96, 0.70, 0.38),
            row(96, False, 720, 1.20, 0.53), row(96, True, 720, 1.50, 0.48)]
    text = sweep.summary(rows, [96, 720])
    assert "| 96 | off | 0.600 / 0.400 | 1.200 / 0.530 | 0.900 / 0.465 |" in text
    assert ("validation selects: H=96 L=96 RevIN off (test 0.400), H=720 L=96 RevIN off (test 0.530); "
            "average test MSE 0.465") in text
    assert "H=96 L=96 RevIN on (test 0.380), H=720 L=96 RevIN on (test 0.480); average test MSE 0.430" in text


def test_sweep_trains_and_keeps_the_best_validation_state(tmp_path: Path) -> None:
    """DLinear on a small table of its own: the run improves on validation and its kept state's
    scores are those of a real forecast (far below the variance of the standardised series)."""
    data = hourly_table(tmp_path / "plant.csv")
    result = sweep.train_one("dlinear", lookback=96, horizon=96, revin=False, seed=0, data=data)
    assert result["step"] >= 1
    assert 0 < result["val_mse"] < 0.5 and 0 < result["test_mse"] < 0.5
    again = sweep.train_one("dlinear", lookback=96, horizon=96, revin=False, seed=0, data=data)
    assert again["val_mse"] == pytest.approx(result["val_mse"])  # seeded: the same run twice

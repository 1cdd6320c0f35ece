"""The cross-dataset choice of forecaster defaults (``experiments/forecasting/defaults.py``),
without training: rows are made up. The rule: relative validation score per cell, mean per
dataset, mean over datasets (each dataset weighs the same), lowest wins; nothing is chosen before
every cell has run; finished rows are skipped on the next call; test scores never choose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.forecasting import defaults

ETTH1 = (96, 192, 336, 720)


def row(model: str, dataset: str, horizon: int, setting: str, val: float, test: float = 0.5, seed: int = 0) -> dict:
    metric = defaults.DATASETS[dataset][1]
    return {"model": model, "dataset": dataset, "horizon": horizon, "setting": setting, "seed": seed,
            "val": {metric: val, "step": 3}, "test": {k: test for k in ("mse", "mae", "mase", "quantile_loss",
                                                                         "coverage")}}


def grid(on_etth1: float, off_etth1: float, on_panel: float, off_panel: float, model: str = "titans") -> list[dict]:
    """Every cell of both settings: ETTh1's four horizons at one value per setting, the panel at another."""
    rows = [row(model, "etth1", h, s, v) for h in ETTH1 for s, v in (("revin_on", on_etth1), ("revin_off", off_etth1))]
    return rows + [row(model, "us_employment", 12, s, v) for s, v in (("revin_on", on_panel), ("revin_off", off_panel))]


def test_each_dataset_weighs_the_same_whatever_its_number_of_horizons():
    # ETTh1 (4 cells) prefers off by 10 %; the panel (1 cell) prefers on by 30 %: on wins, because
    # the datasets are averaged, not the cells (by cells, off would win: (4 x 1.1 + 1) / 5 = 1.08
    # for on against (4 + 1.3) / 5 = 1.06 for off).
    choice = defaults.selection(grid(1.1, 1.0, 1.0, 1.3), "titans", list(defaults.SETTINGS), seed=0)
    assert choice["chosen"] == "revin_on"
    assert choice["per_dataset"]["revin_on"] == pytest.approx({"etth1": 1.1, "us_employment": 1.0})
    assert choice["per_dataset"]["revin_off"] == pytest.approx({"etth1": 1.0, "us_employment": 1.3})
    assert choice["overall"] == pytest.approx({"revin_on": 1.05, "revin_off": 1.15})
    assert choice["relative"]["revin_off"]["us_employment-h12"] == pytest.approx(1.3)


def test_relative_scores_are_per_cell_so_scales_do_not_matter():
    # the panel's quantile loss is ~100x smaller than ETTh1's MSE; off is 20 % worse on the panel
    # and 5 % better on ETTh1: on wins by (1.05 + 1) / 2 < (1 + 1.2) / 2
    choice = defaults.selection(grid(1.05, 1.0, 0.010, 0.012), "titans", list(defaults.SETTINGS), seed=0)
    assert choice["chosen"] == "revin_on"
    assert choice["overall"]["revin_off"] == pytest.approx(1.1)


def test_nothing_is_chosen_before_every_cell_of_every_setting_has_run():
    rows = grid(1.0, 1.1, 1.0, 1.1)
    assert defaults.selection(rows[:-1], "titans", list(defaults.SETTINGS), seed=0) is None
    assert defaults.selection(rows, "dlinear", list(defaults.SETTINGS), seed=0) is None  # another model's rows
    assert defaults.selection(rows, "titans", list(defaults.SETTINGS), seed=1) is None  # another seed's


def test_test_scores_never_choose():
    rows = grid(1.0, 1.1, 1.0, 1.1)
    for r in rows:  # the setting validation rejects is far better on test
        r["test"] = {k: (0.1 if r["setting"] == "revin_off" else 0.9) for k in r["test"]}
    assert defaults.selection(rows, "titans", list(defaults.SETTINGS), seed=0)["chosen"] == "revin_on"


def test_jobs_cover_every_cell_and_setting_cheapest_first():
    jobs = defaults.jobs(["titans", "dlinear"], ["revin_on", "revin_off"], seed=0)
    assert len(jobs) == 2 * 5 * 2
    assert jobs[0] == ("dlinear", "us_employment", 12, "revin_on", 0)
    assert jobs[-1] == ("titans", "etth1", 720, "revin_off", 0)
    assert [j[0] for j in jobs] == ["dlinear"] * 10 + ["titans"] * 10


def test_recipes_and_panel_learning_rate_exist_for_every_job():
    for model, dataset, horizon, _, _ in defaults.jobs(list(defaults.MODELS), list(defaults.SETTINGS), seed=0):
        assert defaults.recipe(model, dataset, horizon).exists()
    # the panel's learning rate comes from the committed panel benchmark rows (its validation choice)
    for model in defaults.MODELS:
        flags = defaults.dataset_overrides(model, "us_employment")
        assert flags[0] == "--model.init_args.optimizer.init_args.lr" and float(flags[1]) > 0
    assert defaults.dataset_overrides("titans", "etth1") == []


def test_a_second_call_runs_only_the_missing_rows_and_writes_the_tables(tmp_path: Path, monkeypatch):
    calls = []
    values = {r["dataset"] + str(r["horizon"]) + r["setting"]: r["val"] for r in grid(1.1, 1.0, 1.0, 1.3)}

    def fake_run(job, work, results):
        calls.append(job)
        model, dataset, horizon, setting, seed = job
        made = row(model, dataset, horizon, setting, values[dataset + str(horizon) + setting][
            defaults.DATASETS[dataset][1]])
        defaults.panel.write_atomic(defaults.row_file(results, job), json.dumps(made))
        return made

    monkeypatch.setattr(defaults, "run_one", fake_run)
    results = tmp_path / "results"
    defaults.main(["--models", "titans", "--results", str(results), "--work", str(tmp_path / "work")])
    assert len(calls) == 10
    (results / "runs" / "titans-etth1-h720-revin_off-seed0.json").unlink()
    defaults.main(["--models", "titans", "--results", str(results), "--work", str(tmp_path / "work")])
    assert calls[10:] == [("titans", "etth1", 720, "revin_off", 0)]
    markdown = (results / "results.md").read_text()
    assert "| Titans (LMM) | **revin_on** |" in markdown and "revin_on (chosen)" in markdown
    assert json.loads((results / "results.json").read_text())["selection"][0]["chosen"] == "revin_on"


def test_shipped_recipes_carry_the_committed_cross_dataset_choice():
    """Every recipe the selection ran (ETTh1 at each horizon, the panel) sets RevIN as the
    committed selection chose for its model, and the transformer baseline follows the Titans
    forecaster whose training it shares."""
    import yaml

    selection = json.loads((defaults.REPO / "experiments" / "forecasting" / "defaults" / "results.json").read_text())
    chosen = {c["model"]: c["chosen"] for c in selection["selection"]}
    assert set(chosen) == set(defaults.MODELS)
    follows = {"dlinear": "dlinear", "titans": "titans", "transformer": "titans"}
    for model, source in follows.items():
        for dataset, (horizons, _, _) in defaults.DATASETS.items():
            for horizon in horizons:
                path = defaults.recipe(model, dataset, horizon)
                if not path.exists():  # the transformer has no panel recipe
                    continue
                revin = yaml.safe_load(path.read_text())["model"]["init_args"]["revin"]
                assert revin == (chosen[source] == "revin_on"), path.name

"""The panel benchmark's bookkeeping (``experiments/forecasting/panel.py``), without training: the
run function is replaced by one that writes made-up rows. The search runs first, the setting with
the lowest validation quantile loss gets the other seeds, finished rows are skipped on the next
call, and the table holds mean and [min, max] over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.forecasting import panel
from titans_lightning.runs import best_validation

# A grid of the benchmark's shape (the real one may change), and a made-up validation quantile
# loss of each (model, setting): lr0.005 and lr0.001 are the best.
SEARCH = {"snaive": {"default": []},
          "dlinear": {"lr0.002": ["--lr", "0.002"], "lr0.005": ["--lr", "0.005"], "lr0.01": ["--lr", "0.01"]},
          "titans": {"lr0.0005": ["--lr", "0.0005"], "lr0.001": ["--lr", "0.001"], "lr0.002": ["--lr", "0.002"]}}
VAL = {("snaive", "default"): 0.06, ("dlinear", "lr0.002"): 0.034, ("dlinear", "lr0.005"): 0.032,
       ("dlinear", "lr0.01"): 0.033, ("titans", "lr0.0005"): 0.035, ("titans", "lr0.001"): 0.031,
       ("titans", "lr0.002"): 0.036}


def fake_row(job: panel.Job) -> dict:
    """A row whose test MASE is 0.4 + seed / 100 (0.40, 0.41, 0.42 over the seeds)."""
    model, setting, seed = job
    test = {k: 0.1 for k in panel.REPORTED} | {"mase": 0.4 + seed / 100}
    return {"model": model, "setting": setting, "seed": seed, "overrides": "", "fit_seconds": 10.0 + seed,
            "val": {"quantile_loss": VAL[model, setting], "mase": 0.5, "coverage": 0.8, "step": 7}, "test": test}


@pytest.fixture
def recorded(monkeypatch):
    """Replaces ``titans`` commands by rows written the way ``run_one`` writes them, and the grid
    by ``SEARCH``; the jobs run, in order."""
    calls: list[panel.Job] = []
    monkeypatch.setattr(panel, "SEARCH", SEARCH)

    def fake_run(job: panel.Job, work: Path, results: Path) -> dict:
        calls.append(job)
        row = fake_row(job)
        panel.write_atomic(panel.row_file(results, job), json.dumps(row))
        return row

    monkeypatch.setattr(panel, "run_one", fake_run)
    return calls


def run(tmp_path: Path, models=panel.MODELS, seeds=(0, 1, 2)) -> str:
    return panel.benchmark(list(models), list(seeds), tmp_path / "results", tmp_path / "work")


def test_search_first_then_the_chosen_setting_with_the_other_seeds(tmp_path, recorded):
    run(tmp_path)
    search = [(m, s, 0) for m in panel.MODELS for s in panel.SEARCH[m]]
    assert recorded[:len(search)] == search
    assert recorded[len(search):] == [("dlinear", "lr0.005", 1), ("dlinear", "lr0.005", 2),
                                      ("titans", "lr0.001", 1), ("titans", "lr0.001", 2)]
    rows = panel.finished(tmp_path / "results")
    assert [panel.chosen(rows, m, 0) for m in panel.MODELS] == ["default", "lr0.005", "lr0.001"]


def test_a_second_call_skips_every_finished_row_and_an_interrupted_one_resumes(tmp_path, recorded):
    run(tmp_path)
    done = len(recorded)
    run(tmp_path)
    assert len(recorded) == done  # nothing again
    # an interrupted benchmark: one search row and the seeds that depend on it are missing
    (tmp_path / "results" / "runs" / "titans-lr0.002-seed0.json").unlink()
    for seed in (1, 2):
        (tmp_path / "results" / "runs" / f"titans-lr0.001-seed{seed}.json").unlink()
    run(tmp_path)
    assert recorded[done:] == [("titans", "lr0.002", 0), ("titans", "lr0.001", 1), ("titans", "lr0.001", 2)]
    assert not list((tmp_path / "results" / "runs").glob("*.tmp"))


def test_no_seeds_before_the_search_has_finished(tmp_path, recorded):
    results = tmp_path / "results"
    for setting in ("lr0.0005", "lr0.001"):
        job = ("titans", setting, 0)
        panel.write_atomic(panel.row_file(results, job), json.dumps(fake_row(job)))
    rows = panel.finished(results)
    assert panel.chosen(rows, "titans", 0) is None and panel.seed_jobs(rows, ["titans"], [0, 1, 2]) == []
    assert panel.summary(rows, "titans", 0) is None


def test_table_has_mean_and_range_over_seeds_and_every_search_run(tmp_path, recorded):
    markdown = run(tmp_path)
    lines = markdown.splitlines()
    titans = next(line for line in lines if line.startswith("| Titans (LMM) | lr0.001 | 3 |"))
    assert "0.4100 [0.4000, 0.4200]" in titans and titans.endswith("| 11 |")  # MASE; mean fit seconds
    snaive = next(line for line in lines if line.startswith("| seasonal naive | default | 1 |"))
    assert "| 0.4000 |" in snaive and "[" not in snaive  # one run: no range
    dlinear = [line for line in lines if line.startswith("| DLinear |")]
    assert len(dlinear) == 1 + 3 + 2  # the test row, then three settings and two more seeds
    saved = json.loads((tmp_path / "results" / "results.json").read_text())
    assert [s["model"] for s in saved["summary"]] == list(panel.MODELS)
    assert saved["summary"][2]["range"]["mase"] == pytest.approx([0.4, 0.42])
    assert (tmp_path / "results" / "results.md").read_text() == markdown + "\n"


def test_best_validation_reads_the_checkpoint_step(tmp_path):
    """The validation that ``run_one`` reports is the row with the lowest val quantile loss."""
    run_dir = tmp_path / "version_0"
    run_dir.mkdir()
    (run_dir / "metrics.csv").write_text("epoch,step,train/loss,val/quantile_loss,val/mase\n"
                                         "0,9,0.5,,\n0,10,,0.04,0.6\n1,20,,0.03,0.55\n2,30,,0.035,0.5\n")
    assert best_validation(run_dir, panel.SELECT) == {"quantile_loss": 0.03, "mase": 0.55, "step": 20, "epoch": 1}


def test_run_one_seeds_model_and_shuffle_and_tests_the_best_checkpoint(tmp_path, monkeypatch):
    """The two ``titans`` commands of one run, recorded, not run: the seed reaches initialisation
    and the DataModule's shuffling (its own seed), the setting both commands, and the row is
    written with the best checkpoint's validation and the test metrics."""
    calls = []

    def fake_titans(args: list[str], log: Path) -> None:
        calls.append(args)
        run = tmp_path / "work" / "titans-lr0.004-seed2" / "csv" / f"version_{len(calls) - 1}"
        (run / "checkpoints").mkdir(parents=True)
        if args[0] == "fit":
            (run / "checkpoints" / "best-step=40.ckpt").touch()
            (run / "metrics.csv").write_text("epoch,step,val/quantile_loss,val/mase,val/coverage\n"
                                             "0,20,0.04,0.6,0.8\n1,40,0.03,0.5,0.8\n")
        else:
            header = ",".join(f"test/{k}" for k in panel.REPORTED)
            (run / "metrics.csv").write_text(header + "\n" + ",".join(["0.25"] * len(panel.REPORTED)) + "\n")

    monkeypatch.setattr(panel, "titans", fake_titans)
    row = panel.run_one(("titans", "lr0.004", 2), tmp_path / "work", tmp_path / "results")
    fit, test = calls
    for flag in ("--seed_everything", "--data.init_args.seed"):
        assert fit[fit.index(flag) + 1] == "2" and flag not in test
    for args in (fit, test):
        assert args[args.index(panel.LR) + 1] == "0.004"
    assert test[test.index("--ckpt_path") + 1].endswith("best-step=40.ckpt")
    assert row["val"]["step"] == 40 and row["val"]["quantile_loss"] == 0.03 and row["test"]["mase"] == 0.25
    saved = json.loads(panel.row_file(tmp_path / "results", ("titans", "lr0.004", 2)).read_text())
    assert saved == row

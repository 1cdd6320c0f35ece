"""``titans_lightning.runs``, the one way the experiments and the tests start runs and read them:
the newest version by number, the last value of each key, a failure that names its log."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from titans_lightning.runs import RunFailed, last_values, newest_version, read_metrics, run_titans, series


def test_newest_version_compares_numbers_not_names(tmp_path: Path) -> None:
    for n in (2, 9, 10):
        (tmp_path / "csv" / f"version_{n}").mkdir(parents=True)
    assert newest_version(tmp_path / "csv").name == "version_10"
    with pytest.raises(FileNotFoundError, match="no version_N"):
        newest_version(tmp_path / "empty")


def test_metrics_keep_the_last_value_of_each_key(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text("epoch,step,train/loss,val/mse,val/mae\n"
                                          "0,1,0.9,,\n0,2,0.8,0.7,0.6\n1,4,0.5,0.4,\n")
    rows = read_metrics(tmp_path)
    assert series(rows, "train/loss") == {1: 0.9, 2: 0.8, 4: 0.5}
    assert last_values(rows, "val") == {"mse": 0.4, "mae": 0.6}


def test_a_failed_command_is_logged_and_named(tmp_path: Path) -> None:
    log = tmp_path / "fit.log"
    named = rf"titans fit --trainer.no_such_key 1\nexited [1-9]\d*; see {re.escape(str(log))}$"
    with pytest.raises(RunFailed, match=named):
        run_titans(["fit", "--trainer.no_such_key", "1"], log=log)
    assert log.read_text().startswith("$ titans fit --trainer.no_such_key 1\n") and "no_such_key" in log.read_text()

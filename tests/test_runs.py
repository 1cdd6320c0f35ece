"""``titans_lightning.runs``, the one way the experiments and the tests start runs and read them:
the newest version by number, the last value of each key, a failure that names its log, fit then
test of the chosen checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from titans_lightning.runs import (
    RunFailed,
    best_validation,
    cli_overrides,
    evaluate_checkpoint,
    fit_best,
    last_values,
    newest_version,
    read_metrics,
    run_titans,
    series,
)


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


def fake_titans(root: Path, calls: list[list[str]], checkpoint: str = "best-epoch=1.ckpt"):
    """A ``titans`` that writes what Lightning writes: a fit's validation rows and checkpoint,
    a test's metrics, each in a new version folder of ``root/csv``."""
    def run(args: list[str]) -> None:
        calls.append(args)
        version = root / "csv" / f"version_{len(calls) - 1}"
        (version / "checkpoints").mkdir(parents=True)
        if args[0] == "fit":
            (version / "checkpoints" / checkpoint).touch()
            text = "epoch,step,val/loss,val/ndcg@10\n0,10,0.9,0.02\n1,20,0.7,0.05\n2,30,0.8,0.04\n"
        else:
            text = "epoch,step,test/ndcg@10\n0,0,0.03\n"
        (version / "metrics.csv").write_text(text)
    return run


def test_fit_best_then_test_metrics_use_the_fit_s_checkpoint(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    run = fake_titans(tmp_path, calls)
    fit = fit_best(run, ["-c", "recipe.yaml"], tmp_path)
    assert fit.run.name == "version_0" and fit.checkpoint.name == "best-epoch=1.ckpt" and fit.seconds >= 0
    assert evaluate_checkpoint(run, ["-c", "recipe.yaml"], fit.checkpoint, tmp_path) == {"ndcg@10": 0.03}
    assert calls[0] == ["fit", "-c", "recipe.yaml"]
    assert calls[1] == ["test", "-c", "recipe.yaml", "--ckpt_path", str(fit.checkpoint)]
    assert best_validation(fit.run, "loss") == {"loss": 0.7, "ndcg@10": 0.05, "step": 20, "epoch": 1}
    assert best_validation(fit.run, "ndcg@10", mode="max")["step"] == 20
    with pytest.raises(ValueError, match="val/mse"):
        best_validation(fit.run, "mse")


def test_a_fit_without_the_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"best-\*\.ckpt.*version_0"):
        fit_best(fake_titans(tmp_path, [], checkpoint="last.ckpt"), [], tmp_path)


def test_set_pairs_become_flags_and_a_bare_key_is_refused() -> None:
    assert cli_overrides(["model.init_args.revin=true", "data.init_args.lookback=336"]) == [
        "--model.init_args.revin", "true", "--data.init_args.lookback", "336"]
    with pytest.raises(SystemExit, match="KEY=VALUE.*'revin'"):
        cli_overrides(["revin"])
    with pytest.raises(SystemExit, match="^--stage2-set: expected KEY=VALUE"):
        cli_overrides(["=1"], "--stage2-set")

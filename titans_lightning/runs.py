"""``titans`` started in a fresh interpreter, the newest run folder found, its metrics read.

With the CSV logger (``recipes/logger/csv.yaml``) every ``titans`` command writes a new folder
``<default_root_dir>/csv/version_N/`` holding ``metrics.csv`` (a row per logging call, a column per
key, empty where the row did not log it), the resolved ``config.yaml`` and ``checkpoints/``. The
experiments (``experiments/<domain>/``) and the tests start runs and read them with these
functions, so that there is one way to do either.

Standard library only: importing this module imports neither torch nor Lightning.
"""

from __future__ import annotations

import csv
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

__all__ = ["QUIET", "FittedRun", "RunFailed", "Runner", "best_validation", "cli_overrides", "evaluate_checkpoint",
           "fit_best", "fresh_env", "last_values", "newest_version", "read_metrics", "run_titans", "series"]

StrPath = Union[str, Path]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
PROGRAMS = {"titans_lightning.cli": "titans", "titans_lightning.streaming": "titans-stream"}


def cli_overrides(pairs: Sequence[str], option: str = "--set") -> list[str]:
    """``["a.b=1"]`` -> ``["--a.b", "1"]`` (an experiment's ``--set KEY=VALUE``, as ``titans``
    arguments); a pair without ``=`` stops the program with a message naming it and ``option``."""
    flags: list[str] = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"{option}: expected KEY=VALUE (e.g. model.init_args.revin=true), got {pair!r}")
        flags += [f"--{key}", value]
    return flags


class RunFailed(RuntimeError):
    """A command started by :func:`run_titans` exited with an error."""


def fresh_env(paths: Sequence[StrPath] = (), **extra: str) -> dict[str, str]:
    """This process's environment for a child run: ``paths`` first on ``PYTHONPATH``, one thread
    (``OMP_NUM_THREADS=1``) unless this environment sets its own count, then ``extra`` on top."""
    env = {"OMP_NUM_THREADS": "1", **os.environ}
    pythonpath = [*map(str, paths), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in pythonpath if p)
    return {**env, **extra}


def run_titans(args: Sequence[StrPath], *, cwd: Optional[StrPath] = None, env: Optional[Mapping[str, str]] = None,
               log: Optional[Path] = None, timeout: Optional[float] = None,
               module: str = "titans_lightning.cli") -> str:
    """``python -m <module> *args`` in a fresh interpreter, as a shell, ``torchrun`` or a cluster
    would start ``titans`` (``module="titans_lightning.streaming"``: ``titans-stream``), in ``cwd``
    with ``env`` (default: :func:`fresh_env` with ``cwd`` importable, as a checkout's recipes need).

    The output is appended to ``log`` after a ``$ <command>`` line, or else captured; returns the
    captured stdout ("" with a log). A non-zero exit raises :class:`RunFailed` naming the log, or
    with the output's tail; past ``timeout`` seconds the process is killed and
    ``subprocess.TimeoutExpired`` raised."""
    command = [sys.executable, "-m", module, *map(str, args)]
    shown = shlex.join([PROGRAMS.get(module, f"python -m {module}"), *command[3:]])
    env = dict(env) if env is not None else fresh_env([cwd] if cwd else [])
    options = dict(cwd=cwd, env=env, timeout=timeout)
    if log is None:
        proc = subprocess.run(command, capture_output=True, text=True, **options)
        if proc.returncode:
            raise RunFailed(f"{shown}\nexited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
        return proc.stdout
    with open(log, "a") as out:
        out.write(f"$ {shown}\n")
        out.flush()
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, **options).returncode
    if code:
        raise RunFailed(f"{shown}\nexited {code}; see {log}")
    return ""


def newest_version(folder: StrPath) -> Path:
    """The ``version_N`` folder of a logger's ``folder`` (``<default_root_dir>/csv``) with the
    largest N: the run of the latest command that wrote there."""
    versions = list(Path(folder).glob("version_*"))
    if not versions:
        raise FileNotFoundError(f"no version_N run folder under {folder}")
    return max(versions, key=lambda p: int(p.name.split("_")[1]))


def read_metrics(run: StrPath) -> list[dict[str, str]]:
    """The rows of a run folder's ``metrics.csv``, as written (strings; "" where not logged)."""
    with open(Path(run) / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def series(rows: list[dict[str, str]], key: str) -> dict[int, float]:
    """``{step: value}`` of one logged key, in logging order."""
    return {int(r["step"]): float(r[key]) for r in rows if r.get(key)}


def last_values(rows: list[dict[str, str]], prefix: str) -> dict[str, float]:
    """The last logged value of every ``<prefix>/<name>`` column, by ``name``:
    ``last_values(rows, "test")["mse"]`` is the ``test/mse`` a ``titans test`` logged."""
    values: dict[str, float] = {}
    for row in rows:
        values.update({k[len(prefix) + 1:]: float(v) for k, v in row.items() if k.startswith(prefix + "/") and v})
    return values


@dataclass(frozen=True)
class FittedRun:
    """A finished ``titans fit``: its run folder (``version_N``), the checkpoint it chose and its
    wall time in seconds."""

    run: Path
    checkpoint: Path
    seconds: float


Runner = Callable[[list[str]], object]  # runs ``titans *args`` (e.g. run_titans with a log bound)


def fit_best(titans: Runner, args: Sequence[str], root: StrPath, pattern: str = "best-*.ckpt") -> FittedRun:
    """``titans fit *args`` (``args`` must set ``--trainer.default_root_dir root``), then the
    checkpoint of the new run folder matching ``pattern`` (the last by name when several)."""
    start = time.perf_counter()
    titans(["fit", *args])
    seconds = time.perf_counter() - start
    run = newest_version(Path(root) / "csv")
    found = sorted((run / "checkpoints").glob(pattern))
    if not found:
        raise FileNotFoundError(f"no checkpoint matching {pattern} under {run / 'checkpoints'}")
    return FittedRun(run, found[-1], seconds)


def evaluate_checkpoint(titans: Runner, args: Sequence[str], checkpoint: StrPath, root: StrPath) -> dict[str, float]:
    """``titans test *args --ckpt_path checkpoint``; the ``test/<name>`` values it logged, by name."""
    titans(["test", *args, "--ckpt_path", str(checkpoint)])
    return last_values(read_metrics(newest_version(Path(root) / "csv")), "test")


def best_validation(run: StrPath, metric: str, mode: str = "min") -> dict[str, float]:
    """Every ``val/<name>`` logged at the validation with the best ``val/<metric>`` (the lowest for
    ``mode="min"``, the highest for ``"max"``), by name, with its ``step`` (and ``epoch`` where logged)."""
    if mode not in ("min", "max"):
        raise ValueError(f"best_validation: mode must be 'min' or 'max', got {mode!r}")
    rows = [r for r in read_metrics(run) if r.get(f"val/{metric}")]
    if not rows:
        raise ValueError(f"{Path(run) / 'metrics.csv'}: no val/{metric} logged")
    best = (min if mode == "min" else max)(rows, key=lambda r: float(r[f"val/{metric}"]))
    values = {k[4:]: float(v) for k, v in best.items() if k.startswith("val/") and v}
    where = {"step": int(best["step"]), **({"epoch": int(best["epoch"])} if best.get("epoch") else {})}
    return {**values, **where}

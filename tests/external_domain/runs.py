"""How the tests run the external domain through ``titans``: in this process or a fresh one.

Test helpers, kept in this importable package (not in ``conftest.py``, whose module name several
test folders share).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
EXTERNAL_RECIPE = REPO / "tests" / "external_domain" / "recipe.yaml"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def subprocess_env(**extra: str) -> dict[str, str]:
    """This environment, with the checkout and ``tests/`` importable and one thread per process
    (the suite shares two cores)."""
    env = dict(os.environ)
    paths = [str(REPO), str(REPO / "tests"), env.get("PYTHONPATH", "")]
    env.update(PYTHONPATH=os.pathsep.join(p for p in paths if p), OMP_NUM_THREADS="1", **extra)
    return env


def run_subprocess(args: list[str], timeout: float = 300, env: Optional[dict[str, str]] = None) -> str:
    """``python -m titans_lightning.cli *args`` in a fresh interpreter (as ``torchrun`` or a
    cluster would start it); raises with the output tail on a non-zero exit."""
    proc = subprocess.run([sys.executable, "-m", "titans_lightning.cli", *args], cwd=REPO,
                          env=env or subprocess_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc.stdout + proc.stderr


def fit_in_process(root: Path, *args: str) -> Path:
    """``titans fit`` of the external recipe in this process, writing under ``root``; returns
    the CSV run folder (``root/csv/version_N``, the newest)."""
    from titans_lightning.cli import main

    main(["fit", "-c", str(EXTERNAL_RECIPE), "--trainer.default_root_dir", str(root), *QUIET, *args])
    return newest_version(root / "csv")


def newest_version(folder: Path) -> Path:
    """The ``version_N`` folder with the largest N."""
    return max(folder.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    """Rows of a CSVLogger's ``metrics.csv``."""
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def series(rows: list[dict[str, str]], key: str) -> dict[int, float]:
    """``{step: value}`` of one logged key."""
    return {int(r["step"]): float(r[key]) for r in rows if r.get(key)}

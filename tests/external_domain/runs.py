"""How the tests run the external domain through ``titans``: in this process or a fresh one.

Test helpers, kept in this importable package (not in ``conftest.py``, whose module name several
test folders share). Starting runs and reading their metrics is ``titans_lightning.runs``, shared
with ``experiments/``; its functions are re-exported here with the tests' defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from titans_lightning.runs import QUIET, fresh_env, newest_version, read_metrics, run_titans, series

__all__ = ["EXTERNAL_RECIPE", "QUIET", "REPO", "fit_in_process", "newest_version", "read_metrics", "run_subprocess",
           "series", "subprocess_env"]

REPO = Path(__file__).resolve().parents[2]
EXTERNAL_RECIPE = REPO / "tests" / "external_domain" / "recipe.yaml"


def subprocess_env(**extra: str) -> dict[str, str]:
    """This environment, with the checkout and ``tests/`` importable and one thread per process
    (the suite shares two cores)."""
    return fresh_env([REPO, REPO / "tests"], OMP_NUM_THREADS="1", **extra)


def run_subprocess(args: list[str], timeout: float = 300, env: Optional[dict[str, str]] = None) -> str:
    """``titans *args`` in a fresh interpreter in the checkout (as ``torchrun`` or a cluster would
    start it); raises ``RunFailed`` with the output tail on a non-zero exit."""
    return run_titans(args, cwd=REPO, env=env or subprocess_env(), timeout=timeout)


def fit_in_process(root: Path, *args: str) -> Path:
    """``titans fit`` of the external recipe in this process, writing under ``root``; returns
    the CSV run folder (``root/csv/version_N``, the newest)."""
    from titans_lightning.cli import main

    main(["fit", "-c", str(EXTERNAL_RECIPE), "--trainer.default_root_dir", str(root), *QUIET, *args])
    return newest_version(root / "csv")

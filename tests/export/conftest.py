"""Fixtures of the export tests: one debug language model trained and exported per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from external_domain.runs import QUIET, REPO


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of a 2-step ``titans fit`` of recipes/lm/debug.yaml (byte tokenizer, MAC)."""
    from titans_lightning.cli import main

    root = tmp_path_factory.mktemp("lm_debug")
    main(["fit", "-c", str(REPO / "recipes/lm/debug.yaml"), "--trainer.default_root_dir", str(root),
          "--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
          "--data.cache_dir", str(root / "cache"), *QUIET])
    return root / "csv" / "version_0"


@pytest.fixture(scope="session")
def lm_export(lm_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``titans export`` of the debug run's last checkpoint."""
    from titans_lightning.cli import main

    out = tmp_path_factory.mktemp("lm_export") / "model"
    main(["export", "--ckpt_path", str(lm_run / "checkpoints" / "last.ckpt"), "--out", str(out)])
    return out

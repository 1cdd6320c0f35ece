"""Fixtures of the long-context tests: one thread, tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]




@pytest.fixture(scope="session")
def debug_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of a 2-step ``titans fit`` of recipes/longctx/debug.yaml with one evaluation
    of a tiny grid (lengths 110 and 130, depths 0 and 1): checkpoints, metrics and figures."""
    from titans_lightning.cli import main

    root = tmp_path_factory.mktemp("longctx_debug")
    main(["fit", "-c", str(REPO / "recipes/longctx/debug.yaml"), "--trainer.default_root_dir", str(root),
          "--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--data.eval_lengths", "[110, 130]",
          "--data.depths", "[0.0, 1.0]", "--data.samples_per_cell", "1", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false"])
    return root / "csv" / "version_0"

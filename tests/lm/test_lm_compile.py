"""``titans fit --model.compile true``: the task compiles its backbone in ``configure_model`` and
trains the debug LM recipe with the losses of the eager run."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch import Callback

from external_domain.runs import QUIET, REPO, newest_version, read_metrics, series
from titans_lightning.cli import main
from titans_lightning.memory import NeuralMemory
from titans_lightning.parallelize import compiled_chunk_step

DEBUG = REPO / "recipes" / "lm" / "debug.yaml"


class RecordChunkSteps(Callback):
    """Keeps the chunk step of every memory layer of the task being trained."""

    seen: list = []

    def on_train_start(self, trainer, pl_module) -> None:
        RecordChunkSteps.seen = [m.chunk_step for m in pl_module.modules() if isinstance(m, NeuralMemory)]


def fit_two_steps(root: Path, compile: bool) -> dict[int, float]:
    """``titans fit`` of the debug LM recipe for two steps, no validation; the train losses."""
    main(["fit", "-c", str(DEBUG), "--trainer.default_root_dir", str(root), "--data.cache_dir", str(root / "cache"),
          *QUIET, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
          "--trainer.callbacks+=lm.test_lm_compile.RecordChunkSteps", "--model.compile", str(compile).lower()])
    return series(read_metrics(newest_version(root / "csv")), "train/loss")


def test_compile_option_trains_with_the_eager_losses(tmp_path):
    compiled = fit_two_steps(tmp_path / "compiled", compile=True)
    steps = RecordChunkSteps.seen
    assert len(steps) == 2 and all(step is compiled_chunk_step() for step in steps), "MAC debug: two memories"
    eager = fit_two_steps(tmp_path / "eager", compile=False)
    assert not any(step is compiled_chunk_step() for step in RecordChunkSteps.seen)
    assert sorted(compiled) == [0, 1]
    assert compiled == pytest.approx(eager, rel=1e-5)

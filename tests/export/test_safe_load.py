"""Loading never runs code from a file: a checkpoint carrying a pickled payload (an object whose
``__reduce__`` calls ``os.system``) is refused with a clear message by every reader (the CLI's
``--ckpt_path``, ``titans-stream``, ``titans export``) and the payload never runs; checkpoints of
the toolkit's own types still load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from external_domain.runs import EXTERNAL_RECIPE, QUIET, REPO
from titans_lightning.backbone import TitansConfig
from titans_lightning.safe_load import UnsafeCheckpointError, load_checkpoint


class Payload:
    """Pickled as a call of ``os.system``: loading it with ``weights_only=False`` writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def tampered(lm_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(a copy of the debug run's last.ckpt carrying a Payload, the marker file it would write)."""
    checkpoint = load_checkpoint(lm_run / "checkpoints" / "last.ckpt")
    marker = tmp_path / "payload-ran"
    checkpoint["callbacks"]["payload"] = Payload(marker)
    path = tmp_path / "tampered.ckpt"
    torch.save(checkpoint, path)
    return path, marker


def test_the_payload_would_run_if_loaded_unsafely(tampered):
    """The test's own premise: the tampered file does run code under ``weights_only=False``."""
    path, marker = tampered
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_load_checkpoint_refuses_the_payload(tampered):
    path, marker = tampered
    with pytest.raises(UnsafeCheckpointError, match=r"tampered.ckpt'?: refused to load: the checkpoint holds "
                                                    r"`posix.system`"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("subcommand", ["validate", "fit"])
def test_cli_ckpt_path_refuses_the_payload_in_one_line(subcommand, tampered, tmp_path: Path, capsys):
    from titans_lightning.cli import main

    path, marker = tampered
    with pytest.raises(SystemExit) as refused:
        main([subcommand, "-c", str(REPO / "recipes/lm/debug.yaml"), "--ckpt_path", str(path),
              "--trainer.default_root_dir", str(tmp_path / "runs"), *QUIET])
    assert str(refused.value.code).startswith("error: ") and "refused to load" in str(refused.value.code)
    assert not marker.exists()


def test_titans_stream_and_export_refuse_the_payload(tampered, tmp_path: Path):
    from titans_lightning.cli import main
    from titans_lightning.streaming import run

    path, marker = tampered
    (tmp_path / "in.txt").write_text("To be, or not to be.")
    with pytest.raises(UnsafeCheckpointError):
        run([str(path), str(tmp_path / "in.txt"), "--tokenizer", "byte"])
    with pytest.raises(SystemExit, match="refused to load"):
        main(["export", "--ckpt_path", str(path), "--out", str(tmp_path / "out")])
    assert not marker.exists()


def test_the_cli_loads_ckpt_path_weights_only_by_default(capsys):
    from titans_lightning.cli import main

    with pytest.raises(SystemExit):
        main(["validate", "-c", str(EXTERNAL_RECIPE), "--print_config"])
    assert "weights_only: true" in capsys.readouterr().out


def test_a_checkpoint_of_the_toolkit_config_types_loads(tmp_path: Path):
    """What ``TitansTask(backbone=TitansConfig(...))`` trained outside the CLI saves: the config
    dataclass and the default optimizer / schedule classes in its hyperparameters."""
    from titans_lightning.tasks import AdamW, WarmupCosine

    config = TitansConfig(variant="mag", size="debug", dim=64)
    torch.save({"hyper_parameters": {"backbone": config, "optimizer": AdamW, "lr_scheduler": WarmupCosine},
                "state_dict": {"w": torch.ones(2)}}, tmp_path / "api.ckpt")
    loaded = load_checkpoint(tmp_path / "api.ckpt")
    assert loaded["hyper_parameters"] == {"backbone": config, "optimizer": AdamW, "lr_scheduler": WarmupCosine}

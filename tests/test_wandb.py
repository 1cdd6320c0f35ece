"""W&B offline: with no account and no network, a run writes its folder with the logged metrics,
the figures of the FigureLogger hook, and the resolved config."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from external_domain.runs import EXTERNAL_RECIPE, QUIET, REPO, run_subprocess, subprocess_env

BLOCK = 32768  # the .wandb file is a LevelDB-style log: 32 KiB blocks of 7-byte-headed records
HEADER = 7


def wandb_records(path: Path) -> list[bytes]:
    """The serialized protobuf records of a ``run-<id>.wandb`` file (fragments joined)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    records, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        pending += data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind in (1, 4):  # a full record, or the last fragment of one
            records.append(pending)
            pending = b""
    return records


def history(path: Path) -> dict[str, list[float]]:
    """Every value logged to the run's history, by key."""
    from wandb.proto import wandb_internal_pb2

    logged: dict[str, list[float]] = {}
    for raw in wandb_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                value = json.loads(item.value_json)
                if isinstance(value, (int, float)):
                    logged.setdefault(key, []).append(float(value))
    return logged


def test_offline_run_writes_metrics_figures_and_config(tmp_path):
    env = subprocess_env(WANDB_MODE="offline", WANDB_DIR=str(tmp_path), WANDB_SILENT="true",
                         WANDB_CONFIG_DIR=str(tmp_path / "config"), WANDB_CACHE_DIR=str(tmp_path / "cache"),
                         HOME=str(tmp_path), WANDB_API_KEY="")
    run_subprocess(["fit", "-c", str(EXTERNAL_RECIPE), "-c", str(REPO / "recipes" / "logger" / "wandb.yaml"),
                    "--trainer.default_root_dir", str(tmp_path),
                    "--trainer.callbacks+=external_domain.PredictionFigure", *QUIET], env=env)

    (offline_run,) = (tmp_path / "wandb").glob("offline-run-*")
    logged = history(next(offline_run.glob("run-*.wandb")))
    assert len(logged["train/loss"]) == 4 and len(logged["val/mse"]) == 2
    assert all(math.isfinite(v) for v in logged["train/loss"] + logged["val/mse"])
    assert len(list(offline_run.glob("files/media/images/**/*.png"))) == 2, "one figure per validation"

    run_id = offline_run.name.rsplit("-", 1)[1]
    run_dir = tmp_path / "titans" / run_id  # <save_dir>/<project>/<run id>: checkpoints, config, PNGs
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in (run_dir / "figures").iterdir()) == ["val_prediction-step2.png",
                                                                        "val_prediction-step4.png"]


def artifacts(path: Path) -> list:
    """The artifact records of a ``run-<id>.wandb`` file."""
    from wandb.proto import wandb_internal_pb2

    found = []
    for raw in wandb_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "artifact":
            found.append(record.artifact)
    return found


def test_offline_run_keeps_checkpoints_as_artifacts_for_sync(tmp_path):
    """``log_model true`` with the offline fragment (Lightning alone refuses it): the run records
    the best and last checkpoints as ``model`` artifacts, their files staged for ``wandb sync``."""
    env = subprocess_env(WANDB_MODE="offline", WANDB_DIR=str(tmp_path), WANDB_SILENT="true",
                         WANDB_CONFIG_DIR=str(tmp_path / "config"), WANDB_CACHE_DIR=str(tmp_path / "cache"),
                         WANDB_DATA_DIR=str(tmp_path / "data"), HOME=str(tmp_path), WANDB_API_KEY="")
    run_subprocess(["fit", "-c", str(EXTERNAL_RECIPE), "-c", str(REPO / "recipes" / "logger" / "wandb.yaml"),
                    "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.log_model", "true",
                    *QUIET], env=env)

    (offline_run,) = (tmp_path / "wandb").glob("offline-run-*")
    run_id = offline_run.name.rsplit("-", 1)[1]
    checkpoints = tmp_path / "titans" / run_id / "checkpoints"
    logged = {json.loads(a.metadata)["original_filename"]: a for a in artifacts(next(offline_run.glob("run-*.wandb")))}
    assert set(logged) == {"last.ckpt", "best-step=4.ckpt"}
    assert sorted(logged["best-step=4.ckpt"].aliases) == ["best", "latest"]
    for name, artifact in logged.items():
        assert (artifact.type, artifact.name) == ("model", f"model-{run_id}")
        (entry,) = artifact.manifest.contents
        assert entry.path == "model.ckpt"
        assert Path(entry.local_path).read_bytes() == (checkpoints / name).read_bytes(), "staged for sync"

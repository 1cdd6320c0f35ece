"""Two CPU processes over gloo, launched by the CLI as a cluster would: DDP and FSDP2 each train
the same trajectory as one process on the same global batch; FSDP shards every block, writes a
sharded checkpoint and resumes from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from external_domain.runs import EXTERNAL_RECIPE, QUIET, REPO, fit_in_process, newest_version, read_metrics, run_subprocess, series

GLOBAL_BATCH = 8
TWO_CPU_PROCESSES = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--data.batch_size", str(GLOBAL_BATCH // 2)]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> list[dict[str, str]]:
    """Metrics of the external recipe in one process with the whole global batch."""
    return read_metrics(fit_in_process(tmp_path_factory.mktemp("one"), "--data.batch_size", str(GLOBAL_BATCH)))


def fit_two_processes(root: Path, fragment: str, *args: str) -> Path:
    run_subprocess(["fit", "-c", str(EXTERNAL_RECIPE), "-c", str(REPO / "recipes" / "trainer" / fragment),
                    "--trainer.default_root_dir", str(root), *TWO_CPU_PROCESSES, *QUIET, *args])
    return newest_version(root / "csv")


def assert_same_trajectory(rows: list[dict[str, str]], reference: list[dict[str, str]]) -> None:
    for key in ("train/loss", "val/loss"):
        got, want = series(rows, key), series(reference, key)
        assert sorted(got) == sorted(want) and len(want) > 1
        assert got == pytest.approx(want, rel=1e-4), key


def test_ddp_two_processes_match_one_process(one_process, tmp_path):
    run_dir = fit_two_processes(tmp_path, "ddp.yaml")
    assert_same_trajectory(read_metrics(run_dir), one_process)


def test_fsdp_shards_every_block_matches_one_process_and_resumes(one_process, tmp_path):
    run_dir = fit_two_processes(tmp_path / "first", "fsdp.yaml", "--trainer.callbacks+=external_domain.ShardReport")
    assert_same_trajectory(read_metrics(run_dir), one_process)

    for rank in (0, 1):
        report = json.loads((run_dir / f"shards-rank{rank}.json").read_text())
        blocks = {name: p for name, p in report.items() if name.startswith("backbone.blocks.")}
        assert blocks and all(p["dtensor"] for p in report.values()), "every parameter belongs to an FSDP unit"
        for name, p in blocks.items():
            assert p["placements"] == "(Shard(dim=0),)" and p["local"] * 2 == p["global"], name

    last = run_dir / "checkpoints" / "last.ckpt"
    assert sorted(f.name for f in last.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert torch.load(last / "meta.pt", weights_only=False)["global_step"] == 4

    resumed = fit_two_processes(tmp_path / "resumed", "fsdp.yaml", "--trainer.max_steps", "6", "--ckpt_path", str(last))
    assert torch.load(resumed / "checkpoints" / "last.ckpt" / "meta.pt", weights_only=False)["global_step"] == 6
    steps = series(read_metrics(resumed), "train/loss")
    assert len(steps) == 2 and min(steps) >= 4, "the resumed run trains only the two missing steps"

"""Two CPU processes over gloo, launched by the CLI as a cluster would, with the memory variants:
DDP and FSDP2 each train the same trajectory as one process on the same global batch (MAC and LMM
over every step, MAG and MAL over one); FSDP shards every block of MAC, writes a sharded checkpoint
and resumes from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from external_domain.runs import (
    EXTERNAL_RECIPE,
    QUIET,
    REPO,
    fit_in_process,
    newest_version,
    read_metrics,
    run_subprocess,
    series,
)

GLOBAL_BATCH = 8
TWO_CPU_PROCESSES = ["--trainer.accelerator", "cpu", "--trainer.devices", "2",
                     "--data.batch_size", str(GLOBAL_BATCH // 2)]
#: variant -> the steps both runs train: the full recipe (4 steps, two validations) or one step
ONE_STEP = ["--trainer.max_steps", "1", "--trainer.limit_val_batches", "0", "--trainer.enable_checkpointing", "false"]
STEPS = {"mac": [], "lmm": [], "mag": ONE_STEP, "mal": ONE_STEP}
STRATEGIES = ["ddp.yaml", "fsdp.yaml"]
CASES = [pytest.param(v, s, id=f"{v}-{s.split('.')[0]}") for v in STEPS for s in STRATEGIES]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """Metrics of the external recipe with a memory variant in one process with the whole global
    batch, by variant (computed once each)."""
    cache: dict[str, list[dict[str, str]]] = {}

    def metrics(variant: str) -> list[dict[str, str]]:
        if variant not in cache:
            run = fit_in_process(tmp_path_factory.mktemp(f"one-{variant}"), "--data.batch_size", str(GLOBAL_BATCH),
                                 "--model.backbone.variant", variant, *STEPS[variant])
            cache[variant] = read_metrics(run)
        return cache[variant]

    return metrics


def fit_two_processes(root: Path, fragment: str, variant: str, *args: str) -> Path:
    run_subprocess(["fit", "-c", str(EXTERNAL_RECIPE), "-c", str(REPO / "recipes" / "trainer" / fragment),
                    "--trainer.default_root_dir", str(root), *TWO_CPU_PROCESSES, *QUIET,
                    "--model.backbone.variant", variant, *STEPS[variant], *args])
    return newest_version(root / "csv")


def assert_same_trajectory(rows: list[dict[str, str]], reference: list[dict[str, str]]) -> None:
    keys = [k for k in ("train/loss", "val/loss") if series(reference, k)]
    assert "train/loss" in keys
    for key in keys:
        got, want = series(rows, key), series(reference, key)
        assert sorted(got) == sorted(want), key
        assert got == pytest.approx(want, rel=1e-4), key


@pytest.mark.parametrize("variant, fragment", [c for c in CASES if c.id != "mac-fsdp"])
def test_two_processes_match_one_process(one_process, tmp_path, variant, fragment):
    assert_same_trajectory(read_metrics(fit_two_processes(tmp_path, fragment, variant)), one_process(variant))


def test_fsdp_with_activation_checkpointing_matches_one_process(one_process, tmp_path):
    """FSDP2 over checkpointed blocks (the memory segments kept through the block recompute):
    MAC's whole trajectory equals one plain process."""
    run_dir = fit_two_processes(tmp_path, "fsdp.yaml", "mac", "--model.activation_checkpointing", "true")
    assert_same_trajectory(read_metrics(run_dir), one_process("mac"))


def test_fsdp_shards_every_block_of_mac_matches_one_process_and_resumes(one_process, tmp_path):
    run_dir = fit_two_processes(tmp_path / "first", "fsdp.yaml", "mac",
                                "--trainer.callbacks+=external_domain.ShardReport")
    assert_same_trajectory(read_metrics(run_dir), one_process("mac"))

    for rank in (0, 1):
        report = json.loads((run_dir / f"shards-rank{rank}.json").read_text())
        blocks = {name: p for name, p in report.items() if name.startswith("backbone.blocks.")}
        assert blocks and all(p["dtensor"] for p in report.values()), "every parameter belongs to an FSDP unit"
        assert any(".memory.memory_init." in name for name in blocks), "the memory's M_0 is sharded too"
        for name, p in blocks.items():
            assert p["placements"] == "(Shard(dim=0),)" and p["local"] * 2 == p["global"], name

    last = run_dir / "checkpoints" / "last.ckpt"
    assert sorted(f.name for f in last.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert torch.load(last / "meta.pt", weights_only=False)["global_step"] == 4

    resumed = fit_two_processes(tmp_path / "resumed", "fsdp.yaml", "mac", "--trainer.max_steps", "6",
                                "--ckpt_path", str(last))
    assert torch.load(resumed / "checkpoints" / "last.ckpt" / "meta.pt", weights_only=False)["global_step"] == 6
    steps = series(read_metrics(resumed), "train/loss")
    assert len(steps) == 2 and min(steps) >= 4, "the resumed run trains only the two missing steps"

"""``experiments/longctx/two_stage.py`` with the ``titans`` commands recorded, not run: stage 2
starts from stage 1's checkpoint with the long-haystack settings, the forget-gate start reaches
every command, finished stages and rows are not run again, the row carries the test grid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pytest
import torch

from experiments.longctx import two_stage


def fake_titans(calls: list[list[str]], stop_at: Optional[int] = None):
    """Writes what a finished ``titans fit`` / ``titans test`` writes into its root folder (a fit's
    last checkpoint at its ``max_steps``, or at ``stop_at``: a run stopped early)."""
    def run(args: list[str]) -> None:
        calls.append(args)
        root = Path(args[args.index("--trainer.default_root_dir") + 1]) / "csv"
        version = root / f"version_{len(list(root.glob('version_*')))}"
        (version / "checkpoints").mkdir(parents=True)
        (version / "config.yaml").write_text("{}\n")
        if args[0] == "fit":
            steps = int(args[args.index("--trainer.max_steps") + 1]) if stop_at is None else stop_at
            torch.save({"global_step": steps}, version / "checkpoints" / "last.ckpt")
            lines = ["epoch,step,val/needle_acc/2048,val/needle_acc/512", "0,199,0.25,0.5", "0,399,0.5,1.0"]
        else:
            lines = ["epoch,step,test/needle_acc/2048,test/needle_acc/65536", "0,0,1.0,0.4"]
        (version / "metrics.csv").write_text("\n".join(lines) + "\n")
    return run


def test_two_stages_then_the_test_grid(tmp_path: Path) -> None:
    a = two_stage.parse_args(["--variant", "mac", "--decay-init", "-12", "--stage1-steps", "10", "--stage2-steps", "4",
                              "--test-lengths", "2048", "65536", "--work", str(tmp_path / "work"),
                              "--results", str(tmp_path / "results"), "--set", "model.backbone.memory_init_lr_bias=-2",
                              "--stage2-set", "model.context_loss_weight=0",
                              "--stage1-set", "data.train_length=512", "data.eval_lengths=[512]"])
    calls: list[list[str]] = []
    row = two_stage.run_seed(a, 1, fake_titans(calls))
    first, second, test = calls
    assert [c[0] for c in calls] == ["fit", "fit", "test"]
    for args in calls:
        assert args[args.index("--model.backbone.memory_init_decay_bias") + 1] == "-12.0"
        assert args[args.index("--model.backbone.memory_init_lr_bias") + 1] == "-2"
        assert args[args.index("--seed_everything") + 1] == "1"
        assert args[args.index("-c") + 1].endswith("recipes/longctx/mac.yaml")
    assert "--model.pretrained" not in first and "--model.tbptt_segment" not in first
    assert [args.count("--model.context_loss_weight") for args in calls] == [0, 1, 1]  # the long stage and its test
    assert second[second.index("--model.context_loss_weight") + 1] == "0"
    assert [args.count("--data.train_length") for args in calls] == [1, 1, 1]  # stage 1's own, then stage 2's
    assert first[first.index("--data.train_length") + 1] == "512"
    assert first[len(first) - 1 - first[::-1].index("--data.eval_lengths") + 1] == "[512]"  # after the default
    assert row["stage1_overrides"] == "--data.train_length 512 --data.eval_lengths [512]"
    assert [a for a in second if a.endswith(".yaml")] == [first[first.index("-c") + 1], str(two_stage.STAGE2)]
    assert second[second.index("--model.pretrained") + 1].endswith("stage1/csv/version_0/checkpoints/last.ckpt")
    assert second[second.index("--data.train_length") + 1] == "2048"
    assert second[second.index("--model.tbptt_segment") + 1] == "256"
    assert second[second.index("--trainer.max_steps") + 1] == "4"
    assert test[test.index("--ckpt_path") + 1].endswith("stage2/csv/version_0/checkpoints/last.ckpt")
    assert [a for a in test if a.endswith(".yaml")] == [a for a in second if a.endswith(".yaml")]
    assert test[test.index("--data.train_length") + 1] == "2048"  # no 128-token setting a multi-needle task refuses
    assert json.loads(test[test.index("--data.test_lengths") + 1]) == [2048, 65536]
    assert row["test"] == {"2048": 100.0, "65536": 40.0} and row["test_samples_per_length"] == 10
    assert row["stage2_overrides"] == "--model.context_loss_weight 0"
    assert row["stage2"]["val"] == {"199": {2048: 25.0, 512: 50.0}, "399": {2048: 50.0, 512: 100.0}}
    assert json.loads((tmp_path / "results" / "mac_d-12-seed1.json").read_text())["test"] == row["test"]

    calls.clear()  # both stages hold their checkpoints: only the test runs again
    two_stage.run_seed(a, 1, fake_titans(calls))
    assert [c[0] for c in calls] == ["test"]
    assert "| mac_d-12 | mac | 1 | -12 | 10 + 4 | 10 | 100 % | 40 % |" in two_stage.table(tmp_path / "results")


def test_a_finished_row_is_kept_and_a_bad_override_is_named(tmp_path: Path, monkeypatch) -> None:
    results = tmp_path / "results"
    results.mkdir()
    row = {"name": "lmm_d-12", "variant": "lmm", "seed": 0, "decay_init": -12.0, "stage1_steps": 1,
           "stage2_steps": 1, "stage1": {"minutes": 1.0}, "stage2": {"minutes": 2.0}, "test": {"2048": 100.0}}
    (results / "lmm_d-12-seed0.json").write_text(json.dumps(row))
    monkeypatch.setattr(two_stage, "run_seed", lambda *a: pytest.fail("a finished seed ran again"))
    two_stage.main(["--results", str(results), "--work", str(tmp_path / "work")])
    assert "| lmm_d-12 | lmm | 0 | -12 | 1 + 1 |  | 100 % | 1.0 + 2.0 |" in (results / "results.md").read_text()
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        two_stage.parse_args(["--set", "model.tbptt_segment"])


def test_rows_compared_from_one_stage_one(tmp_path: Path) -> None:
    """``--stage1-from``: the second row's stage 2 starts from the first row's stage-1 checkpoint,
    which is not trained again; its own stage-2 overrides reach its stage 2 and test only."""
    common = ["--variant", "lmm", "--stage1-steps", "10", "--stage2-steps", "4", "--test-lengths", "2048",
              "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results")]
    calls: list[list[str]] = []
    two_stage.run_seed(two_stage.parse_args([*common, "--name", "base"]), 0, fake_titans(calls))
    start = calls[0][calls[0].index("--trainer.default_root_dir") + 1]
    calls.clear()
    a = two_stage.parse_args([*common, "--name", "capped", "--stage1-from", "base",
                              "--stage2-set", "model.backbone.memory_max_decay=1e-4"])
    row = two_stage.run_seed(a, 0, fake_titans(calls))
    assert [c[0] for c in calls] == ["fit", "test"]  # stage 1 is base's, already trained
    second, test = calls
    assert second[second.index("--model.pretrained") + 1].startswith(start)
    assert "/capped-seed0/stage2" in second[second.index("--trainer.default_root_dir") + 1]
    assert [args[args.index("--model.backbone.memory_max_decay") + 1] for args in calls] == ["1e-4", "1e-4"]
    assert row["stage1_from"] == "base" and row["stage1"]["checkpoint"].startswith(start)


def test_a_stage_stopped_early_is_run_again(tmp_path: Path) -> None:
    """A stage whose last checkpoint is at step 2 of its 10 (killed, or still running) is not taken
    as finished: the call that ran it fails naming it, the next call runs the stage again and the
    row uses the new, finished checkpoint."""
    a = two_stage.parse_args(["--variant", "lmm", "--stage1-steps", "10", "--stage2-steps", "4",
                              "--test-lengths", "2048", "--work", str(tmp_path / "work"),
                              "--results", str(tmp_path / "results")])
    calls: list[list[str]] = []
    with pytest.raises(FileNotFoundError, match="stage1: the stage ended without a last checkpoint at step 10"):
        two_stage.run_seed(a, 0, fake_titans(calls, stop_at=2))
    calls.clear()
    row = two_stage.run_seed(a, 0, fake_titans(calls))
    assert [c[0] for c in calls] == ["fit", "fit", "test"]
    assert row["stage1"]["checkpoint"].endswith("stage1/csv/version_1/checkpoints/last.ckpt")


def test_a_row_continued_from_another_rows_model(tmp_path: Path) -> None:
    """``--continue-from``: no stage 1; the long stage starts from the named row's stage-2
    checkpoint (same seed) with this row's overrides, and the row counts that row's steps and
    minutes as its first stage. A missing start row is named; it cannot be given with --stage1-from."""
    common = ["--variant", "mac", "--stage1-steps", "10", "--stage2-steps", "4", "--test-lengths", "2048",
              "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results")]
    calls: list[list[str]] = []
    base = two_stage.run_seed(two_stage.parse_args([*common, "--name", "single"]), 1, fake_titans(calls))
    calls.clear()
    a = two_stage.parse_args([*common, "--name", "multikey", "--continue-from", "single",
                              "--set", "data.task=multikey"])
    row = two_stage.run_seed(a, 1, fake_titans(calls))
    assert [c[0] for c in calls] == ["fit", "test"]
    second, test = calls
    assert second[second.index("--model.pretrained") + 1] == str(two_stage.REPO / base["stage2"]["checkpoint"])
    assert [args[args.index("--data.task") + 1] for args in calls] == ["multikey", "multikey"]
    assert "/multikey-seed1/stage2" in second[second.index("--trainer.default_root_dir") + 1]
    assert row["stage1_steps"] == 14 and row["continue_from"] == "single"
    assert row["stage1"]["from_row"] == "single" and row["stage1"]["checkpoint"] == base["stage2"]["checkpoint"]
    assert row["stage1"]["minutes"] == round(base["stage1"]["minutes"] + base["stage2"]["minutes"], 1)
    with pytest.raises(FileNotFoundError, match="single-seed0.json: --continue-from single needs that row's seed 0"):
        two_stage.run_seed(a, 0, fake_titans(calls))
    with pytest.raises(SystemExit):
        two_stage.parse_args([*common, "--continue-from", "single", "--stage1-from", "single"])


def test_the_needle_count_curriculum_chains_its_stages(tmp_path: Path) -> None:
    """``needle_curriculum.py``: one fit per needle count, each from the one before, with the
    task's count key, length and steps; finished stages are not run again; counts per stage checked."""
    from experiments.longctx import needle_curriculum

    start = tmp_path / "single.ckpt"
    a = needle_curriculum.parse_args(["--task", "multivalue", "--seed", "1", "--start", str(start),
                                      "--out", str(tmp_path / "mv"), "--set", "model.write_penalty=1.0"])
    calls: list[list[str]] = []
    summary = needle_curriculum.run_curriculum(a, fake_titans(calls))
    assert [c[0] for c in calls] == ["fit"] * 3
    assert [c[c.index("--data.num_values") + 1] for c in calls] == ["1", "2", "4"]
    assert [c[c.index("--data.train_length") + 1] for c in calls] == ["384", "512", "512"]
    assert [c[c.index("--trainer.max_steps") + 1] for c in calls] == ["300", "500", "800"]
    starts = [c[c.index("--model.pretrained") + 1] for c in calls]
    assert starts[0] == str(start) and starts[1].endswith("mv/n1/csv/version_0/checkpoints/last.ckpt")
    assert starts[2].endswith("mv/n2/csv/version_0/checkpoints/last.ckpt")
    assert all(c[c.index("--data.task") + 1] == "multivalue" and "--model.write_penalty" in c for c in calls)
    assert all(c[c.index("--seed_everything") + 1] == "1" for c in calls)
    assert list(summary["stages"]) == ["n1", "n2", "n4"]
    assert summary["stages"]["n4"]["val"]["399"] == {2048: 50.0, 512: 100.0}
    assert json.loads((tmp_path / "mv" / "curriculum.json").read_text())["task"] == "multivalue"
    calls.clear()
    needle_curriculum.run_curriculum(a, fake_titans(calls))
    assert calls == []
    with pytest.raises(SystemExit):
        needle_curriculum.parse_args(["--start", "x", "--counts", "1", "2", "--lengths", "384"])

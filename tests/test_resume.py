"""Resuming from ``last.ckpt`` continues at the saved global step with the saved optimizer and
LR-scheduler states, and trains only the missing steps."""

from __future__ import annotations

import torch

from external_domain.runs import read_metrics, series


def assert_same_state(got, want, path: str = "") -> None:
    """Exact equality of nested state dicts (tensors compared element-wise)."""
    if isinstance(want, dict):
        assert set(got) == set(want), path
        for key in want:
            assert_same_state(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_state(g, w, f"{path}[{i}]")
    elif isinstance(want, torch.Tensor):
        assert torch.equal(got, want), path
    else:
        assert got == want, path


def test_resume_from_last_checkpoint_restores_step_optimizer_and_schedule(fit_external):
    first = fit_external()
    saved = torch.load(first / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 4

    resumed = fit_external("--trainer.max_steps", "6", "--ckpt_path", str(first / "checkpoints" / "last.ckpt"),
                           "--trainer.callbacks+=external_domain.ResumeProbe")
    probe = torch.load(resumed / "resume-probe.pt", weights_only=False)
    assert probe["global_step"] == 4
    assert probe["optimizer"]["state"], "Adam moments must come back, not start from zero"
    assert_same_state(probe["optimizer"], saved["optimizer_states"][0], "optimizer")
    assert_same_state(probe["lr_scheduler"], saved["lr_schedulers"][0], "lr_scheduler")

    final = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=False)
    assert final["global_step"] == 6
    assert all(int(s["step"]) == 6 for s in final["optimizer_states"][0]["state"].values())
    assert len(series(read_metrics(resumed), "train/loss")) == 2

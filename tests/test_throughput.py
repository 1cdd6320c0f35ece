"""The Throughput callback's model FLOPs and MFU: FLOPs per token as counted on a forward and
backward of the same task and batch, the same in every window, and MFU only with a peak figure."""

from __future__ import annotations

import pytest

from external_domain import DelayedCopyDataModule, DelayedCopyTask
from external_domain.runs import read_metrics, series
from titans_lightning.backbone import TitansConfig
from titans_lightning.callbacks import Throughput
from titans_lightning.flops import flop_counter_mode

PEAK = 2e9  # FLOP/s: any positive figure; MFU must be the logged rate over it


def counted_flops_per_token() -> float:
    """Forward + backward FLOPs per token of the external recipe's task on one training batch."""
    data = DelayedCopyDataModule(channels=4, seq_len=16, delay=2, num_train=16, num_eval=8, batch_size=8)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    task = DelayedCopyTask(TitansConfig(variant="transformer", size="debug"), data_sizes=data.data_sizes)
    task.configure_model()
    with flop_counter_mode() as counter:
        loss, _ = task(batch)
        loss.backward()
    b, t = task.batch_shape(batch)
    return counter.get_total_flops() / (b * t)


def test_model_flops_and_mfu_are_logged(fit_external):
    run_dir = fit_external("--trainer.callbacks+=titans_lightning.callbacks.Throughput",
                           f"--trainer.callbacks.peak_flops={PEAK}")
    rows = read_metrics(run_dir)
    tokens, flops, mfu = (series(rows, f"perf/{key}") for key in ("tokens_per_sec", "flops_per_sec", "mfu"))
    assert sorted(flops) == sorted(tokens) == sorted(mfu) and len(flops) == 4
    per_token = counted_flops_per_token()
    assert per_token > 0
    for step in flops:
        assert flops[step] / tokens[step] == pytest.approx(per_token, rel=1e-6)
        assert mfu[step] == pytest.approx(flops[step] / PEAK, rel=1e-6)


def test_without_a_peak_figure_no_mfu_is_logged(fit_external):
    rows = read_metrics(fit_external("--trainer.callbacks+=titans_lightning.callbacks.Throughput"))
    assert len(series(rows, "perf/flops_per_sec")) == 4 and not series(rows, "perf/mfu")


def test_a_peak_figure_must_be_positive():
    with pytest.raises(ValueError, match="peak_flops must be > 0"):
        Throughput(peak_flops=0)

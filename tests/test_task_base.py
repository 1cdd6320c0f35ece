"""The task harness's own contracts: schedule shape, weight-decay groups, idempotent construction,
metric collections per stage, and a baseline without a backbone on the harness alone."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanSquaredError

from external_domain import DelayedCopyTask
from titans_lightning.backbone import TitansConfig
from titans_lightning.tasks import Task, TitansTask, WarmupCosine, warmup_cosine_factor


class ScaleBaseline(Task):
    """A baseline without a backbone: ``y`` predicted as ``x`` times one learned matrix."""

    monitor = "val/mse"

    def configure_models(self) -> None:
        self.scale = nn.Linear(self.data_sizes["channels"], self.data_sizes["channels"])

    def compute_loss(self, batch):
        x, y = batch
        prediction = self.scale(x)
        return F.mse_loss(prediction, y), prediction

    def build_metrics(self):
        return {"mse": MeanSquaredError()}


def make_task() -> DelayedCopyTask:
    task = DelayedCopyTask(TitansConfig(variant="transformer", size="debug"), data_sizes={"channels": 4})
    task.configure_model()
    return task


def test_warmup_is_linear_then_cosine_reaches_the_floor_and_stays():
    factors = [warmup_cosine_factor(s, warmup_steps=4, total_steps=14, min_lr_ratio=0.1) for s in range(20)]
    assert factors[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert factors[4] == pytest.approx(1.0)
    assert factors[9] == pytest.approx(0.55)  # halfway down the cosine: (1 + 0.1) / 2
    assert all(a > b for a, b in zip(factors[4:14], factors[5:15]))
    assert factors[14:] == pytest.approx([0.1] * 6)
    assert warmup_cosine_factor(100, 4, None, 0.1) == 1.0


def test_scheduler_follows_the_factor_and_restores_its_horizon():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    scheduler = WarmupCosine(optimizer, warmup_steps=2, total_steps=None)
    scheduler.total_steps = 10  # what TitansTask.configure_optimizers fills in from the trainer
    lrs = []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([2.0 * warmup_cosine_factor(s, 2, 10, 0.1) for s in range(6)])

    restored = WarmupCosine(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0), total_steps=None)
    restored.load_state_dict(scheduler.state_dict())
    assert (restored.total_steps, restored.warmup_steps, restored.last_epoch) == (10, 2, 6)


def test_parameter_groups_decay_matrices_only_and_cover_every_parameter_once():
    task = make_task()
    decayed, plain = task.parameter_groups()
    assert "weight_decay" not in decayed and plain["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decayed["params"]) and all(p.ndim < 2 for p in plain["params"])
    grouped = [id(p) for g in (decayed, plain) for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in task.parameters()) and len(set(grouped)) == len(grouped)


def test_configure_model_is_idempotent():
    task = make_task()
    modules = (task.backbone, task.head, task.metrics)
    task.configure_model()
    assert (task.backbone, task.head, task.metrics) == modules


def test_base_task_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        TitansTask(TitansConfig(variant="transformer"))


def test_forward_returns_the_loss_of_a_batch():
    task = make_task()
    x = torch.randn(2, 8, 4)
    loss, prediction = task((x, x))
    assert prediction.shape == (2, 8, 4) and loss.ndim == 0 and math.isfinite(loss.item())


def test_a_baseline_stands_on_the_harness_without_a_backbone():
    task = ScaleBaseline(data_sizes={"channels": 3})
    assert task.hparams["data_sizes"] == {"channels": 3} and not hasattr(task, "backbone")
    task.configure_model()
    layers, metrics = task.scale, task.metrics
    task.configure_model()
    assert (task.scale, task.metrics) == (layers, metrics), "built once"
    assert {name: list(collection) for name, collection in task.metrics.items()} == {"val": ["val/mse"],
                                                                                   "test": ["test/mse"]}
    assert task.metrics["val"]["mse"] is not task.metrics["test"]["mse"], "one state per stage"
    x = torch.randn(2, 5, 3)
    loss, prediction = task((x, x))
    assert prediction.shape == (2, 5, 3) and loss.ndim == 0
    decayed, plain = task.parameter_groups()
    assert decayed["params"] == [task.scale.weight] and plain["params"] == [task.scale.bias]
    assert issubclass(TitansTask, Task) and (task.monitor, task.monitor_mode) == ("val/mse", "min")

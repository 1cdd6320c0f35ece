"""The write-rate penalty (``NeedleTask(write_penalty=...)``) and the collector behind it."""

from __future__ import annotations

import pytest
import torch

from datamodules.text import NeedleDataModule
from titans_lightning.backbone import TitansConfig
from titans_lightning.memory import NeuralMemory
from titans_lightning.tasks.longctx import NeedleTask
from titans_lightning.tasks.write_rate import collect_write_rates, mean_write_rate


def make_task(variant: str, **kwargs) -> NeedleTask:
    torch.manual_seed(0)
    task = NeedleTask(TitansConfig(variant=variant, size="debug"), data_sizes={"vocab_size": 257}, **kwargs)
    task.configure_model()
    with torch.no_grad():  # gates that differ by token, so a mean is not the same as any one value
        for memory in memories(task):
            memory.to_gates.weight.normal_(0.0, 0.1)
    return task


def memories(task: NeedleTask) -> list[NeuralMemory]:
    return [m for m in task.backbone.modules() if isinstance(m, NeuralMemory)]


def batch(length: int = 160) -> dict[str, torch.Tensor]:
    dm = NeedleDataModule(train_length=length, train_samples=2, batch_size=2, eval_lengths=[length])
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


@pytest.mark.parametrize("variant", ["mac", "lmm", "mag"])
def test_each_write_records_the_mean_of_theta_over_max_lr(variant):
    task = make_task(variant)
    inputs = []
    hooks = [m.register_forward_hook(lambda m, args, out: inputs.append((m, args[0]))) for m in memories(task)]
    with collect_write_rates(task.backbone) as rates:
        task.hidden_states(task.head.embed(batch()["input"]))
    for hook in hooks:
        hook.remove()
    assert len(rates) == len(inputs) >= 1
    thetas = []
    for rate, (memory, x) in zip(rates, inputs):
        theta = memory._gates(x)[0] / memory.max_lr  # (B*H, T)
        torch.testing.assert_close(rate.sort().values, theta.flatten().sort().values)
        thetas.append(theta.flatten())
    torch.testing.assert_close(mean_write_rate(rates), torch.cat(thetas).mean())  # every token counts once
    assert 0.0 < float(mean_write_rate(rates).detach()) < 1.0


def test_hooks_are_removed_after_the_block_and_reads_record_nothing():
    task = make_task("mac")
    with collect_write_rates(task.backbone) as rates:
        pass
    assert rates == [] and all(not m.to_gates._forward_hooks for m in memories(task))
    x = torch.randn(2, 16, task.backbone.config.dim)
    with collect_write_rates(task.backbone) as rates:
        memories(task)[0].retrieve(x)
    assert rates == []


def test_the_penalty_adds_its_weight_times_the_mean_rate_to_the_loss():
    data = batch()
    plain = make_task("mac", context_loss_weight=0.5, tbptt_segment=64)
    with collect_write_rates(plain.backbone) as rates:
        loss = plain.compute_loss(data)[0]
    penalised = make_task("mac", context_loss_weight=0.5, tbptt_segment=64, write_penalty=0.3).compute_loss(data)[0]
    tokens = data["input"].numel() * plain.backbone.config.memory_heads
    assert sum(r.numel() for r in rates) == tokens * len(memories(plain))  # each token written once
    torch.testing.assert_close(penalised, loss + 0.3 * mean_write_rate(rates))


def test_training_on_the_penalty_alone_lowers_the_write_rate():
    task = make_task("lmm", write_penalty=1.0)
    data = batch()
    optimizer = torch.optim.SGD([p for m in memories(task) for p in m.to_gates.parameters()], lr=5.0)
    before = None
    for _ in range(3):
        with collect_write_rates(task.backbone) as rates:
            task.hidden_states(task.head.embed(data["input"]))
        rate = mean_write_rate(rates)
        before = float(rate) if before is None else before
        optimizer.zero_grad()
        rate.backward()
        optimizer.step()
    with torch.no_grad(), collect_write_rates(task.backbone) as rates:
        task.hidden_states(task.head.embed(data["input"]))
    assert float(mean_write_rate(rates)) < before - 0.05


def test_a_model_without_memory_gets_no_penalty():
    data = batch()
    plain = make_task("swa").compute_loss(data)[0]
    penalised = make_task("swa", write_penalty=1.0).compute_loss(data)[0]
    torch.testing.assert_close(penalised, plain)


def test_a_negative_penalty_is_refused():
    with pytest.raises(ValueError, match="write_penalty >= 0, got -0.1"):
        make_task("lmm", write_penalty=-0.1)

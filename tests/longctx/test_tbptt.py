"""Truncated backpropagation through the streaming state (``NeedleTask(tbptt_segment=N)``): the
loss has the full forward's value, and no gradient crosses a segment boundary."""

from __future__ import annotations

import pytest
import torch

from datamodules.text import NeedleDataModule
from titans_lightning.backbone import TitansConfig
from titans_lightning.tasks.longctx import NeedleTask


def make_task(variant: str, **kwargs) -> NeedleTask:
    torch.manual_seed(0)
    task = NeedleTask(TitansConfig(variant=variant, size="debug"), data_sizes={"vocab_size": 257}, **kwargs)
    task.configure_model()
    return task


def batch(length: int = 200) -> dict[str, torch.Tensor]:
    dm = NeedleDataModule(train_length=length, train_samples=2, batch_size=2, eval_lengths=[length])
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


@pytest.mark.parametrize("variant", ["mac", "lmm", "mag"])
def test_the_segmented_loss_equals_the_full_forward(variant):
    data = batch()
    full = make_task(variant, context_loss_weight=0.5).compute_loss(data)[0]
    segmented = make_task(variant, context_loss_weight=0.5, tbptt_segment=37).compute_loss(data)[0]
    torch.testing.assert_close(segmented, full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", ["mac", "lmm"])
def test_no_gradient_crosses_a_segment_boundary(variant):
    """The answer at the end depends on the first segment's tokens through the memory; with the
    state detached at the boundary, its gradient there is exactly zero (and not without the cut)."""
    tokens = batch()["input"]
    grads = {}
    for segment in (None, 64):
        task = make_task(variant, tbptt_segment=segment)
        x = task.head.embed(tokens).detach().requires_grad_()
        task.hidden_states(x)[:, -5:].square().sum().backward()  # the last segment's outputs only
        grads[segment] = x.grad
    last = (tokens.shape[1] - 1) // 64 * 64
    assert grads[64][:, :last].abs().max() == 0 and grads[64][:, last:].abs().max() > 0
    assert grads[None][:, :64].abs().max() > 0  # the memory carries the first segment to the end


def test_a_segmented_training_step_updates_every_trained_parameter():
    task = make_task("mac", tbptt_segment=50, context_loss_weight=1.0)
    loss, _ = task.compute_loss(batch())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in task.parameters() if p.requires_grad)


def test_a_bad_segment_is_refused():
    with pytest.raises(ValueError, match="tbptt_segment >= 1 or None, got 0.0, 1024 and 0"):
        make_task("swa", tbptt_segment=0)

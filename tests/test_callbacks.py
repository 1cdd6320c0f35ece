"""The small shared callbacks (the checkpoint with a few steps of a one-weight model)."""

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

from titans_lightning.callbacks import BestAndLastCheckpoint, MatmulPrecision
from titans_lightning.safe_load import load_checkpoint


@pytest.mark.parametrize("before, precision", [("highest", "high"), ("high", "medium"), ("medium", "highest")])
def test_matmul_precision_sets_the_float32_matmul_precision(before, precision):
    saved = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision(before)
        MatmulPrecision(precision).setup(trainer=None, pl_module=None, stage="fit")
        assert torch.get_float32_matmul_precision() == precision
    finally:
        torch.set_float32_matmul_precision(saved)


def test_matmul_precision_defaults_to_tf32():
    assert MatmulPrecision().precision == "high"


class _ScriptedValidation(LightningModule):
    """A one-weight model whose ``val/loss`` follows ``losses``, one value per validation."""

    def __init__(self, losses):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.losses = list(losses)
        self.validations = 0

    def training_step(self, batch, batch_idx):
        return (self.weight - batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.losses[self.validations])

    def on_validation_epoch_end(self):
        self.validations += 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit_with(checkpoint, tmp_path, losses, per_epoch):
    """Two steps between validations: within one long epoch, or one validation per 2-step epoch."""
    data = DataLoader(TensorDataset(torch.ones(2 if per_epoch else 8, 1)), batch_size=1)
    schedule = {"max_epochs": len(losses)} if per_epoch else {"max_steps": 2 * len(losses), "val_check_interval": 2}
    trainer = Trainer(default_root_dir=tmp_path, **schedule, limit_val_batches=1, num_sanity_val_steps=0,
                      callbacks=[checkpoint], logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(_ScriptedValidation(losses), data, DataLoader(TensorDataset(torch.ones(1, 1))))
    return load_checkpoint(tmp_path / "last.ckpt")


@pytest.mark.parametrize("per_epoch", [False, True], ids=["within-an-epoch", "once-per-epoch"])
@pytest.mark.parametrize("losses", [[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 0.5, 2.0]])
def test_last_checkpoint_is_the_last_validated_step_whether_or_not_the_monitor_improved(tmp_path, losses,
                                                                                         per_epoch):
    checkpoint = BestAndLastCheckpoint(dirpath=tmp_path, monitor="val/loss", mode="min", filename="best",
                                       save_top_k=1, save_last=True)
    last = _fit_with(checkpoint, tmp_path, losses, per_epoch)
    assert last["global_step"] == 2 * len(losses)
    best_step = 2 * (losses.index(min(losses)) + 1)
    assert load_checkpoint(tmp_path / "best.ckpt")["global_step"] == best_step

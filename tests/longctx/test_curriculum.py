"""Length curricula: ``grow`` switches stages at equal fractions of the steps (read from the
trainer, with gradient accumulation), ``mix`` draws each batch's length uniformly, a batch always
has one length, samples depend only on (seed, split, index, length), and a debug ``titans fit``
with a curriculum, the multi-key task and truncated backpropagation trains through the CLI."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from lightning.pytorch import Callback, Trainer

from datamodules.text.niah import NeedleDataModule
from datamodules.text.niah_curriculum import batch_lengths, grow_stage
from titans_lightning.backbone import TitansConfig
from titans_lightning.cli import main
from titans_lightning.runs import QUIET, read_metrics, series
from titans_lightning.tasks.longctx import NeedleTask

REPO = Path(__file__).resolve().parents[2]


def lengths_of(loader) -> list[int]:
    return [batch["input"].shape[1] for batch in loader]


def test_grow_stages_are_equal_fractions_of_the_steps():
    assert [grow_stage(s, 9, 3) for s in range(11)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
    assert [grow_stage(s, 4, 3) for s in range(5)] == [0, 0, 1, 2, 2]


def test_grow_without_a_trainer_follows_the_batches_from_step_zero():
    dm = NeedleDataModule(train_lengths=[110, 120, 130], curriculum="grow", curriculum_steps=6, batch_size=2,
                          train_samples=20, eval_lengths=[110], shuffle=False)
    dm.setup("fit")
    assert lengths_of(dm.train_dataloader()) == [110] * 2 + [120] * 2 + [130] * 6  # steps past 6: the last stage


def test_grow_reads_the_trainers_step_and_gradient_accumulation():
    dm = NeedleDataModule(train_lengths=[110, 120, 130], curriculum="grow", batch_size=2, train_samples=16,
                          eval_lengths=[110])
    dm.trainer = SimpleNamespace(global_step=1, accumulate_grad_batches=2, max_steps=6, distributed_sampler_kwargs=None)
    dm.setup("fit")
    loader = dm.train_dataloader()  # 8 batches: steps 1, 1, 2, 2, 3, 3, 4, 4 of 6 (stages of 2 steps)
    assert lengths_of(loader) == [110] * 2 + [120] * 4 + [130] * 2
    dm.trainer.global_step = 5  # the next epoch starts where the steps are
    assert lengths_of(loader) == [130] * 8


class RecordLengths(Callback):
    """(global step, context length) of every training batch."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append((trainer.global_step, batch["input"].shape[1]))


@pytest.mark.parametrize("accumulate", [1, 2])
def test_grow_switches_lengths_at_the_stage_boundaries_of_a_real_fit(accumulate):
    torch.manual_seed(0)
    task = NeedleTask(TitansConfig(variant="swa", size="debug"), data_sizes={"vocab_size": 257})
    dm = NeedleDataModule(train_lengths=[110, 120, 130], curriculum="grow", batch_size=2, train_samples=8,
                          eval_lengths=[110])
    record = RecordLengths()
    trainer = Trainer(max_steps=6, accumulate_grad_batches=accumulate, limit_val_batches=0, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[record], accelerator="cpu")
    trainer.fit(task, dm)  # 4 batches per epoch: the stages span epochs
    assert len(record.seen) == 6 * accumulate
    assert all(length == (110, 120, 130)[step // 2] for step, length in record.seen), record.seen


def test_mix_draws_each_batch_length_uniformly_and_deterministically():
    lengths = [110, 120, 130]
    drawn = batch_lengths(lengths, "mix", 600, seed=0)
    assert drawn == batch_lengths(lengths, "mix", 600, seed=0) != batch_lengths(lengths, "mix", 600, seed=1)
    assert drawn[:50] == batch_lengths(lengths, "mix", 50, seed=0)  # batch b's length: a function of b alone
    counts = Counter(drawn)
    assert set(counts) == set(lengths) and all(150 < c < 250 for c in counts.values()), counts
    dm = NeedleDataModule(train_lengths=lengths, curriculum="mix", batch_size=3, train_samples=30, eval_lengths=[110])
    dm.setup("fit")
    for batch in dm.train_dataloader():
        assert batch["input"].shape[0] == 3 and batch["input"].shape[1] in lengths


def test_a_grow_batch_is_the_same_samples_at_every_length():
    dm = NeedleDataModule(train_lengths=[110, 200], curriculum="grow", curriculum_steps=4, batch_size=2,
                          train_samples=8, eval_lengths=[110])
    dm.setup("fit")
    batches = dm.datasets["train"]
    short, long, again = batches[2 * 2], batches[2 * 2 + 1], batches[2 * 2 + 1]  # batch 2 at each length
    assert short["input"].shape == (2, 110) and long["input"].shape == (2, 200)
    assert torch.equal(long["input"], again["input"])  # (seed, split, index, length) -> one sample
    answers = [b["target"][b["loss_mask"]] for b in (short, long)]
    assert torch.equal(*answers)  # the same pass keys: only the haystack around them grew


@pytest.mark.parametrize("kwargs,message", [
    ({"curriculum": "shrink"}, "curriculum: expected one of ['cycle', 'grow', 'mix']"),
    ({"curriculum_steps": 0}, "curriculum_steps: expected >= 1 or None"),
    ({"train_lengths": [512, 64]}, "lengths [64] cannot hold"),
], ids=["curriculum", "steps", "too-short"])
def test_bad_curriculum_arguments_raise_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        NeedleDataModule(**kwargs)


def test_grow_without_steps_says_what_to_set():
    dm = NeedleDataModule(train_lengths=[110, 120], curriculum="grow", batch_size=2, train_samples=4,
                          eval_lengths=[110])
    dm.setup("fit")
    with pytest.raises(ValueError, match="set curriculum_steps or trainer.max_steps"):
        dm.train_dataloader()


def test_train_lengths_replace_a_recipes_train_length():
    dm = NeedleDataModule(train_length=128, train_lengths=[256, 512], eval_lengths=[128])
    assert dm.train_lengths == [256, 512]


def test_a_cli_fit_with_a_grow_curriculum_the_multikey_task_and_tbptt_trains(tmp_path: Path):
    main(["fit", "-c", str(REPO / "recipes/longctx/debug.yaml"), "--trainer.default_root_dir", str(tmp_path),
          "--data.task", "multikey", "--data.train_lengths", "[320, 352]", "--data.curriculum", "grow",
          "--data.batch_size", "2", "--data.eval_lengths", "[320]", "--data.depths", "[0.5]",
          "--data.samples_per_cell", "1", "--trainer.max_steps", "4", "--trainer.val_check_interval", "4",
          "--model.tbptt_segment", "128", *QUIET])
    run = tmp_path / "csv" / "version_0"
    config = yaml.safe_load((run / "config.yaml").read_text())
    data = config["data"]["init_args"]
    assert data["task"] == "multikey" and data["curriculum"] == "grow" and data["train_lengths"] == [320, 352]
    assert config["model"]["init_args"]["tbptt_segment"] == 128
    metrics = read_metrics(run)
    assert len(series(metrics, "train/loss")) == 4 and "val/needle_acc/320" in metrics[0]
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "figures" / "needle_val-step4-time.md").is_file()

"""Long context: needle-in-a-haystack training and exact-match evaluation through the streaming state.

Shape legend: B batch, T tokens, P prompt tokens, A answer tokens, V vocabulary.

Batch contract: ``datamodules/text/niah.py``. Training batches are the LM task's (``input``, ``target``,
``target_bytes``) plus ``loss_mask`` (B, T), True on answer targets; evaluation batches add
``answer`` (B, A), ``prompt_len``, ``length`` and ``depth`` (B,). :class:`NeedleTask` trains on the
answer tokens (optionally plus a share of the ordinary next-token loss) and evaluates the way a
long context is used: the haystack is read ``eval_chunk`` tokens at a time through the backbone's
state, then the answer is decoded greedily, one token per step, and scored by exact match. No
evaluation forward ever holds more than ``eval_chunk`` tokens, so memory stays flat with length
(for all variants but the transformer, whose cache grows).
"""

from __future__ import annotations

import os
from typing import Any, Optional

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from titans_lightning.backbone import TitansConfig
from titans_lightning.callbacks import FigureLogger
from titans_lightning.streaming import answer_nll, greedy_answer, read_prompt
from titans_lightning.tasks.lm import LanguageModelingTask
from titans_lightning.tasks.schedules import AdamW, WarmupCosine


def answer_span(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """``(prompt (B, P), answer (B, A))`` of an evaluation batch: what the model reads before
    answering (``input[:, :prompt_len]``) and the tokens it must then generate."""
    prompt_len = int(batch["prompt_len"][0])
    if not bool((batch["prompt_len"] == prompt_len).all()):
        raise ValueError(f"answer_span: the samples of a batch must share their prompt length, got "
                         f"{batch['prompt_len'].tolist()}")
    return batch["input"][:, :prompt_len], batch["answer"]


def exact_match(generated: Tensor, answer: Tensor) -> Tensor:
    """(B,) bool: every one of the A generated tokens (B, A) equals the answer's (B, A)."""
    if generated.shape != answer.shape:
        raise ValueError(f"exact_match: generated {tuple(generated.shape)} and answer {tuple(answer.shape)} differ")
    return (generated == answer).all(-1)


class NeedleAccuracy(Metric):
    """Exact-match accuracy overall and by (context length, needle depth) cell.

    Keeps one record per sample (length, depth, correct), so the grid need not be known in
    advance; ``compute()`` is the overall accuracy and :meth:`table` the grid.
    """

    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("lengths", "depths", "correct"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, correct: Tensor, lengths: Tensor, depths: Tensor) -> None:
        """correct: (B,) bool; lengths: (B,) int; depths: (B,) float."""
        self.correct.append(correct.float())
        self.lengths.append(lengths.long())
        self.depths.append(depths.float())

    def compute(self) -> Tensor:
        return dim_zero_cat(self.correct).mean() if self.correct else torch.tensor(float("nan"))

    def table(self) -> tuple[list[int], list[float], Tensor, Tensor]:
        """``(lengths, depths, accuracy (L, D), counts (L, D))`` over every record (synced
        across processes); a cell without samples has accuracy NaN."""
        with self.sync_context(should_unsync=True):
            if not self.correct:
                return [], [], torch.zeros(0, 0), torch.zeros(0, 0)
            correct, lengths, depths = (dim_zero_cat(x).cpu() for x in (self.correct, self.lengths, self.depths))
        rows, row = lengths.unique(sorted=True, return_inverse=True)
        cols, col = (depths * 1e4).round().unique(sorted=True, return_inverse=True)
        cell = row * cols.numel() + col
        counts = torch.zeros(rows.numel() * cols.numel()).index_add_(0, cell, torch.ones_like(correct))
        hits = torch.zeros_like(counts).index_add_(0, cell, correct)
        accuracy = hits / counts.masked_fill(counts == 0, float("nan"))
        shape = (rows.numel(), cols.numel())
        return rows.tolist(), (cols / 1e4).tolist(), accuracy.view(shape), counts.view(shape)


def format_table(lengths: list[int], depths: list[float], accuracy: Tensor) -> str:
    """A markdown table: one row per context length, one column per depth, then the row mean (%)."""
    head = "| length | " + " | ".join(f"depth {d:g}" for d in depths) + " | mean |"
    rule = "|---:|" + "---:|" * (len(depths) + 1)
    rows = [f"| {n:,} | " + " | ".join(f"{100 * a:.1f}" for a in acc.tolist()) + f" | {100 * acc.nanmean():.1f} |"
            for n, acc in zip(lengths, accuracy)]
    return "\n".join([head, rule, *rows])


class NeedleTask(LanguageModelingTask):
    """A language model trained to answer needle questions and scored by exact match.

    Args:
        backbone, optimizer, lr_scheduler, data_sizes, tie_weights, max_new_tokens, temperature,
            top_k: see :class:`LanguageModelingTask` (sampling settings apply to ``titans predict``;
            the needle evaluation always decodes greedily).
        context_loss_weight: weight of the ordinary next-token loss over every token, added to the
            loss on the answer tokens (0 = answer tokens only).
        eval_chunk: tokens per backbone call while reading an evaluation haystack.

    Logged: ``train/loss``; ``val/loss`` (answer tokens, teacher-forced through the streaming
    state), ``val/needle_acc`` (exact match, the checkpoint monitor) and
    ``val/needle_acc/<length>`` per context length; the same under ``test/``.
    """

    monitor = "val/needle_acc"
    monitor_mode = "max"

    def __init__(
        self,
        backbone: TitansConfig,
        optimizer: OptimizerCallable = AdamW,
        lr_scheduler: Optional[LRSchedulerCallable] = WarmupCosine,
        data_sizes: Optional[dict[str, int]] = None,
        tie_weights: bool = True,
        max_new_tokens: int = 16,
        temperature: float = 0.0,
        top_k: Optional[int] = None,
        context_loss_weight: float = 0.0,
        eval_chunk: int = 1024,
        activation_checkpointing: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__(backbone, optimizer, lr_scheduler, data_sizes, tie_weights, max_new_tokens, temperature, top_k,
                         activation_checkpointing, compile)
        if context_loss_weight < 0 or eval_chunk < 1:
            raise ValueError(f"NeedleTask: expected context_loss_weight >= 0 and eval_chunk >= 1, got "
                             f"{context_loss_weight} and {eval_chunk}")
        self.context_loss_weight, self.eval_chunk = context_loss_weight, eval_chunk

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Mean cross-entropy over the answer tokens (``loss_mask``), plus ``context_loss_weight``
        times the mean over every token; outputs = (logits (B, T, V), per-token nll (B, T))."""
        if "loss_mask" not in batch:
            raise KeyError("NeedleTask: the batch has no 'loss_mask' (expected the needle DataModule's batches)")
        _, (logits, nll) = super().compute_loss(batch)
        mask = batch["loss_mask"]
        loss = (nll * mask).sum() / mask.sum().clamp_min(1)
        if self.context_loss_weight:
            loss = loss + self.context_loss_weight * nll.mean()
        return loss, (logits, nll)

    def build_metrics(self) -> dict[str, Metric]:
        return {"needle_acc": NeedleAccuracy()}

    def answer(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``(greedy answer (B, A), teacher-forced answer nll (B, A))`` of an evaluation batch,
        reading its prompts ``eval_chunk`` tokens at a time (never a full-length forward)."""
        prompt, answer = answer_span(batch)
        hidden, state = read_prompt(self.head, self.backbone, prompt, self.eval_chunk)
        nll = answer_nll(self.head, self.backbone, hidden, state, answer)
        return greedy_answer(self.head, self.backbone, hidden, state, answer.shape[1]), nll

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.evaluate_needles(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.evaluate_needles(batch, "test")

    def evaluate_needles(self, batch: dict[str, Tensor], stage: str) -> None:
        generated, nll = self.answer(batch)
        correct = exact_match(generated, batch["answer"])
        self.metrics[stage]["needle_acc"].update(correct, batch["length"], batch["depth"])
        self.log(f"{stage}/loss", nll.mean(), prog_bar=True, sync_dist=True, batch_size=nll.shape[0])

    def needle_table(self, stage: str) -> tuple[list[int], list[float], Tensor, Tensor]:
        """The accuracy grid of the latest ``stage`` evaluation (see :meth:`NeedleAccuracy.table`)."""
        return self.metrics[stage]["needle_acc"].table()

    # The grid is reset when an evaluation starts (not by Lightning at its end), so callbacks can
    # read the finished grid in their own epoch-end hooks, whatever order the hooks run in.
    def on_validation_epoch_start(self) -> None:
        self.metrics["val"]["needle_acc"].reset()

    def on_test_epoch_start(self) -> None:
        self.metrics["test"]["needle_acc"].reset()

    def on_validation_epoch_end(self) -> None:
        self.log_needle_accuracy("val")

    def on_test_epoch_end(self) -> None:
        self.log_needle_accuracy("test")

    def log_needle_accuracy(self, stage: str) -> None:
        lengths, _, accuracy, counts = self.needle_table(stage)
        if not lengths:
            return
        hits = (accuracy.nan_to_num(0.0) * counts).sum(1)
        self.log(f"{stage}/needle_acc", hits.sum() / counts.sum(), prog_bar=True)
        for length, row_hits, row_counts in zip(lengths, hits, counts.sum(1)):
            self.log(f"{stage}/needle_acc/{length}", row_hits / row_counts)


class NeedleHeatmap(FigureLogger):
    """After each validation (and after ``titans test``), a heatmap of exact-match accuracy by
    context length (rows) and needle depth (columns), saved as ``figures/needle_<stage>-stepN.png``
    (and to W&B), with the same grid as a markdown table ``figures/needle_<stage>-stepN.md``,
    which is also printed."""

    def make_figures(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        return self.figures(pl_module, "val", trainer.global_step)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            for name, figure in self.figures(pl_module, "test", trainer.global_step).items():
                self.save_png(name, figure, trainer.global_step)

    def figures(self, pl_module: LightningModule, stage: str, step: int) -> dict[str, Any]:
        lengths, depths, accuracy, _ = pl_module.needle_table(stage)
        if not lengths:
            return {}
        table = format_table(lengths, depths, accuracy)
        folder = os.path.join(self.run_dir or ".", "figures")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"needle_{stage}-step{step}.md"), "w") as f:
            f.write(table + "\n")
        rank_zero_info(f"needle accuracy ({stage}, step {step}, %):\n{table}")
        return {f"needle_{stage}": heatmap(lengths, depths, accuracy, f"S-NIAH exact match ({stage}, step {step})")}


def heatmap(lengths: list[int], depths: list[float], accuracy: Tensor, title: str):
    """A matplotlib Figure: accuracy (L, D) in [0, 1] as colours, each cell annotated in %."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(1.2 + 0.9 * len(depths), 1.0 + 0.5 * len(lengths)), layout="constrained")
    ax = figure.add_subplot()
    image = ax.imshow(accuracy.numpy(), vmin=0.0, vmax=1.0, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(depths)), [f"{d:g}" for d in depths])
    ax.set_yticks(range(len(lengths)), [f"{n:,}" for n in lengths])
    ax.set_xlabel("needle depth")
    ax.set_ylabel("context length (tokens)")
    ax.set_title(title, fontsize=9)
    for i, row in enumerate(accuracy.tolist()):
        for j, value in enumerate(row):
            ax.text(j, i, "-" if value != value else f"{100 * value:.0f}", ha="center", va="center", fontsize=8)
    figure.colorbar(image, ax=ax, label="accuracy")
    return figure

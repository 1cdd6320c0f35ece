"""Long context: needle-in-a-haystack training and exact-match evaluation through the streaming state.

Shape legend: B batch, T tokens, P prompt tokens, A answer tokens, V vocabulary.

Batch contract: ``datamodules/text/niah.py``. Training batches are the LM task's (``input``, ``target``,
``target_bytes``) plus ``loss_mask`` (B, T), True on answer targets; evaluation batches add
``answer`` (B, A), ``prompt_len``, ``length`` and ``depth`` (B,). :class:`NeedleTask` trains on the
answer tokens (optionally plus a share of the ordinary next-token loss) and evaluates the way a
long context is used: the haystack is read ``eval_chunk`` tokens at a time through the backbone's
state, then the answer is decoded greedily, one token per step, and scored by exact match. No
evaluation forward ever holds more than ``eval_chunk`` tokens, so memory stays flat with length
(for all variants but the transformer, whose cache grows). The same holds for every needle task
of the DataModule (single, multi-key, multi-value: the answer tokens are whatever the sample asks,
a multi-value answer its whole list). :class:`NeedleAccuracy` also records the seconds each
(length, depth) cell took to evaluate.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from titans_lightning.backbone import TitansConfig
from titans_lightning.callbacks import FigureLogger
from titans_lightning.streaming import answer_nll, greedy_answer, read_prompt
from titans_lightning.tasks.lm import LanguageModelingTask
from titans_lightning.tasks.schedules import AdamW, WarmupCosine
from titans_lightning.tasks.warm_start import load_weights
from titans_lightning.tasks.write_rate import collect_write_rates, mean_write_rate


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
    """Exact-match accuracy overall and by (context length, needle depth) cell, and the seconds
    each cell took to evaluate.

    Keeps one record per sample (length, depth, correct, seconds), so the grid need not be known
    in advance; ``compute()`` is the overall accuracy, :meth:`table` the grid and
    :meth:`seconds_table` the time per cell.
    """

    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("lengths", "depths", "correct", "seconds"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, correct: Tensor, lengths: Tensor, depths: Tensor, seconds: Optional[Tensor] = None) -> None:
        """correct: (B,) bool; lengths: (B,) int; depths: (B,) float; seconds: (B,) float spent on
        each sample (None = 0)."""
        self.correct.append(correct.float())
        self.lengths.append(lengths.long())
        self.depths.append(depths.float())
        self.seconds.append(torch.zeros_like(depths, dtype=torch.float32) if seconds is None else seconds.float())

    def compute(self) -> Tensor:
        return dim_zero_cat(self.correct).mean() if self.correct else torch.tensor(float("nan"))

    def cell_sums(self) -> tuple[list[int], list[float], Tensor, Tensor, Tensor]:
        """``(lengths, depths, hits (L, D), counts (L, D), seconds (L, D))`` summed per cell over
        every record (synced across processes)."""
        with self.sync_context(should_unsync=True):
            if not self.correct:
                return [], [], torch.zeros(0, 0), torch.zeros(0, 0), torch.zeros(0, 0)
            records = (self.correct, self.lengths, self.depths, self.seconds)
            correct, lengths, depths, seconds = (dim_zero_cat(x).cpu() for x in records)
        rows, row = lengths.unique(sorted=True, return_inverse=True)
        cols, col = (depths * 1e4).round().unique(sorted=True, return_inverse=True)
        cell, shape = row * cols.numel() + col, (rows.numel(), cols.numel())
        hits, counts, spent = (torch.zeros(shape).view(-1).index_add_(0, cell, x).view(shape)
                               for x in (correct, torch.ones_like(correct), seconds))
        return rows.tolist(), (cols / 1e4).tolist(), hits, counts, spent

    def table(self) -> tuple[list[int], list[float], Tensor, Tensor]:
        """``(lengths, depths, accuracy (L, D), counts (L, D))`` over every record (synced
        across processes); a cell without samples has accuracy NaN."""
        lengths, depths, hits, counts, _ = self.cell_sums()
        return lengths, depths, hits / counts.masked_fill(counts == 0, float("nan")), counts

    def seconds_table(self) -> Tensor:
        """(L, D) seconds spent evaluating each cell of :meth:`table`'s grid."""
        return self.cell_sums()[4]


def format_table(lengths: list[int], depths: list[float], accuracy: Tensor) -> str:
    """A markdown table: one row per context length, one column per depth, then the row mean (%)."""
    head = "| length | " + " | ".join(f"depth {d:g}" for d in depths) + " | mean |"
    rule = "|---:|" + "---:|" * (len(depths) + 1)
    rows = [f"| {n:,} | " + " | ".join(f"{100 * a:.1f}" for a in acc.tolist()) + f" | {100 * acc.nanmean():.1f} |"
            for n, acc in zip(lengths, accuracy)]
    return "\n".join([head, rule, *rows])


def samples_per_cell(counts: Tensor) -> str:
    """The sample count of a row's cells: one number when they agree, else each, by depth."""
    values = sorted({int(c) for c in counts.tolist()})
    return str(values[0]) if len(values) == 1 else "/".join(str(int(c)) for c in counts.tolist())


def seconds_text(seconds: float) -> str:
    """Seconds to two decimals below 10, whole above."""
    return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.0f}"


def format_timed_table(lengths: list[int], depths: list[float], accuracy: Tensor, counts: Tensor, seconds: Tensor,
                       not_run: Sequence[int] = ()) -> str:
    """A markdown table: per context length the samples per cell, then per depth ``exact match %
    (seconds to evaluate the cell)``, the row's mean accuracy and its seconds; a length of
    ``not_run`` gets a row of ``not run (memory)``."""
    head = ("| length | samples per cell | " + " | ".join(f"depth {d:g}" for d in depths)
            + " | mean | seconds |")
    rows = {n: f"| {n:,} | {samples_per_cell(c)} | "
               + " | ".join(f"{100 * a:.1f} ({seconds_text(t)} s)" for a, t in zip(acc.tolist(), sec.tolist()))
               + f" | {100 * acc.nanmean():.1f} | {seconds_text(float(sec.sum()))} |"
            for n, acc, c, sec in zip(lengths, accuracy, counts, seconds)}
    skipped = " | ".join(["not run (memory)"] * len(depths))
    rows.update({n: f"| {n:,} | - | {skipped} | - | - |" for n in not_run if n not in rows})
    return "\n".join([head, "|---:|---:|" + "---:|" * (len(depths) + 2), *(rows[n] for n in sorted(rows))])


class NeedleTask(LanguageModelingTask):
    """A language model trained to answer needle questions and scored by exact match.

    Args:
        backbone, optimizer, lr_scheduler, data_sizes, tie_weights, max_new_tokens, temperature,
            top_k: see :class:`LanguageModelingTask` (sampling settings apply to ``titans predict``;
            the needle evaluation always decodes greedily).
        context_loss_weight: weight of the ordinary next-token loss over every token, added to the
            loss on the answer tokens (0 = answer tokens only).
        eval_chunk: tokens per backbone call while reading an evaluation haystack.
        activation_checkpointing, compile: see :class:`TitansTask`.
        tbptt_segment: truncated backpropagation through time: training reads a sequence in
            segments of this many tokens, the backbone state carried from one to the next and
            detached there, so no gradient crosses a segment boundary (the loss's value is the full
            forward's). Every segment's activations are still kept until the step's backward.
            None = one call over the whole sequence.
        pretrained: a checkpoint of this task or of ``LanguageModelingTask`` with the same
            backbone and vocabulary: its backbone and LM head weights are loaded when the model is
            built, the optimizer, step and schedule start fresh (to train on long haystacks from a
            model trained on short ones). A resumed or tested checkpoint of this run then
            overwrites them with its own weights.
        write_penalty: adds this times the memories' mean write rate (theta_t / max_lr over every
            memory, token and head of the step, see :mod:`write_rate`) to the training loss, so
            the memories learn to write little where the task needs nothing kept (the filler)
            and strongly where it does (the needle). 0 = the paper's loss.

    Logged: ``train/loss``, ``train/write_rate`` (the mean write rate, variants with a memory);
    ``val/loss`` (answer tokens, teacher-forced through the streaming
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
        tbptt_segment: Optional[int] = None,
        pretrained: Optional[str] = None,
        write_penalty: float = 0.0,
    ) -> None:
        super().__init__(backbone, optimizer, lr_scheduler, data_sizes, tie_weights, max_new_tokens, temperature, top_k,
                         activation_checkpointing, compile)
        if context_loss_weight < 0 or eval_chunk < 1 or (tbptt_segment is not None and tbptt_segment < 1):
            raise ValueError(f"NeedleTask: expected context_loss_weight >= 0, eval_chunk >= 1 and tbptt_segment >= 1 "
                             f"or None, got {context_loss_weight}, {eval_chunk} and {tbptt_segment}")
        if write_penalty < 0:
            raise ValueError(f"NeedleTask: expected write_penalty >= 0, got {write_penalty}")
        self.context_loss_weight, self.eval_chunk, self.tbptt_segment = context_loss_weight, eval_chunk, tbptt_segment
        self.write_penalty = write_penalty
        self.pretrained = pretrained

    def build_head(self) -> nn.Module:
        head = super().build_head()
        # Here, not in configure_model: the backbone exists and nothing is sharded yet.
        if self.pretrained:
            load_weights(self.pretrained, self.backbone, {"head.": head})
        return head

    def hidden_states(self, x: Tensor) -> Tensor:
        """(B, T, D) backbone output of embeddings x (B, T, D): one call, or ``tbptt_segment``
        tokens at a time with the state detached between segments (truncated backpropagation)."""
        if self.tbptt_segment is None:
            return self.backbone(x)[0]
        pieces, state = [], None
        for start in range(0, x.shape[1], self.tbptt_segment):
            hidden, state = self.backbone(x[:, start:start + self.tbptt_segment], state)
            pieces.append(hidden)
            state = state.detach()  # the cut: later segments see the state's value, not its graph
        return torch.cat(pieces, 1)

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Mean cross-entropy over the answer tokens (``loss_mask``), plus ``context_loss_weight``
        times the mean over every token, plus ``write_penalty`` times the mean write rate;
        outputs = (logits (B, T, V), per-token nll (B, T))."""
        if "loss_mask" not in batch:
            raise KeyError("NeedleTask: the batch has no 'loss_mask' (expected the needle DataModule's batches)")
        with collect_write_rates(self.backbone) as rates:
            hidden = self.hidden_states(self.head.embed(batch["input"]))
        logits = self.head.logits(hidden).float()  # fp32 softmax
        target = batch["target"]
        nll = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view_as(target)
        mask = batch["loss_mask"]
        loss = (nll * mask).sum() / mask.sum().clamp_min(1)
        if self.context_loss_weight:
            loss = loss + self.context_loss_weight * nll.mean()
        if rates:
            write_rate = mean_write_rate(rates)
            if self.training:
                self.log("train/write_rate", write_rate.detach(), sync_dist=True, batch_size=target.shape[0])
            if self.write_penalty:
                loss = loss + self.write_penalty * write_rate
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
        start = time.perf_counter()
        generated, nll = self.answer(batch)
        if generated.is_cuda:  # the kernels are asynchronous: time them to their end
            torch.cuda.synchronize(generated.device)
        seconds = torch.full_like(batch["depth"], (time.perf_counter() - start) / generated.shape[0])
        correct = exact_match(generated, batch["answer"])
        self.metrics[stage]["needle_acc"].update(correct, batch["length"], batch["depth"], seconds)
        self.log(f"{stage}/loss", nll.mean(), prog_bar=True, sync_dist=True, batch_size=nll.shape[0])

    def needle_table(self, stage: str) -> tuple[list[int], list[float], Tensor, Tensor]:
        """The accuracy grid of the latest ``stage`` evaluation (see :meth:`NeedleAccuracy.table`)."""
        return self.metrics[stage]["needle_acc"].table()

    def needle_seconds(self, stage: str) -> Tensor:
        """(L, D) seconds per cell of :meth:`needle_table`'s grid (the greedy answer's reading and
        decoding; a batch's time is shared equally by its samples)."""
        return self.metrics[stage]["needle_acc"].seconds_table()

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
    (and to W&B), with the same grid as a markdown table ``figures/needle_<stage>-stepN.md`` and,
    with the samples and seconds per cell, ``figures/needle_<stage>-stepN-time.md``, which is
    also printed."""

    def make_figures(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        return self.figures(pl_module, "val", trainer.global_step)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            for name, figure in self.figures(pl_module, "test", trainer.global_step).items():
                self.save_png(name, figure, trainer.global_step)

    def figures(self, pl_module: LightningModule, stage: str, step: int) -> dict[str, Any]:
        lengths, depths, accuracy, counts = pl_module.needle_table(stage)
        if not lengths:
            return {}
        timed = format_timed_table(lengths, depths, accuracy, counts, pl_module.needle_seconds(stage))
        folder = os.path.join(self.run_dir or ".", "figures")
        os.makedirs(folder, exist_ok=True)
        for suffix, table in (("", format_table(lengths, depths, accuracy)), ("-time", timed)):
            with open(os.path.join(folder, f"needle_{stage}-step{step}{suffix}.md"), "w") as f:
                f.write(table + "\n")
        rank_zero_info(f"needle accuracy ({stage}, step {step}, % (seconds per cell)):\n{timed}")
        return {f"needle_{stage}": heatmap(lengths, depths, accuracy, f"NIAH exact match ({stage}, step {step})")}


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

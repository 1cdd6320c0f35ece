"""Language modelling: next-token cross-entropy, bits per byte and perplexity, sampling.

Shape legend: B batch, T tokens, V vocabulary. The batch contract is the text DataModule's
(``datamodules/text/``): ``input``, ``target`` (B, T) and ``target_bytes`` (B, T), the UTF-8
bytes each target token stands for. The task never sees the tokenizer: bytes come with the batch,
and text is decoded by ``trainer.datamodule.decode`` in the callbacks below.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from typing import Any, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.text import Perplexity

from titans_lightning.backbone import TitansConfig
from titans_lightning.callbacks import run_directory
from titans_lightning.heads.lm import LMHead, generate
from titans_lightning.tasks.base import TitansTask
from titans_lightning.tasks.schedules import AdamW, WarmupCosine


class BitsPerByte(Metric):
    """Summed next-token loss in bits over the UTF-8 bytes the target tokens stand for.

    ``bpb = sum_t nll_t / ln 2 / sum_t bytes_t`` over tokens with ``bytes_t > 0`` (the end-of-
    document token stands for no text and is left out of both sums, as in nanochat). Independent
    of the tokenizer, so byte-level and BPE models compare directly.
    """

    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("nats", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("bytes", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, nll: Tensor, target_bytes: Tensor) -> None:
        """nll: (B, T) per-token loss in nats; target_bytes: (B, T) int."""
        counted = target_bytes > 0
        self.nats += nll.detach().double()[counted].sum()
        self.bytes += target_bytes.sum()

    def compute(self) -> Tensor:
        return (self.nats / math.log(2) / self.bytes.clamp(min=1)).float()


class LanguageModelingTask(TitansTask):
    """Token embedding + Titans backbone + LM head, trained with next-token cross-entropy.

    Args:
        backbone, optimizer, lr_scheduler, data_sizes: see :class:`TitansTask`
            (``data_sizes["vocab_size"]`` comes from the DataModule).
        tie_weights: share the embedding matrix with the output projection (saves V x D).
        max_new_tokens: tokens ``titans predict`` writes after each prompt.
        temperature: sampling temperature (0 = greedy).
        top_k: sample among the k most likely tokens (None = all).

    Logged: ``train/loss``, ``val/loss``, ``val/bpb`` (bits per byte, the checkpoint monitor),
    ``val/ppl`` (per-token perplexity), and the same under ``test/``.
    """

    monitor = "val/bpb"
    monitor_mode = "min"

    def __init__(
        self,
        backbone: TitansConfig,
        optimizer: OptimizerCallable = AdamW,
        lr_scheduler: Optional[LRSchedulerCallable] = WarmupCosine,
        data_sizes: Optional[dict[str, int]] = None,
        tie_weights: bool = True,
        max_new_tokens: int = 200,
        temperature: float = 0.8,
        top_k: Optional[int] = 40,
        activation_checkpointing: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__(backbone, optimizer, lr_scheduler, data_sizes,
                         activation_checkpointing=activation_checkpointing, compile=compile)
        if "vocab_size" not in self.data_sizes:
            raise ValueError("LanguageModelingTask: data_sizes needs 'vocab_size' (linked from the DataModule's "
                             f"data_sizes), got {self.data_sizes}")
        self.tie_weights = tie_weights
        self.max_new_tokens, self.temperature, self.top_k = max_new_tokens, temperature, top_k

    def build_head(self) -> nn.Module:
        return LMHead(self.data_sizes["vocab_size"], self.backbone_config.dim, self.tie_weights)

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Mean next-token cross-entropy; outputs = (logits (B, T, V), per-token nll (B, T))."""
        hidden, _ = self.backbone(self.head.embed(batch["input"]))
        logits = self.head.logits(hidden).float()  # the softmax in fp32 under mixed precision
        nll = F.cross_entropy(logits.flatten(0, 1), batch["target"].flatten(), reduction="none")
        nll = nll.view_as(batch["target"])
        return nll.mean(), (logits, nll)

    def build_metrics(self) -> dict[str, Metric]:
        return {"bpb": BitsPerByte(), "ppl": Perplexity()}

    def update_metrics(self, metrics: MetricCollection, outputs: tuple[Tensor, Tensor],
                       batch: dict[str, Tensor]) -> None:
        logits, nll = outputs
        metrics["bpb"].update(nll, batch["target_bytes"])
        metrics["ppl"].update(logits, batch["target"])

    def generate(self, prompt: Tensor, max_new_tokens: Optional[int] = None) -> Tensor:
        """(B, P) prompt -> (B, P + N) tokens, sampled with the task's temperature and top-k
        through the backbone's streaming state (the prompt is read once)."""
        n = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        return generate(self.head, self.backbone, prompt, n, self.temperature, self.top_k)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        """``{"index", "prompt_len", "tokens"}`` for a batch of prompts (one prompt per batch)."""
        return {"index": batch["index"], "prompt_len": batch["prompt"].shape[1],
                "tokens": self.generate(batch["prompt"])}


def decode_sample(trainer: Trainer, tokens: Sequence[int], prompt_len: int) -> tuple[str, str]:
    """``(prompt, continuation)`` texts of one generated sequence, via the DataModule's tokenizer."""
    decode = trainer.datamodule.decode
    return decode(tokens[:prompt_len]), decode(tokens[prompt_len:])


class GeneratedTextWriter(BasePredictionWriter):
    """Writes what ``titans predict`` generates: prompt and continuation of every prompt, printed
    and appended to ``output`` (default ``<run dir>/generated.txt``)."""

    def __init__(self, output: Optional[str] = None) -> None:
        super().__init__(write_interval="batch")
        self.output = output

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.output is None:
            self.output = f"{run_directory(trainer)}/generated.txt"

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: dict[str, Any],
                           batch_indices: Optional[Sequence[int]], batch: Any, batch_idx: int,
                           dataloader_idx: int = 0) -> None:
        for index, tokens in zip(prediction["index"].tolist(), prediction["tokens"].tolist()):
            prompt, continuation = decode_sample(trainer, tokens, prediction["prompt_len"])
            text = f"=== prompt {index}: {prompt!r}\n{prompt}{continuation}\n"
            print(text, flush=True)
            os.makedirs(os.path.dirname(os.path.abspath(self.output)), exist_ok=True)
            with open(self.output, "a", encoding="utf-8") as f:
                f.write(text)


class TextSampler(Callback):
    """After every ``every_n_evals``-th validation, prints ``val/bpb`` and a short sample.

    Every rank samples (the same number of model calls: under FSDP each forward needs all ranks);
    rank 0 prints its sample.
    """

    def __init__(self, prompt: str = "", max_new_tokens: int = 120, every_n_evals: int = 1) -> None:
        self.prompt, self.max_new_tokens, self.every_n_evals = prompt, max_new_tokens, every_n_evals
        self.evals = 0

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.evals += 1
        if (self.evals - 1) % self.every_n_evals:
            return
        tokenizer = trainer.datamodule.tokenizer
        ids = [tokenizer.eod_id, *tokenizer.encode(self.prompt).tolist()]
        prompt = torch.tensor([ids], device=pl_module.device)
        tokens = pl_module.generate(prompt, self.max_new_tokens)[0].tolist()
        if not trainer.is_global_zero:
            return
        bpb = trainer.callback_metrics.get("val/bpb")
        head = f"step {trainer.global_step}"
        if bpb is not None:
            head += f": val/bpb {float(bpb):.3f}"
        prompt_text, continuation = decode_sample(trainer, tokens, len(ids))
        sys.stdout.write(f"\n{head}\n{prompt_text}{continuation}\n")
        sys.stdout.flush()

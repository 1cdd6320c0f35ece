"""Optimisation defaults of every task: AdamW with decoupled weight decay, linear warmup + cosine.

Both are classes (not partials) so jsonargparse can print them as ``class_path`` + ``init_args``
and a recipe can override one field (``--model.optimizer.lr 1e-3``) or swap the class
(``--model.optimizer torch.optim.SGD``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Optional

import torch
from torch.optim.lr_scheduler import LRScheduler


class AdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` with language-model defaults (betas 0.9/0.95, weight decay 0.1).

    The task hands it two parameter groups: matrices (decayed by ``weight_decay``) and vectors
    (norm gains, biases: ``weight_decay=0``), as in GPT-2/nanoGPT.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 0.1,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, weight_decay=weight_decay, eps=eps)


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: Optional[int], min_lr_ratio: float) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    Linear warmup ``(step + 1) / (warmup_steps + 1)`` for ``step < warmup_steps`` (never 0, so the
    first step already moves), then a half cosine from 1 down to ``min_lr_ratio`` at
    ``total_steps``, flat afterwards. ``total_steps=None`` keeps the rate at 1 after warmup.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if total_steps is None:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine(LRScheduler):
    """Linear warmup then cosine decay, stepped once per optimizer step (see ``warmup_cosine_factor``).

    ``total_steps=None`` lets the task fill in ``trainer.estimated_stepping_batches`` when it
    configures the optimizer, so a recipe need not repeat ``max_steps``; a recipe may also write
    ``total_steps: ${trainer.max_steps}``. All fields live in ``state_dict``, so a resumed run
    continues on the same curve.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_steps: int = 100,
        total_steps: Optional[int] = None,
        min_lr_ratio: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        if warmup_steps < 0 or not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"WarmupCosine: expected warmup_steps >= 0 and 0 <= min_lr_ratio <= 1, "
                             f"got {warmup_steps} and {min_lr_ratio}")
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        factor = warmup_cosine_factor(self.last_epoch, self.warmup_steps, self.total_steps, self.min_lr_ratio)
        return [base_lr * factor for base_lr in self.base_lrs]

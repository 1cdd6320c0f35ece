"""The memories' mean write rate during a forward, for a training penalty on writing.

theta_t = max_lr * sigmoid(.) is how much the token at t moves a memory's weights
(docs/method.md section 1.1). A memory that writes the filler of a haystack as strongly as the
needle overwrites the needle with length; :func:`collect_write_rates` reads theta_t / max_lr from
every :class:`NeuralMemory` the forward writes through (a hook on its gate projection, no change
to the model), so a task can add their mean to its loss.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor, nn

from titans_lightning.memory import NeuralMemory


def _record(rates: list[Tensor], memory: NeuralMemory, module: nn.Module, inputs, logits: Tensor) -> None:
    """Forward hook of ``memory.to_gates``: logits (B, T, 3 * H), theta's H first."""
    rates.append(torch.sigmoid(logits[..., : memory.heads].float()).flatten())


@contextmanager
def collect_write_rates(model: nn.Module) -> Iterator[list[Tensor]]:
    """Within the block, every write of a memory of ``model`` appends to the yielded list its
    theta_t / max_lr, in [0, 1], for each of its batch rows, tokens and heads (flattened, B*T*H),
    with its graph (so a loss on it trains the gates); :func:`mean_write_rate` averages them.
    Reads (MAC's ``retrieve``) add nothing."""
    rates: list[Tensor] = []
    handles = [m.to_gates.register_forward_hook(partial(_record, rates, m))
               for m in model.modules() if isinstance(m, NeuralMemory)]
    try:
        yield rates
    finally:
        for handle in handles:
            handle.remove()


def mean_write_rate(rates: list[Tensor]) -> Tensor:
    """The mean of theta_t / max_lr over every token, head and memory of ``rates`` (a scalar)."""
    return torch.cat(rates).mean()

"""The memory network M and its activations.

Shape legend: N = independent memories (batch x heads), n = tokens, i/o = a layer's in/out width.

`M(x) = W_L s(... s(W_1 x))` (docs/method.md section 1): a bias-free MLP whose weights are per-memory
tensors `W_l` of shape (N, o, i). Depth 1 is a matrix memory. The fast path's hand-written
derivatives of these activations live in `chunk.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .chunk import layer_norm

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"gelu": F.gelu, "silu": F.silu, "relu": F.relu}


def get_activation(name: str) -> Callable[[Tensor], Tensor]:
    """The activation called `name`; raises with the known names otherwise."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None


def mlp_forward(weights: Sequence[Tensor], x: Tensor, activation: str = "gelu", output_norm: bool = False) -> Tensor:
    """Apply `M(x) = W_L s(... s(W_1 x))`, then a parameter-free LayerNorm if `output_norm`.

    Args:
        weights: per-layer tensors (N, o_l, i_l).
        x: (N, n, i_1).
    Returns:
        (N, n, o_L).
    """
    act = get_activation(activation)
    for layer, w in enumerate(weights):
        x = torch.bmm(x, w.transpose(1, 2))
        if layer < len(weights) - 1:
            x = act(x)
    return layer_norm(x) if output_norm else x  # the same LayerNorm as the fast path's

"""The memory network M and its activations.

Shape legend: N = independent memories (batch x heads), n = tokens, i/o = a layer's in/out width.

`M(x) = W_L s(... s(W_1 x))` (TITANS.md section 1): a bias-free MLP whose weights are per-memory
tensors `W_l` of shape (N, o, i). Depth 1 is a matrix memory. Each activation comes with its
backward, so that the fast path can backpropagate by hand with differentiable ops.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def _silu_backward(grad: Tensor, z: Tensor) -> Tensor:  # aten's silu_backward has no double backward
    sig = torch.sigmoid(z)
    return grad * sig * (1 + z * (1 - sig))


def _relu_backward(grad: Tensor, z: Tensor) -> Tensor:
    return grad * (z > 0).to(grad.dtype)


# name -> (s, backward) with backward(g, z) = g * s'(z); aten's gelu_backward is fused and
# itself differentiable, which the meta-gradient through the hand-written backprop needs.
ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor, Tensor], Tensor]]] = {
    "gelu": (F.gelu, torch.ops.aten.gelu_backward),
    "silu": (F.silu, _silu_backward),
    "relu": (F.relu, _relu_backward),
}


def get_activation(name: str) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor, Tensor], Tensor]]:
    """Return `(s, backward)` for an activation name, `backward(g, z) = g * s'(z)`."""
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
    act, _ = get_activation(activation)
    for layer, w in enumerate(weights):
        x = torch.bmm(x, w.transpose(1, 2))
        if layer < len(weights) - 1:
            x = act(x)
    return F.layer_norm(x, x.shape[-1:], eps=1e-5) if output_norm else x

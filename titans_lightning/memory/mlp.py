"""The memory network M and its activations.

Shape legend: N = independent memories (batch x heads), n = tokens, i/o = a layer's in/out width.

`M(x) = W_L s(... s(W_1 x))` (TITANS.md section 1): a bias-free MLP whose weights are per-memory
tensors `W_l` of shape (N, o, i). Depth 1 is a matrix memory. The derivative of each activation is
written out so that the fast path can backpropagate by hand with ordinary (differentiable) ops.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _gelu(z: Tensor) -> Tensor:
    return 0.5 * z * (1.0 + torch.erf(z * _SQRT_HALF))


def _gelu_grad(z: Tensor) -> Tensor:
    cdf = 0.5 * (1.0 + torch.erf(z * _SQRT_HALF))
    pdf = torch.exp(-0.5 * z * z) * _INV_SQRT_2PI
    return cdf + z * pdf


def _silu(z: Tensor) -> Tensor:
    return z * torch.sigmoid(z)


def _silu_grad(z: Tensor) -> Tensor:
    sig = torch.sigmoid(z)
    return sig * (1.0 + z * (1.0 - sig))


def _relu_grad(z: Tensor) -> Tensor:
    return (z > 0).to(z.dtype)


ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "gelu": (_gelu, _gelu_grad),
    "silu": (_silu, _silu_grad),
    "relu": (torch.relu, _relu_grad),
}


def get_activation(name: str) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """Return `(s, s')` for an activation name; raises with the known names otherwise."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None


def mlp_forward(weights: Sequence[Tensor], x: Tensor, activation: str = "gelu") -> Tensor:
    """Apply `M(x) = W_L s(... s(W_1 x))`.

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
    return x

"""The slow reference: the token-by-token loop of docs/method.md section 1.1, literally.

It exists to be read and to test the fast path against (`functional.neural_memory`); it uses
autograd (`torch.func.grad`) for the surprise, so it shares no backprop code with the fast path.
Shapes as in `neural_memory`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor

from .mlp import mlp_forward
from .state import FastWeightState


def neural_memory_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lr: Tensor,
    momentum: Tensor,
    decay,
    weights: Sequence[Tensor],
    chunk_size: int = 16,
    activation: str = "gelu",
    state: Optional[FastWeightState] = None,
    mask: Optional[Tensor] = None,
    output_norm: bool = False,
) -> tuple[Tensor, FastWeightState]:
    """Same contract as `neural_memory`, one token at a time."""
    state = state or FastWeightState.initial(weights)
    W, S, W_ref = list(state.weights), list(state.momentum), list(state.ref_weights)

    def assoc_loss(ws, k_t, v_t):  # ||M(k_t) - v_t||^2, summed over features (and the batch:
        return ((mlp_forward(ws, k_t, activation, output_norm) - v_t) ** 2).sum()  # memories are independent)

    ys = []
    for t in range(q.shape[1]):
        if (state.position + t) % chunk_size == 0:
            W_ref = list(W)  # gradient reference = chunk-start weights
        grads = torch.func.grad(assoc_loss)(W_ref, k[:, t : t + 1], v[:, t : t + 1])
        keep = torch.ones_like(lr[:, t]) if mask is None else mask[:, t].to(lr.dtype)
        for layer in range(len(W)):
            theta, eta = lr[:, t, None, None], momentum[:, t, None, None]
            # one alpha per token, or per channel: row r of the layer forgets by decay[layer][:, t, r]
            alpha = decay[:, t, None, None] if torch.is_tensor(decay) else decay[layer][:, t, :, None]
            S_new = eta * S[layer] - theta * grads[layer]
            W_new = (1 - alpha) * W[layer] + S_new
            kept = keep[:, None, None]  # a masked token leaves weights and momentum unchanged
            S[layer] = kept * S_new + (1 - kept) * S[layer]
            W[layer] = kept * W_new + (1 - kept) * W[layer]
        ys.append(mlp_forward(W, q[:, t : t + 1], activation, output_norm))  # retrieval after storing token t
    new_state = FastWeightState(tuple(W), tuple(S), tuple(W_ref), state.position + q.shape[1])
    return torch.cat(ys, dim=1), new_state

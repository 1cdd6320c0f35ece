"""`NeuralMemory`: the long-term memory module of Titans (docs/method.md section 1) as an nn.Module.

Shape legend: B = batch, T = tokens, D = model width, H = heads, d = head width (dim_head),
N = B * H independent memories.

Per token x_t:  q, k, v = SiLU(causal_conv(x_t W_{Q,K,V})),  q, k l2-normalised per head;
theta_t = max_lr * sigmoid(.), eta_t = sigmoid(.), alpha_t = max_decay * sigmoid(.) from linear maps of x_t
(per head); the memory stores (k_t, v_t) and retrieves y_t = M_t(q_t) (see `neural_memory`);
output = W_O (RMSNorm(y) * sigmoid(x W_G)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .chunk import chunk_step
from .functional import neural_memory
from .mlp import get_activation, mlp_forward
from .precision import autocast_off
from .shared_start import shared_mlp_forward
from .state import FastWeightState
from .triton_step import BACKENDS


@dataclass(frozen=True)
class MemoryState:
    """Streaming state of a `NeuralMemory` layer; constant size however long the stream.

    Attributes:
        fast: the memory's fast weights, momentum, chunk-start weights and position (N = B*H).
        conv: (B, kernel-1, 3*H*d) last projected inputs of the write stream's causal conv.
        read_conv: (B, kernel-1, H*d) the same for the read-only stream of `retrieve`.
    """

    fast: FastWeightState
    conv: Tensor
    read_conv: Tensor

    def detach(self) -> MemoryState:
        """Cut the autograd graph (truncated backpropagation across batches)."""
        return MemoryState(self.fast.detach(), self.conv.detach(), self.read_conv.detach())

    def numel(self) -> int:
        return self.fast.numel() + self.conv.numel() + self.read_conv.numel()


def causal_depthwise_conv(x: Tensor, weight: Tensor, bias: Tensor, cache: Tensor) -> tuple[Tensor, Tensor]:
    """Depthwise conv1d with left context only, as K shifted multiply-adds.

    For K = 4 this is several times faster than F.conv1d's depthwise kernel on CPU, forward and
    backward. y_t = bias + sum_j weight[:, 0, j] * x_{t - K + 1 + j}.

    Args:
        x: (B, T, C); weight: (C, 1, K); bias: (C,); cache: (B, K-1, C) the previous inputs.
    Returns:
        (B, T, C) outputs and the new cache (B, K-1, C).
    """
    full = torch.cat([cache.to(x.dtype), x], dim=1)
    T, K = x.shape[1], weight.shape[-1]
    y = bias + full[:, K - 1 :] * weight[:, 0, K - 1]
    for j in range(K - 1):
        y = y + full[:, j : j + T] * weight[:, 0, j]
    return y, full[:, full.shape[1] - cache.shape[1] :]


class NeuralMemory(nn.Module):
    """Neural long-term memory layer: (B, T, D) -> (B, T, D), with a streaming state.

    Args:
        dim: model width D.
        heads: H independent memories per sequence.
        dim_head: d (default D // H); keys, values and queries are d-dimensional per head.
        chunk_size: b, the gradient-reference chunk (paper: 16). 1 = the pure recurrence.
        memory_depth: L_M, layers of the memory MLP (1 = matrix memory).
        memory_expansion: hidden width of the memory MLP = expansion * d.
        activation: between memory layers ("gelu", "silu", "relu").
        max_lr: theta_t = max_lr * sigmoid(.).
        max_decay: alpha_t = max_decay * sigmoid(.) (1 = the paper's gate). A bound below 1 keeps
            every write for at least about 1 / max_decay tokens, whatever the gate learns.
        conv_kernel: causal depthwise conv width on q, k, v (0 or 1 disables it).
        residual_memory: M(x) = x + MLP(x) (the MLP then learns v - k).
        memory_norm: end M's MLP with a parameter-free LayerNorm, M(x) = x + LN(MLP(x)), the
            NeurIPS form. It bounds the inner loss and makes it invariant to the last layer's
            scale; without it a deep memory trained online diverges or collapses for many gate
            values (see tests/memory/test_layer.py::test_long_stream_stays_finite).
        per_channel_decay: alpha per channel (the NeurIPS option): every output row of every
            memory layer gets its own forget gate, sigmoid of a linear map of x_t (slower; see
            `channel.py`). Initialised so that all channels start at the shared value.
        init_decay_bias, init_momentum_bias, init_lr_bias: initial gate logits.
        backend: the memory's chunk step, "auto", "torch" or "triton" (see `neural_memory`):
            "auto" runs the Triton kernels on CUDA for the covered config (depth 2, gelu, one
            decay per token), the torch step otherwise.

    Parameters: 3*D*H*d (qkv) + 3*H*d*K (conv) + 3*(D+1)*H (gates) + H*(memory MLP weights)
    + d (norm) + D*H*d + H*d (gate) + H*d*D (out). Memory MLP per head: d*e*d*2 for depth 2.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 4,
        dim_head: Optional[int] = None,
        chunk_size: int = 16,
        memory_depth: int = 2,
        memory_expansion: int = 4,
        activation: str = "gelu",
        max_lr: float = 0.1,
        max_decay: float = 1.0,
        conv_kernel: int = 4,
        residual_memory: bool = True,
        memory_norm: bool = True,
        per_channel_decay: bool = False,
        init_decay_bias: float = -6.0,
        init_momentum_bias: float = 2.0,
        init_lr_bias: float = 0.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        get_activation(activation)  # fail early on an unknown name
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if memory_depth < 1:
            raise ValueError(f"memory_depth must be >= 1, got {memory_depth}")
        if not 0.0 < max_decay <= 1.0:
            raise ValueError(f"max_decay must be in (0, 1], got {max_decay}")
        self.heads, self.dim_head = heads, dim_head or dim // heads
        self.chunk_size, self.activation, self.max_lr, self.max_decay = chunk_size, activation, max_lr, max_decay
        self.residual_memory, self.memory_norm = residual_memory, memory_norm
        inner = heads * self.dim_head
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.conv_kernel = max(conv_kernel, 1)
        self.conv_weight = nn.Parameter(torch.empty(3 * inner, 1, self.conv_kernel))
        self.conv_bias = nn.Parameter(torch.zeros(3 * inner))
        self.to_gates = nn.Linear(dim, 3 * heads)
        widths = [self.dim_head] + [memory_expansion * self.dim_head] * (memory_depth - 1) + [self.dim_head]
        # per-channel decay: one gate per output row of every memory layer, per head
        self.decay_widths = widths[1:] if per_channel_decay else None
        self.to_channel_decay = nn.Linear(dim, heads * sum(widths[1:])) if per_channel_decay else None
        self.memory_init = nn.ParameterList(
            nn.Parameter(torch.empty(heads, widths[i + 1], widths[i])) for i in range(memory_depth)
        )
        self.out_norm = nn.RMSNorm(self.dim_head)
        self.to_out_gate = nn.Linear(dim, inner)
        self.to_out = nn.Linear(inner, dim, bias=False)
        self._gate_biases = (init_lr_bias, init_momentum_bias, init_decay_bias)
        # chunks per state kept for backward (0 = every chunk's); set from outside by
        # parallelize.checkpoint_blocks, see neural_memory's checkpoint_segment
        self.checkpoint_segment = 0
        # the chunk step neural_memory calls (eager); parallelize.compile_memory swaps in a compiled one
        self.chunk_step = chunk_step
        self.backend = backend
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise: identity-like conv, gate biases as configured, scaled memory MLP."""
        with torch.no_grad():
            self.conv_weight.normal_(0.0, 0.02)
            self.conv_weight[:, 0, -1] += 1.0  # start close to the identity (the current token)
            nn.init.zeros_(self.to_gates.weight)
            self.to_gates.bias.copy_(torch.tensor(self._gate_biases).repeat_interleave(self.heads))
            if self.to_channel_decay is not None:
                nn.init.zeros_(self.to_channel_decay.weight)
                nn.init.constant_(self.to_channel_decay.bias, self._gate_biases[2])
            for w in self.memory_init:
                w.normal_(0.0, 1.0 / math.sqrt(w.shape[-1]))

    def initial_state(self, batch_size: int, device=None) -> MemoryState:
        """The state before any token: W = M_0 (per sequence and head), S = 0, empty conv."""
        # real copies per (sequence, head), ordered b * H + h like `_heads`: (N, o, i)
        fast = FastWeightState.initial(w.repeat(batch_size, 1, 1) for w in self.memory_init)
        fast = replace(fast, shared=tuple(self.memory_init))  # one product per head in the first chunk
        inner = self.heads * self.dim_head
        device = device or self.conv_weight.device
        conv = torch.zeros(batch_size, self.conv_kernel - 1, 3 * inner, device=device)
        return MemoryState(fast, conv, conv[..., :inner])

    def _heads(self, x: Tensor) -> Tensor:
        """(B, T, H*d) -> (B*H, T, d)."""
        B, T, _ = x.shape
        return x.view(B, T, self.heads, self.dim_head).transpose(1, 2).reshape(B * self.heads, T, -1)

    def _output(self, y: Tensor, x: Tensor) -> Tensor:
        """(B*H, T, d) retrievals -> (B, T, D): per-head RMSNorm, gate from x, projection."""
        B, T, _ = x.shape
        y = self.out_norm(y).view(B, self.heads, T, self.dim_head).transpose(1, 2).reshape(B, T, -1)
        return self.to_out(y * torch.sigmoid(self.to_out_gate(x)))

    def _gates(self, x: Tensor):
        """(B, T, D) -> theta, eta (B*H, T) and alpha: (B*H, T), or per channel one
        (B*H, T, o_l) per memory layer."""
        B, T, _ = x.shape
        logits = self.to_gates(x).float().view(B, T, 3, self.heads).permute(2, 0, 3, 1)
        logits = logits.reshape(3, B * self.heads, T)
        lr, momentum = self.max_lr * torch.sigmoid(logits[0]), torch.sigmoid(logits[1])
        decay = self.max_decay * torch.sigmoid(logits[2])
        if self.to_channel_decay is not None:
            channel = self.to_channel_decay(x).float().view(B, T, self.heads, -1).transpose(1, 2)
            channel = self.max_decay * torch.sigmoid(channel.reshape(B * self.heads, T, -1))
            decay = channel.split(self.decay_widths, dim=-1)
        return lr, momentum, decay

    def forward(
        self, x: Tensor, state: Optional[MemoryState] = None, mask: Optional[Tensor] = None
    ) -> tuple[Tensor, MemoryState]:
        """Store every token and retrieve after each store.

        Args:
            x: (B, T, D); state: from the previous call of the same streams, or None;
            mask: (B, T) bool, True = real token (padding leaves the memory untouched).
        Returns:
            (B, T, D) retrievals through the output head, and the new state.
        """
        state = state or self.initial_state(x.shape[0], x.device)
        proj = self.to_qkv(x)
        if mask is not None:  # a pad must not reach real tokens through the conv either
            proj = proj * mask[..., None].to(proj.dtype)
        proj, conv = causal_depthwise_conv(proj, self.conv_weight, self.conv_bias, state.conv)
        q, k, v = (self._heads(t) for t in F.silu(proj).chunk(3, dim=-1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        lr, momentum, decay = self._gates(x)
        head_mask = None if mask is None else mask.repeat_interleave(self.heads, dim=0)
        target = v - k if self.residual_memory else v
        y, fast = neural_memory(
            q, k, target, lr, momentum, decay, state.fast.weights, self.chunk_size,
            self.activation, state.fast, head_mask, self.memory_norm, self.checkpoint_segment,
            self.chunk_step, self.backend,
        )
        if self.residual_memory:
            y = y + q.to(y.dtype)
        return self._output(y.to(x.dtype), x), MemoryState(fast, conv, state.read_conv)

    def retrieve(
        self, x: Tensor, state: Optional[MemoryState] = None, mask: Optional[Tensor] = None
    ) -> tuple[Tensor, MemoryState]:
        """Read without writing: y_t = M_W(q_t) with the state's current weights W for every t.

        Args and returns as `forward`; only the state's `read_conv` advances (the read stream's
        conv context), so MAC can retrieve a segment with the memory as it was before it.
        """
        state = state or self.initial_state(x.shape[0], x.device)
        inner = self.heads * self.dim_head
        proj = F.linear(x, self.to_qkv.weight[:inner])
        if mask is not None:
            proj = proj * mask[..., None].to(proj.dtype)
        proj, read_conv = causal_depthwise_conv(
            proj, self.conv_weight[:inner], self.conv_bias[:inner], state.read_conv
        )
        q = F.normalize(self._heads(F.silu(proj)), dim=-1)
        weights = state.fast.weights
        with autocast_off(x.device):
            if state.fast.shared and state.fast.position == 0:  # every memory still at M_0
                shared = [w.to(weights[0].dtype) for w in state.fast.shared]
                y = shared_mlp_forward(shared, q.to(weights[0].dtype), self.activation, self.memory_norm)
            else:
                y = mlp_forward(weights, q.to(weights[0].dtype), self.activation, self.memory_norm)
        if self.residual_memory:
            y = y + q.to(y.dtype)
        return self._output(y.to(x.dtype), x), replace(state, read_conv=read_conv)

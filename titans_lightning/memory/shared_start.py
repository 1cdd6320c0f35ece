"""The first chunk of a stream, with the memory as initialised: every sequence's weights are the
same M_0 per head and the momentum is zero, so the products with the weights are one large product
per head instead of one tiny product per sequence and head.

Shape legend: N = B * H memories ordered ``b * H + h`` (as ``NeuralMemory._heads``), b = chunk
tokens, i/o = a memory layer's in/out width, H heads; M_0 per layer (H, o, i).

On CPU a batch of N tiny products (a few tokens by 32 by 64 each) runs at a fraction of the rate of
H large ones (measured 17-30 against about 90 GFLOP/s on one core), and short sequences spend most
of their memory time in the first chunk: recommendation histories of a few items, the first chunk
of every training sequence. Same formulas as ``chunk.py`` with W = R = M_0 and S = 0:

    z_l = h_l M_0l^T,  delta as in chunk.py,
    u_l = beta (a_l M_0l^T) - ((a_l h_l^T) o G) delta_l              (the f S term is zero)
    WS'_l = [beta_b M_0l - delta_l^T (g_b h_l) | - delta_l^T (mix h_l)]

recorded by autograd (the meta-gradient through s' is autograd's too). Checked against
``ChunkStep`` in float64 in tests/memory/test_shared_start.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .chunk import DERIVATIVES, _relu_backward, _top_surprise, layer_norm
from .mlp import get_activation


def to_heads(x: Tensor, heads: int) -> Tensor:
    """(N, b, c) per memory -> (H, B * b, c) per head."""
    N, b, c = x.shape
    return x.view(N // heads, heads, b, c).transpose(0, 1).reshape(heads, -1, c)


def from_heads(x: Tensor, tokens: int) -> Tensor:
    """(H, B * b, c) per head -> (N, b, c) per memory."""
    H, _, c = x.shape
    return x.view(H, -1, tokens, c).transpose(0, 1).reshape(-1, tokens, c)


def shared_product(x: Tensor, weight: Tensor, transpose: bool = True) -> Tensor:
    """(N, b, i) times a per-head weight (H, o, i) -> (N, b, o) (``x W^T``; ``x W`` if not transpose)."""
    return from_heads(torch.bmm(to_heads(x, weight.shape[0]), weight.mT if transpose else weight), x.shape[1])


def _times_derivative(activation: str, grad: Tensor, z: Tensor) -> Tensor:
    """grad * s'(z) in ops autograd can differentiate again (the meta-gradient needs s'')."""
    if activation == "gelu":
        return torch.ops.aten.gelu_backward(grad, z)  # has its own derivative
    if activation == "silu":  # aten's silu_backward has none
        sig = torch.sigmoid(z)
        return grad * sig * (1 + z * (1 - sig))
    return _relu_backward(grad, z)


def shared_start_chunk(activation: str, L: int, output_norm: bool, q: Tensor, k: Tensor, v: Tensor, beta: Tensor,
                       f: Tensor, G: Tensor, m_end: Tensor, m_mix: Tensor, M0: Sequence[Tensor]
                       ) -> tuple[Tensor, ...]:
    """The first chunk from the initial state: ``chunk_step``'s arguments and returns, with the
    per-head M_0 (H, o_l, i_l) in place of WS (f and m_end multiply the zero momentum: unused)."""
    act = DERIVATIVES[activation][0]
    N = q.shape[0]
    h, z = [k], []
    for layer in range(L):
        z.append(shared_product(h[layer], M0[layer]))
        if layer < L - 1:
            h.append(act(z[layer]))
    delta = [None] * L
    delta[L - 1] = _top_surprise(z[L - 1], v, output_norm)
    for layer in range(L - 2, -1, -1):
        delta[layer] = _times_derivative(activation, shared_product(delta[layer + 1], M0[layer + 1], transpose=False),
                                         z[layer])
    a, u = q, []
    for layer in range(L):
        mixed = torch.bmm(a, h[layer].mT) * G
        u.append(shared_product(a, M0[layer]) * beta[..., None] - torch.bmm(mixed, delta[layer]))
        if layer < L - 1:
            a = act(u[layer])
    new_WS = []
    for layer, w in enumerate(M0):
        H, o, i = w.shape
        W = (beta[:, -1].view(N // H, H, 1, 1) * w).reshape(N, o, i)
        written = torch.cat((h[layer] * G[:, -1, :, None], h[layer] * m_mix[..., None]), -1)
        new_WS.append(torch.cat((W, torch.zeros_like(W)), -1) - torch.bmm(delta[layer].mT, written))
    return (layer_norm(u[-1]) if output_norm else u[-1], *new_WS)


def shared_mlp_forward(M0: Sequence[Tensor], x: Tensor, activation: str = "gelu", output_norm: bool = False) -> Tensor:
    """``mlp.mlp_forward`` with every memory at M_0: x (N, n, i_1) -> (N, n, o_L)."""
    act = get_activation(activation)
    for layer, w in enumerate(M0):
        x = shared_product(x, w)
        if layer < len(M0) - 1:
            x = act(x)
    return layer_norm(x) if output_norm else x

"""One chunk of the neural memory, forward and backward by hand (a torch.autograd.Function).

Shape legend: N = independent memories, b = chunk tokens, i/o = a memory layer's in/out width,
L = memory depth. Weights W and momentum S of a layer travel side by side as one tensor
`WS = [W | S]` of shape (N, o, 2i), so that each product with both is a single matmul. Per layer
l, with chunk-start WS and gradient reference R (the chunk-start W, unless a stream resumed
mid-chunk):

    key pass at R:   z_l = h_l R_l^T,  h_{l+1} = s(z_l),  h_0 = k
    surprise:        delta_{L-1} = z_{L-1} - v  (or LN'(z)^T (LN(z) - v) with the output norm),
                     delta_l = s'(z_l) * (delta_{l+1} R_{l+1})
    retrieval:       u_l = [beta a_l | f a_l] WS_l^T - ((a_l h_l^T) o G) delta_l
                         = beta (a_l W_l^T) + f (a_l S_l^T) - ((a_l h_l^T) o G) delta_l,
                     a_{l+1} = s(u_l),  a_0 = q,  y = u_{L-1}  (or LN(u_{L-1}))
    chunk end:       WS'_l = [beta_b W_l + f_b S_l | m_b S_l] - delta_l^T [g_b h_l | mix h_l]
                     (g_b = last row of G: W' = ... - delta^T (g_b h), S' = m_b S - delta^T (mix h))

(`functional.py` derives beta, f, G; the factor 2 of d||e||^2/de is folded into them.) Autograd
would record some forty small ops per chunk; this computes the same gradients, including the
meta-gradient through the surprise (which needs s''), with fewer passes and no graph overhead.
It is tested against the autograd-differentiated token-by-token reference.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from .precision import autocast_off

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _gelu_derivatives(z: Tensor, second: bool = True) -> tuple[Tensor, ...]:
    """(s, s', s'') of the exact GELU s(z) = z Phi(z), sharing erf and exp; (s, s') if not second."""
    cdf = torch.erf(z * _SQRT_HALF).add_(1.0).mul_(0.5)
    pdf = torch.exp(z * z * -0.5).mul_(_INV_SQRT_2PI)
    s, ds = z * cdf, torch.addcmul(cdf, z, pdf)
    return (s, ds, pdf.mul_(2.0 - z * z)) if second else (s, ds)


def _silu_derivatives(z: Tensor, second: bool = True) -> tuple[Tensor, ...]:
    """(s, s', s'') of s(z) = z sigmoid(z); (s, s') if not second."""
    sig = torch.sigmoid(z)
    s, ds = z * sig, sig * (1.0 + z * (1.0 - sig))
    return (s, ds, sig * (1.0 - sig) * (2.0 + z * (1.0 - 2.0 * sig))) if second else (s, ds)


def _relu_derivatives(z: Tensor, second: bool = True) -> tuple[Tensor, ...]:
    positive = (z > 0).to(z.dtype)
    return (z * positive, positive, torch.zeros_like(z)) if second else (z * positive, positive)


def _relu_backward(grad: Tensor, z: Tensor) -> Tensor:
    return grad * (z > 0).to(z.dtype)


# name -> (s, fused (g, z) -> g * s'(z) for the forward, (z, second) -> (s, s'[, s'']) for the backward)
DERIVATIVES = {
    "gelu": (torch.nn.functional.gelu, torch.ops.aten.gelu_backward, _gelu_derivatives),
    "silu": (torch.nn.functional.silu, torch.ops.aten.silu_backward, _silu_derivatives),
    "relu": (torch.relu, _relu_backward, _relu_derivatives),
}


LN_EPS = 1e-5


def layer_norm(z: Tensor) -> Tensor:
    """Parameter-free LayerNorm over the last dim (biased variance, eps inside the root)."""
    return torch.nn.functional.layer_norm(z, z.shape[-1:], eps=LN_EPS)


def layer_norm_backward(z: Tensor, grad: Tensor) -> Tensor:
    """Vector-Jacobian product of `layer_norm` at z, in differentiable ops.

    With o = (z - mean) / sigma: dz = (grad - mean(grad) - o * mean(grad * o)) / sigma.
    """
    centred = z - z.mean(-1, keepdim=True)
    sigma = torch.sqrt(centred.square().mean(-1, keepdim=True) + LN_EPS)
    o = centred / sigma
    return (grad - grad.mean(-1, keepdim=True) - o * (grad * o).mean(-1, keepdim=True)) / sigma


def _top_surprise(z: Tensor, v: Tensor, output_norm: bool) -> Tensor:
    """delta of the last layer: d/dz of ||M(k) - v||^2 / 2, M's output LN(z) or z."""
    if output_norm:
        return layer_norm_backward(z, layer_norm(z) - v)
    return z - v


def _top_surprise_backward(z: Tensor, v: Tensor, grad: Tensor, output_norm: bool):
    """(dz, dv) through `_top_surprise`, in closed form.

    With o = LN(z), sigma the std (eps included), J x = (x - mean x - o mean(x o)) / sigma the
    (symmetric) LayerNorm Jacobian, p = o - v, m = mean(p o) and delta = J p:
        dv = -J grad,
        dz = (1 - m) / sigma J grad - mean(grad o) / sigma J(o + p) - mean(grad delta) / sigma o.
    """
    if not output_norm:
        return grad, -grad
    centred = z - z.mean(-1, keepdim=True)
    sigma = torch.sqrt(centred.square().mean(-1, keepdim=True) + LN_EPS)
    o = centred / sigma
    jacobian = lambda x: (x - x.mean(-1, keepdim=True) - o * (x * o).mean(-1, keepdim=True)) / sigma  # noqa: E731
    p = o - v
    delta, j_grad = jacobian(p), jacobian(grad)
    m = (p * o).mean(-1, keepdim=True)
    dz = (1 - m) / sigma * j_grad - (grad * o).mean(-1, keepdim=True) / sigma * jacobian(o + p)
    dz = dz - (grad * delta).mean(-1, keepdim=True) / sigma * o
    return dz, -j_grad


def _halves(x: Tensor) -> tuple[Tensor, Tensor]:
    """(..., 2i) -> the two (..., i) views [left | right]."""
    i = x.shape[-1] // 2
    return x[..., :i], x[..., i:]


def _side_by_side(x: Tensor, left: Tensor, right: Tensor) -> Tensor:
    """(N, n, i) and per-row scales (N, n, 1) -> (N, n, 2i) = [left * x | right * x], one buffer.

    Under torch.compile the halves are joined by `cat` (dynamo refuses `out=` into strided views;
    inductor fuses both products and the join into one kernel). Eager writes each product into
    its half of one buffer: `cat` (or a broadcast product) is slower there (an extra copy).
    """
    if torch.compiler.is_compiling():
        return torch.cat((x * left, x * right), -1)
    out = x.new_empty(*x.shape[:-1], 2 * x.shape[-1])
    torch.mul(x, left, out=out[..., : x.shape[-1]])
    torch.mul(x, right, out=out[..., x.shape[-1] :])
    return out


def _key_pass(R, k, v, act, act_backward, output_norm):
    """Layer inputs h, pre-activations z and surprise signals delta, all at R."""
    L = len(R)
    h, z = [k], []
    for layer in range(L):
        z.append(torch.bmm(h[layer], R[layer].mT))
        if layer < L - 1:
            h.append(act(z[layer]))
    delta = [None] * L
    delta[L - 1] = _top_surprise(z[L - 1], v, output_norm)
    for layer in range(L - 2, -1, -1):
        delta[layer] = act_backward(torch.bmm(delta[layer + 1], R[layer + 1]), z[layer])
    return h, z, delta


def _retrieval(WS, h, delta, q, beta, f, G, act):
    """Queries through every token's own weights (dual form) -> pre-activations u per layer."""
    a, u = q, []
    for layer, ws in enumerate(WS):
        mixed = torch.bmm(a, h[layer].mT).mul_(G)  # (a h^T) o G
        u.append(torch.bmm(_side_by_side(a, beta, f), ws.mT).baddbmm_(mixed, delta[layer], alpha=-1))
        if layer < len(WS) - 1:
            a = act(u[layer])
    return u


def _chunk_end(WS, h, delta, beta_end, f_end, g_end, m_end, m_mix):
    """WS'_l = [beta_b W + f_b S | m_b S] - delta^T [g_b h | mix h] for every layer."""
    out = []
    for ws, hh, d in zip(WS, h, delta):
        W, S = _halves(ws)
        if torch.compiler.is_compiling():  # no `out=` into halves (see `_side_by_side`)
            base = torch.cat((torch.addcmul(W * beta_end, S, f_end), S * m_end), -1)
        else:
            base = torch.empty_like(ws)
            left, right = _halves(base)
            torch.mul(W, beta_end, out=left).addcmul_(S, f_end)
            torch.mul(S, m_end, out=right)
        out.append(base.baddbmm_(d.mT, _side_by_side(hh, g_end, m_mix), alpha=-1))
    return out


def _end_grad(d_ws: Tensor, b_end: Tensor, f_end: Tensor, m_e: Tensor) -> Tensor:
    """d/dWS through the chunk end's decay terms: d_ws = [dW | dS] = d/dWS' (N, o, 2i), per-memory
    scales (N, 1, 1) -> (N, o, 2i) [b_end dW | f_end dW + m_e dS]."""
    dW, dS = _halves(d_ws)
    if torch.compiler.is_compiling():  # no `out=` into halves (see `_side_by_side`)
        return torch.cat((dW * b_end, torch.addcmul(dW * f_end, dS, m_e)), -1)
    grad = torch.empty_like(d_ws)
    left, right = _halves(grad)
    torch.mul(dW, b_end, out=left)
    torch.mul(dW, f_end, out=right).addcmul_(dS, m_e)
    return grad


def _ref_weights(WS, R):
    """The gradient reference: the given R, or the W half of the chunk-start WS."""
    return list(R) if R else [_halves(ws)[0] for ws in WS]


class ChunkStep(torch.autograd.Function):
    """(q, k, v, gates, WS[, R]) of one chunk -> (y, WS'). See the module docstring.

    Args (forward): activation name, depth L, output_norm (M ends with a parameter-free
    LayerNorm), q (N,b,i_0), k (N,b,i_0), v (N,b,o_L), beta, f (N,b), G (N,b,b), m_end (N,),
    m_mix (N,b), then WS_0..WS_{L-1} (N,o_l,2i_l), then optionally R_0..R_{L-1} (N,o_l,i_l)
    (absent: R = the W half of WS).
    """

    @staticmethod
    def forward(ctx, activation, L, output_norm, *tensors):
        # one *tensors: dynamo (torch 2.13) drops ctx when the argument count happens to equal the
        # number of forward's parameters (depth 2, no R, no grad), shifting every argument by one
        q, k, v, beta, f, G, m_end, m_mix, *weights = tensors
        WS, R_given = weights[:L], weights[L:]
        R = _ref_weights(WS, R_given)
        act, act_backward, _ = DERIVATIVES[activation]
        h, z, delta = _key_pass(R, k, v, act, act_backward, output_norm)
        u = _retrieval(WS, h, delta, q, beta[..., None], f[..., None], G, act)
        new_WS = _chunk_end(WS, h, delta, beta[:, -1, None, None], f[:, -1, None, None],
                            G[:, -1, :, None], m_end[:, None, None], m_mix[..., None])
        ctx.activation, ctx.L, ctx.output_norm, ctx.separate_ref = activation, L, output_norm, bool(R_given)
        # an output nobody used (the last chunk's WS' in training) gets None, not zeros: its stage is skipped
        ctx.set_materialize_grads(False)
        # h_{l+1} = s(z_l), a_{l+1} = s(u_l), a h^T and delta R are recomputed in backward: less memory held
        ctx.save_for_backward(v, beta, f, G, m_end, m_mix, k, q, *WS, *R_given, *z, *delta, *u)
        return (layer_norm(u[-1]) if output_norm else u[-1], *new_WS)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, *d_new):
        saved = list(ctx.saved_tensors)  # unpacked once: a checkpointed segment allows no second unpack
        # `loss.backward()` inside an autocast region would run this under it: bf16 products would
        # meet the float32 accumulators (baddbmm_). The forward ran in float32 (float64), so does this.
        with autocast_off(saved[0].device):
            return ChunkStep._backward(ctx, saved, dy, d_new)

    @staticmethod
    def _backward(ctx, saved: list[Tensor], dy: Optional[Tensor], d_new: tuple) -> tuple:
        """The body of `backward`: gradients of (q, k, v, gates, WS[, R]) from dy (N,b,o_L) and
        d_new (one dWS' per layer, or None), with `saved` the unpacked saved tensors."""
        L = ctx.L
        v, beta, f, G, m_end, m_mix, k, q = saved[:8]
        WS, saved = saved[8 : 8 + L], saved[8 + L :]
        R_given, saved = (saved[:L], saved[L:]) if ctx.separate_ref else ([], saved)
        z, delta, u = saved[:L], saved[L : 2 * L], saved[2 * L :]
        R = _ref_weights(WS, R_given)
        derivatives = DERIVATIVES[ctx.activation][2]
        z_d = [derivatives(x) for x in z[:-1]]  # (s, s', s'') of every hidden pre-activation
        u_d = [derivatives(x, second=False) for x in u[:-1]]
        h, a = [k] + [d[0] for d in z_d], [q] + [d[0] for d in u_d]
        if ctx.output_norm and dy is not None:
            dy = layer_norm_backward(u[-1], dy)
        grads = _Grads(L, beta, f, G, m_end, m_mix)
        grads.chunk_end(d_new, WS, h, delta)
        dq = grads.retrieval(dy, WS, h, delta, a, [d[1] for d in u_d])
        dk, dv = grads.key_pass(R, h, z_d, delta, z[-1], v, ctx.output_norm)
        dWS = [torch.zeros_like(ws) if d is None else d for d, ws in zip(grads.WS, WS)]
        if ctx.separate_ref:
            return (None, None, None, dq, dk, dv, *grads.gates(), *dWS, *grads.R)
        # R is the W half of WS: its gradient joins WS's. (Accumulating into that strided half
        # directly would make baddbmm_ fall back to one addmm_ per memory.)
        for dws, dr in zip(dWS, grads.R):
            _halves(dws)[0].add_(dr)
        return (None, None, None, dq, dk, dv, *grads.gates(), *dWS)


def chunk_step(activation: str, L: int, output_norm: bool, *tensors: Tensor) -> tuple[Tensor, ...]:
    """One chunk as a plain function: `ChunkStep.apply(activation, L, output_norm, *tensors)`,
    same arguments and returns (y (N, b, o_L), then WS'_0..WS'_{L-1} (N, o_l, 2i_l)).

    The default step of `neural_memory` and `NeuralMemory`; `parallelize.compile_memory` hands
    them `torch.compile` of this function instead (one graph holding forward and backward).
    """
    return ChunkStep.apply(activation, L, output_norm, *tensors)


def _add(total: Optional[Tensor], x: Tensor) -> Tensor:
    """Accumulate into a gradient that may not exist yet (None = zero)."""
    return x if total is None else total.add_(x)


def _add_product(total: Optional[Tensor], a: Tensor, b: Tensor, alpha: float = 1.0) -> Tensor:
    """total + alpha (a @ b), batched; written into total when it exists (no product-sized temporary)."""
    if total is None:
        out = torch.bmm(a, b)
        return out if alpha == 1.0 else out.mul_(alpha)
    return total.baddbmm_(a, b, alpha=alpha)


class _Grads:
    """Gradient accumulators of ChunkStep.backward, filled by its three stages in reverse.

    Per-layer lists hold None until a stage contributes (no zero-filled buffers).
    """

    def __init__(self, L, beta, f, G, m_end, m_mix):
        self.WS, self.R, self.h, self.delta = [None] * L, [None] * L, [None] * L, [None] * L
        self.beta, self.f, self.G = torch.zeros_like(beta), torch.zeros_like(f), torch.zeros_like(G)
        self.m_end, self.m_mix = torch.zeros_like(m_end), torch.zeros_like(m_mix)
        self.inputs = (beta, f, G, m_end, m_mix)

    def gates(self) -> tuple[Tensor, ...]:
        return self.beta, self.f, self.G, self.m_end, self.m_mix

    def chunk_end(self, d_new, WS, h, delta):
        """Through WS' = [beta_b W + f_b S | m_b S] - delta^T [g_b h | mix h]."""
        beta, f, G, m_end, m_mix = self.inputs
        b_end, f_end, m_e = beta[:, -1, None, None], f[:, -1, None, None], m_end[:, None, None]
        g_end, mix = G[:, -1, :, None], m_mix[..., None]
        for layer, d_ws in enumerate(d_new):
            if d_ws is None:
                continue
            (W, S), (dW, dS), hh = _halves(WS[layer]), _halves(d_ws), h[layer]
            grad = _end_grad(d_ws, b_end, f_end, m_e)
            self.WS[layer] = _add(self.WS[layer], grad)
            self.beta[:, -1] += (dW * W).sum((1, 2))
            self.f[:, -1] += (dW * S).sum((1, 2))
            self.m_end += (dS * S).sum((1, 2))
            Y = _side_by_side(hh, g_end, mix)
            self.delta[layer] = _add_product(self.delta[layer], Y, d_ws.mT, alpha=-1.0)
            dY_end, dY_mix = _halves(torch.bmm(delta[layer], d_ws))  # minus d/dY
            self.h[layer] = _add(self.h[layer], torch.mul(dY_end, g_end).addcmul_(dY_mix, mix).neg_())
            self.G[:, -1] -= (dY_end * hh).sum(-1)
            self.m_mix -= (dY_mix * hh).sum(-1)

    def retrieval(self, dy, WS, h, delta, a, u_d1):
        """Through the dual-form retrieval, top layer down; u_d1 = s'(u_l) below the top; -> dq."""
        beta, f, G = (x[..., None] if x.dim() == 2 else x for x in self.inputs[:3])
        L = len(WS)
        da = dy if dy is not None else delta[-1].new_zeros(*a[0].shape[:2], WS[-1].shape[1])
        for layer in range(L - 1, -1, -1):
            du = da if layer == L - 1 else da * u_d1[layer]
            self.WS[layer] = _add_product(self.WS[layer], du.mT, _side_by_side(a[layer], beta, f))
            dX_w, dX_s = _halves(torch.bmm(du, WS[layer]))
            self.beta += (a[layer] * dX_w).sum(-1)
            self.f += (a[layer] * dX_s).sum(-1)
            ah = torch.bmm(a[layer], h[layer].mT)
            self.delta[layer] = _add_product(self.delta[layer], (ah * G).mT, du, alpha=-1.0)
            d_mixed = torch.bmm(du, delta[layer].mT).neg_()  # d/d((a h^T) o G)
            self.G += d_mixed * ah
            d_ah = d_mixed.mul_(G)
            da = torch.mul(dX_w, beta).addcmul_(dX_s, f).baddbmm_(d_ah, h[layer])
            self.h[layer] = _add_product(self.h[layer], d_ah.mT, a[layer])
        return da

    def key_pass(self, R, h, z_d, delta, z_top, v, output_norm):
        """Through the surprise (bottom layer up) and the key forward (top down); -> dk, dv.

        z_d: (s, s', s'') of every hidden pre-activation; z_top: the top pre-activation.
        """
        L = len(R)
        dz = [None] * L
        for layer in range(L - 1):  # delta_l = s'(z_l) * (delta_{l+1} R_{l+1})
            dd, (_, d1, d2) = self.delta[layer], z_d[layer]
            dz[layer] = dd * torch.bmm(delta[layer + 1], R[layer + 1]) * d2
            dg = dd * d1
            self.delta[layer + 1] = _add_product(self.delta[layer + 1], dg, R[layer + 1].mT)
            self.R[layer + 1] = _add_product(self.R[layer + 1], delta[layer + 1].mT, dg)
        dz_top, dv = _top_surprise_backward(z_top, v, self.delta[L - 1], output_norm)
        dz[L - 1] = _add(dz[L - 1], dz_top)
        for layer in range(L - 1, -1, -1):  # z_l = h_l R_l^T, h_l = s(z_{l-1})
            self.R[layer] = _add_product(self.R[layer], dz[layer].mT, h[layer])
            self.h[layer] = _add_product(self.h[layer], dz[layer], R[layer])
            if layer > 0:
                dz[layer - 1] = _add(dz[layer - 1], self.h[layer] * z_d[layer - 1][1])
        return self.h[0], dv

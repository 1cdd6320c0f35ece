"""One chunk of the neural memory, forward and backward by hand (a torch.autograd.Function).

Shape legend: N = independent memories, b = chunk tokens, i/o = a memory layer's in/out width,
L = memory depth. Per layer l, with chunk-start weights W, momentum S and gradient reference R:

    key pass at R:   z_l = h_l R_l^T,  h_{l+1} = s(z_l),  h_0 = k
    surprise:        delta_{L-1} = z_{L-1} - v  (or LN'(z)^T (LN(z) - v) with the output norm),
                     delta_l = s'(z_l) * (delta_{l+1} R_{l+1})
    retrieval:       u_l = beta * (a_l W_l^T) + f * (a_l S_l^T) - ((a_l h_l^T) o G) delta_l,
                     a_{l+1} = s(u_l),  a_0 = q,  y = u_{L-1}  (or LN(u_{L-1}))
    chunk end:       W'_l = beta_b W_l + f_b S_l - delta_l^T (g_b * h_l)   (g_b = last row of G)
                     S'_l = m_b S_l - delta_l^T (mix * h_l)

(`functional.py` derives beta, f, G; the factor 2 of d||e||^2/de is folded into them.) Autograd
would record some forty small ops per chunk; this computes the same gradients, including the
meta-gradient through the surprise (which needs s''), with fewer passes and no graph overhead.
It is tested against the autograd-differentiated token-by-token reference.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _gelu_derivatives(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(s, s', s'') of the exact GELU s(z) = z Phi(z), sharing erf and exp."""
    cdf = 0.5 * (1.0 + torch.erf(z * _SQRT_HALF))
    pdf = torch.exp(-0.5 * z * z) * _INV_SQRT_2PI
    return z * cdf, cdf + z * pdf, pdf * (2.0 - z * z)


def _silu_derivatives(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(s, s', s'') of s(z) = z sigmoid(z)."""
    sig = torch.sigmoid(z)
    return z * sig, sig * (1.0 + z * (1.0 - sig)), sig * (1.0 - sig) * (2.0 + z * (1.0 - 2.0 * sig))


def _relu_derivatives(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    positive = (z > 0).to(z.dtype)
    return z * positive, positive, torch.zeros_like(z)


def _relu_backward(grad: Tensor, z: Tensor) -> Tensor:
    return grad * (z > 0).to(z.dtype)


# name -> (s, fused (g, z) -> g * s'(z) for the forward, z -> (s, s', s'') for the backward)
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


def _key_pass(R, k, v, act, act_backward, output_norm):
    """Layer inputs h, pre-activations z, surprise signals delta and the back-signals g at R."""
    L = len(R)
    h, z = [k], []
    for layer in range(L):
        z.append(torch.bmm(h[layer], R[layer].mT))
        if layer < L - 1:
            h.append(act(z[layer]))
    delta, g = [None] * L, [None] * L
    delta[L - 1] = _top_surprise(z[L - 1], v, output_norm)
    for layer in range(L - 2, -1, -1):
        g[layer] = torch.bmm(delta[layer + 1], R[layer + 1])
        delta[layer] = act_backward(g[layer], z[layer])
    return h, z, delta, g


def _retrieval(W, S, h, delta, q, beta, f, G, act):
    """Queries through every token's own weights (dual form); also returns a, a h^T and u."""
    a, ah, u = [q], [], []
    for layer, (w, s) in enumerate(zip(W, S)):
        ah.append(torch.bmm(a[layer], h[layer].mT))
        out = torch.baddbmm(torch.bmm(a[layer] * f, s.mT), a[layer] * beta, w.mT)
        u.append(torch.baddbmm(out, ah[layer] * G, delta[layer], alpha=-1))
        if layer < len(W) - 1:
            a.append(act(u[layer]))
    return a, ah, u


class ChunkStep(torch.autograd.Function):
    """(q, k, v, gates, W, S, R) of one chunk -> (y, W', S'). See the module docstring.

    Args (forward): activation name, depth L, output_norm (M ends with a parameter-free
    LayerNorm), q (N,b,i_0), k (N,b,i_0), v (N,b,o_L),
    beta, f (N,b), G (N,b,b), m_end (N,), m_mix (N,b), then W_0..W_{L-1}, S_0.., R_0.. .
    """

    @staticmethod
    def forward(ctx, activation, L, output_norm, q, k, v, beta, f, G, m_end, m_mix, *weights):
        W, S, R = weights[:L], weights[L : 2 * L], weights[2 * L :]
        act, act_backward, _ = DERIVATIVES[activation]
        h, z, delta, g = _key_pass(R, k, v, act, act_backward, output_norm)
        a, ah, u = _retrieval(W, S, h, delta, q, beta[..., None], f[..., None], G, act)
        b_end, f_end, g_end = beta[:, -1, None, None], f[:, -1, None, None], G[:, -1, :, None]
        new_W = [torch.baddbmm(b_end * w + f_end * s, d.mT, hh * g_end, alpha=-1) for w, s, d, hh in zip(W, S, delta, h)]
        new_S = [torch.baddbmm(m_end[:, None, None] * s, d.mT, hh * m_mix[..., None], alpha=-1) for s, d, hh in zip(S, delta, h)]
        ctx.activation, ctx.L, ctx.output_norm = activation, L, output_norm
        # h_{l+1} = s(z_l) and a_{l+1} = s(u_l) are recomputed in backward: less memory held
        # (g = delta R and a h^T are recomputed too)
        ctx.save_for_backward(v, beta, f, G, m_end, m_mix, *W, *S, *R, k, q, *z, *delta, *u)
        return (layer_norm(u[-1]) if output_norm else u[-1], *new_W, *new_S)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, *d_new):
        L, derivatives = ctx.L, DERIVATIVES[ctx.activation][2]
        saved = list(ctx.saved_tensors)
        v, beta, f, G, m_end, m_mix = saved[:6]
        W, S, R, (k, q), z, delta, u = _split(saved[6:], [L, L, L, 2, L, L, L])
        (z, z_top), (u, u_top) = (z[:-1], z[-1]), (u[:-1], u[-1])
        if ctx.output_norm and dy is not None:
            dy = layer_norm_backward(u_top, dy)
        z_d, u_d = [derivatives(x) for x in z], [derivatives(x) for x in u]  # (s, s', s'') each
        h, a = [k] + [d[0] for d in z_d], [q] + [d[0] for d in u_d]
        g = [torch.bmm(delta[layer + 1], R[layer + 1]) for layer in range(L - 1)]
        ah = [torch.bmm(x, y.mT) for x, y in zip(a, h)]
        grads = _Grads(W, S, R, h, delta, beta, f, G, m_end, m_mix)
        grads.chunk_end(d_new[:L], d_new[L:], W, S, h, delta, beta, f, G, m_end, m_mix)
        dq = grads.retrieval(dy, W, S, h, delta, a, ah, [d[1] for d in u_d], beta, f, G)
        dk, dv = grads.key_pass(R, h, [d[1] for d in z_d], [d[2] for d in z_d], delta, g, z_top, v, ctx.output_norm)
        return (None, None, None, dq, dk, dv, grads.beta, grads.f, grads.G, grads.m_end, grads.m_mix,
                *grads.W, *grads.S, *grads.R)


def _top_surprise_backward(z: Tensor, v: Tensor, grad: Tensor, output_norm: bool):
    """(dz, dv) through `_top_surprise`; the LayerNorm's second derivative by local autograd."""
    if not output_norm:
        return grad, -grad
    with torch.enable_grad():
        z, v = z.detach().requires_grad_(), v.detach().requires_grad_()
        return torch.autograd.grad(_top_surprise(z, v, True), (z, v), grad)


def _split(items, sizes):
    out, start = [], 0
    for size in sizes:
        out.append(items[start : start + size])
        start += size
    return out


class _Grads:
    """Gradient accumulators of ChunkStep.backward, filled by its three stages in reverse."""

    def __init__(self, W, S, R, h, delta, beta, f, G, m_end, m_mix):
        zeros = lambda xs: [torch.zeros_like(x) for x in xs]  # noqa: E731
        self.W, self.S, self.R, self.h, self.delta = zeros(W), zeros(S), zeros(R), zeros(h), zeros(delta)
        self.beta, self.f, self.G = torch.zeros_like(beta), torch.zeros_like(f), torch.zeros_like(G)
        self.m_end, self.m_mix = torch.zeros_like(m_end), torch.zeros_like(m_mix)

    def chunk_end(self, dW_new, dS_new, W, S, h, delta, beta, f, G, m_end, m_mix):
        """Through W'_l = beta_b W + f_b S - delta^T (g_b h) and S'_l = m_b S - delta^T (mix h)."""
        g_end = G[:, -1]
        for layer, (dWn, dSn) in enumerate(zip(dW_new, dS_new)):
            hh, d = h[layer], delta[layer]
            if dWn is not None:
                self.W[layer] += beta[:, -1, None, None] * dWn
                self.S[layer] += f[:, -1, None, None] * dWn
                self.beta[:, -1] += (dWn * W[layer]).sum((1, 2))
                self.f[:, -1] += (dWn * S[layer]).sum((1, 2))
                self.delta[layer] -= torch.bmm(hh * g_end[..., None], dWn.mT)
                dY = torch.bmm(d, dWn)
                self.h[layer] -= dY * g_end[..., None]
                self.G[:, -1] -= (dY * hh).sum(-1)
            if dSn is not None:
                self.S[layer] += m_end[:, None, None] * dSn
                self.m_end += (dSn * S[layer]).sum((1, 2))
                self.delta[layer] -= torch.bmm(hh * m_mix[..., None], dSn.mT)
                dY = torch.bmm(d, dSn)
                self.h[layer] -= dY * m_mix[..., None]
                self.m_mix -= (dY * hh).sum(-1)

    def retrieval(self, dy, W, S, h, delta, a, ah, u_d1, beta, f, G):
        """Through the dual-form retrieval, top layer down; u_d1 = s'(u_l) below the top; -> dq."""
        L = len(W)
        da = torch.zeros_like(delta[-1]) if dy is None else dy
        beta_, f_ = beta[..., None], f[..., None]
        for layer in range(L - 1, -1, -1):
            du = da if layer == L - 1 else da * u_d1[layer]
            self.W[layer] += torch.bmm(du.mT, a[layer] * beta_)
            self.S[layer] += torch.bmm(du.mT, a[layer] * f_)
            du_w, du_s = torch.bmm(du, W[layer]), torch.bmm(du, S[layer])
            self.beta += (a[layer] * du_w).sum(-1)
            self.f += (a[layer] * du_s).sum(-1)
            d_mix = -torch.bmm(du, delta[layer].mT)  # d/d((a h^T) o G)
            self.delta[layer] -= torch.bmm((ah[layer] * G).mT, du)
            self.G += d_mix * ah[layer]
            d_ah = d_mix * G
            da = beta_ * du_w + f_ * du_s + torch.bmm(d_ah, h[layer])
            self.h[layer] += torch.bmm(d_ah.mT, a[layer])
        return da

    def key_pass(self, R, h, z_d1, z_d2, delta, g, z_top, v, output_norm):
        """Through the surprise (bottom layer up) and the key forward (top down); -> dk, dv.

        z_d1, z_d2: s'(z_l), s''(z_l) below the top layer; z_top: the top pre-activation.
        """
        L = len(R)
        dz = [torch.zeros_like(x) for x in delta]
        for layer in range(L - 1):  # delta_l = s'(z_l) * (delta_{l+1} R_{l+1})
            dd = self.delta[layer]
            dz[layer] += dd * g[layer] * z_d2[layer]
            dg = dd * z_d1[layer]
            self.delta[layer + 1] += torch.bmm(dg, R[layer + 1].mT)
            self.R[layer + 1] += torch.bmm(delta[layer + 1].mT, dg)
        dz_top, dv = _top_surprise_backward(z_top, v, self.delta[L - 1], output_norm)
        dz[L - 1] += dz_top
        for layer in range(L - 1, -1, -1):  # z_l = h_l R_l^T, h_l = s(z_{l-1})
            self.R[layer] += torch.bmm(dz[layer].mT, h[layer])
            self.h[layer] += torch.bmm(dz[layer], R[layer])
            if layer > 0:
                dz[layer - 1] += self.h[layer] * z_d1[layer - 1]
        return self.h[0], dv

"""Triton device functions shared by the chunk-step kernels (`triton_forward.py`, `triton_backward.py`).

Imported only when the Triton backend runs (never by `import titans_lightning`). Shape legend:
BB = the chunk's tokens b padded to a power of two (at least 16, the smallest `tl.dot` size),
BD / BV / BH = the padded input, output and hidden widths; a tile's padded rows and columns are
zero on load and masked on store. Every function here is inlined into the kernels.

The activation is the exact GELU s(z) = z Phi(z) of `chunk._gelu_derivatives` (erf, not tanh);
the output norm is `chunk.layer_norm` (parameter-free, biased variance, eps inside the root).
"""

from __future__ import annotations

import math

import triton
import triton.language as tl

SQRT_HALF = tl.constexpr(1.0 / math.sqrt(2.0))
INV_SQRT_2PI = tl.constexpr(1.0 / math.sqrt(2.0 * math.pi))
LN_EPS = tl.constexpr(1e-5)  # chunk.LN_EPS


@triton.jit
def dot(a, b):
    """a @ b in true float32 (no TF32: the torch path's float32 matmuls are exact IEEE)."""
    return tl.dot(a, b, input_precision="ieee")


@triton.jit
def gelu(z):
    """s(z) = z Phi(z), elementwise."""
    return z * (0.5 + 0.5 * tl.math.erf(z * SQRT_HALF))


@triton.jit
def gelu_grad(z):
    """(s(z), s'(z)) = (z Phi, Phi + z phi)."""
    cdf = 0.5 + 0.5 * tl.math.erf(z * SQRT_HALF)
    pdf = tl.exp(z * z * -0.5) * INV_SQRT_2PI
    return z * cdf, cdf + z * pdf


@triton.jit
def gelu_grad2(z):
    """(s(z), s'(z), s''(z)), s'' = phi (2 - z^2)."""
    cdf = 0.5 + 0.5 * tl.math.erf(z * SQRT_HALF)
    pdf = tl.exp(z * z * -0.5) * INV_SQRT_2PI
    return z * cdf, cdf + z * pdf, pdf * (2.0 - z * z)


@triton.jit
def load_tile(ptr, row_stride, rows, cols, n_rows, n_cols):
    """(len(rows), len(cols)) tile of a row-major matrix at ptr, zero outside n_rows x n_cols."""
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    return tl.load(ptr + rows[:, None] * row_stride + cols[None, :], mask=mask, other=0.0)


@triton.jit
def store_tile(ptr, row_stride, rows, cols, n_rows, n_cols, value):
    """Store the valid n_rows x n_cols part of a tile (see `load_tile`)."""
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    tl.store(ptr + rows[:, None] * row_stride + cols[None, :], value, mask=mask)


@triton.jit
def load_row(ptr, cols, n_cols):
    """(len(cols),) vector at ptr, zero past n_cols."""
    return tl.load(ptr + cols, mask=cols < n_cols, other=0.0)


@triton.jit
def load_chunk(n, q_ptr, k_ptr, v_ptr, beta_ptr, f_ptr, G_ptr, m_end_ptr, m_mix_ptr,
               sq, sk, sv, sbeta, sf, sG, sme, smix, b, D, V,
               BB: tl.constexpr, BD: tl.constexpr, BV: tl.constexpr):
    """Memory n's chunk inputs: q, k (BB, BD), v (BB, BV); beta, f, the last row g_b of G and
    the mix (BB, 1) columns; G (BB, BB); the scalars beta_b, f_b, m_b. (s*: memory strides.)"""
    rb, rd, rv = tl.arange(0, BB), tl.arange(0, BD), tl.arange(0, BV)
    q = load_tile(q_ptr + n * sq, D, rb, rd, b, D)
    k = load_tile(k_ptr + n * sk, D, rb, rd, b, D)
    v = load_tile(v_ptr + n * sv, V, rb, rv, b, V)
    beta = load_row(beta_ptr + n * sbeta, rb, b)[:, None]
    f = load_row(f_ptr + n * sf, rb, b)[:, None]
    G = load_tile(G_ptr + n * sG, b, rb, rb, b, b)
    g_end = load_row(G_ptr + n * sG + (b - 1) * b, rb, b)[:, None]  # last row of G
    mix = load_row(m_mix_ptr + n * smix, rb, b)[:, None]
    beta_end, f_end = tl.load(beta_ptr + n * sbeta + b - 1), tl.load(f_ptr + n * sf + b - 1)
    m_end = tl.load(m_end_ptr + n * sme)
    return q, k, v, beta, f, G, g_end, mix, beta_end, f_end, m_end


@triton.jit
def ln_stats(z, col_mask, n):
    """LayerNorm of each row of z (BB, BV) over its n valid columns -> (o, sigma): o the
    normalised rows (zero in padded columns), sigma (BB,) the std with eps inside the root."""
    mean = tl.sum(z, 1) / n
    centred = tl.where(col_mask[None, :], z - mean[:, None], 0.0)
    sigma = tl.sqrt(tl.sum(centred * centred, 1) / n + LN_EPS)
    return centred / sigma[:, None], sigma


@triton.jit
def ln_jacobian(x, o, sigma, col_mask, n):
    """J x = (x - mean x - o mean(x o)) / sigma, the LayerNorm Jacobian (symmetric) at o, sigma;
    x zero in padded columns, the result too."""
    mean_x = tl.sum(x, 1) / n
    mean_xo = tl.sum(x * o, 1) / n
    out = (x - mean_x[:, None] - o * mean_xo[:, None]) / sigma[:, None]
    return tl.where(col_mask[None, :], out, 0.0)


@triton.jit
def top_surprise(z, v, col_mask, n, OUTPUT_NORM: tl.constexpr):
    """delta of the top layer (`chunk._top_surprise`): J(LN(z) - v) with the norm, z - v without."""
    if OUTPUT_NORM:
        o, sigma = ln_stats(z, col_mask, n)
        return ln_jacobian(o - v, o, sigma, col_mask, n)
    return z - v


@triton.jit
def top_surprise_backward(z, v, grad, col_mask, n, OUTPUT_NORM: tl.constexpr):
    """(dz, dv) through `top_surprise` (`chunk._top_surprise_backward`, the same closed form)."""
    if OUTPUT_NORM:
        o, sigma = ln_stats(z, col_mask, n)
        p = tl.where(col_mask[None, :], o - v, 0.0)
        delta = ln_jacobian(p, o, sigma, col_mask, n)
        j_grad = ln_jacobian(grad, o, sigma, col_mask, n)
        m = tl.sum(p * o, 1) / n
        dz = (1.0 - m)[:, None] / sigma[:, None] * j_grad
        dz -= (tl.sum(grad * o, 1) / n / sigma)[:, None] * ln_jacobian(o + p, o, sigma, col_mask, n)
        dz -= (tl.sum(grad * delta, 1) / n / sigma)[:, None] * o
        return dz, -j_grad
    return grad, -grad

"""The chunk step's forward as one Triton kernel: depth-2 GELU memory, with or without output norm.

Shape legend (per memory n, one program each): b = chunk tokens, D = input width i_0,
H = hidden width o_0 = i_1, V = output width o_1; BB, BD, BH, BV their padded tile sizes
(`triton_ops`). The kernel computes what `chunk.ChunkStep.forward` does, in the same order:

    key pass at R:  z0 = k R0^T, h1 = s(z0), z1 = h1 R1^T, delta1 = top(z1, v),
                    delta0 = s'(z0) * (delta1 R1)
    retrieval:      u0 = beta (q W0^T) + f (q S0^T) - ((q k^T) o G) delta0,  a1 = s(u0),
                    u1 = beta (a1 W1^T) + f (a1 S1^T) - ((a1 h1^T) o G) delta1,  y = LN(u1) or u1
    chunk end:      W'_l = beta_b W_l + f_b S_l - delta_l^T (g_b h_l),  S'_l = m_b S_l - delta_l^T (mix h_l)

The hidden width is walked in blocks of BH (two passes: z1 and delta1 need all of it first), so
no tile is wider than max(BD, BV) x BH. Besides y and WS' it writes z0, z1, delta0, delta1, u0, u1
(what `ChunkStep` saves; the backward kernel reads them instead of recomputing).
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_ops import dot, gelu, gelu_grad, ln_stats, load_chunk, load_tile, store_tile, top_surprise


@triton.jit
def _key_pass(k, v, r0, sr0_row, r1, sr1_row, z0_out, z1_out, d1_out, b, D, H: tl.constexpr, V,
              OUTPUT_NORM: tl.constexpr, BB: tl.constexpr, BD: tl.constexpr, BH: tl.constexpr,
              BV: tl.constexpr):
    """First pass over the hidden blocks: z0 (stored), z1 and delta1 (stored, returned (BB, BV))."""
    rb, rd, rh, rv = tl.arange(0, BB), tl.arange(0, BD), tl.arange(0, BH), tl.arange(0, BV)
    z1 = tl.zeros((BB, BV), dtype=tl.float32)
    for h0 in range(0, H, BH):
        R0 = load_tile(r0 + h0 * sr0_row, sr0_row, rh, rd, H - h0, D)  # (BH, BD)
        R1 = load_tile(r1 + h0, sr1_row, rv, rh, V, H - h0)  # (BV, BH)
        z0 = dot(k, tl.trans(R0))
        store_tile(z0_out + h0, H, rb, rh, b, H - h0, z0)
        z1 += dot(gelu(z0), tl.trans(R1))
    delta1 = top_surprise(z1, v, rv < V, V, OUTPUT_NORM)
    store_tile(z1_out, V, rb, rv, b, V, z1)
    store_tile(d1_out, V, rb, rv, b, V, delta1)
    return delta1


@triton.jit
def chunk_forward_kernel(
    q_ptr, k_ptr, v_ptr, beta_ptr, f_ptr, G_ptr, m_end_ptr, m_mix_ptr, ws0_ptr, ws1_ptr, r0_ptr, r1_ptr,
    y_ptr, ws0_out, ws1_out, z0_out, z1_out, d0_out, d1_out, u0_out, u1_out,
    sq, sk, sv, sbeta, sf, sG, sme, smix, sws0, sws1, sr0, sr0_row, sr1, sr1_row,
    b, D, H: tl.constexpr, V,
    OUTPUT_NORM: tl.constexpr, BB: tl.constexpr, BD: tl.constexpr, BH: tl.constexpr, BV: tl.constexpr,
):
    """One program per memory n: y (N, b, V), WS'_0 (N, H, 2D), WS'_1 (N, V, 2H) and the saved
    z0, delta0, u0 (N, b, H), z1, delta1, u1 (N, b, V). Inputs as `ChunkStep`'s; each input's
    memory stride is passed (s*), rows are contiguous except R's (s*_row)."""
    n = tl.program_id(0).to(tl.int64)
    rb, rd, rh, rv = tl.arange(0, BB), tl.arange(0, BD), tl.arange(0, BH), tl.arange(0, BV)
    q, k, v, beta, f, G, g_end, mix, beta_end, f_end, m_end = load_chunk(
        n, q_ptr, k_ptr, v_ptr, beta_ptr, f_ptr, G_ptr, m_end_ptr, m_mix_ptr, sq, sk, sv, sbeta, sf, sG, sme, smix,
        b, D, V, BB, BD, BV)
    r0, r1 = r0_ptr + n * sr0, r1_ptr + n * sr1
    ws0, ws1 = ws0_ptr + n * sws0, ws1_ptr + n * sws1
    nb_h, nb_v = n * b * H, n * b * V
    delta1 = _key_pass(k, v, r0, sr0_row, r1, sr1_row, z0_out + nb_h, z1_out + nb_v, d1_out + nb_v,
                       b, D, H, V, OUTPUT_NORM, BB, BD, BH, BV)
    qk_G = dot(q, tl.trans(k)) * G  # (q k^T) o G
    u1 = tl.zeros((BB, BV), dtype=tl.float32)
    ah1 = tl.zeros((BB, BB), dtype=tl.float32)  # a1 h1^T, summed over the hidden blocks
    for h0 in range(0, H, BH):
        R0 = load_tile(r0 + h0 * sr0_row, sr0_row, rh, rd, H - h0, D)
        R1 = load_tile(r1 + h0, sr1_row, rv, rh, V, H - h0)
        W0 = load_tile(ws0 + h0 * 2 * D, 2 * D, rh, rd, H - h0, D)  # (BH, BD)
        S0 = load_tile(ws0 + h0 * 2 * D + D, 2 * D, rh, rd, H - h0, D)
        W1 = load_tile(ws1 + h0, 2 * H, rv, rh, V, H - h0)  # (BV, BH)
        S1 = load_tile(ws1 + H + h0, 2 * H, rv, rh, V, H - h0)
        h1, ds = gelu_grad(dot(k, tl.trans(R0)))
        delta0 = ds * dot(delta1, R1)
        u0 = beta * dot(q, tl.trans(W0)) + f * dot(q, tl.trans(S0)) - dot(qk_G, delta0)
        a1 = gelu(u0)
        u1 += beta * dot(a1, tl.trans(W1)) + f * dot(a1, tl.trans(S1))
        ah1 += dot(a1, tl.trans(h1))
        store_tile(d0_out + nb_h + h0, H, rb, rh, b, H - h0, delta0)
        store_tile(u0_out + nb_h + h0, H, rb, rh, b, H - h0, u0)
        # chunk end of this hidden block (rows of layer 0, columns of layer 1)
        W0n = beta_end * W0 + f_end * S0 - dot(tl.trans(delta0), g_end * k)
        S0n = m_end * S0 - dot(tl.trans(delta0), mix * k)
        W1n = beta_end * W1 + f_end * S1 - dot(tl.trans(delta1), g_end * h1)
        S1n = m_end * S1 - dot(tl.trans(delta1), mix * h1)
        out0, out1 = ws0_out + n * H * 2 * D + h0 * 2 * D, ws1_out + n * V * 2 * H + h0
        store_tile(out0, 2 * D, rh, rd, H - h0, D, W0n)
        store_tile(out0 + D, 2 * D, rh, rd, H - h0, D, S0n)
        store_tile(out1, 2 * H, rv, rh, V, H - h0, W1n)
        store_tile(out1 + H, 2 * H, rv, rh, V, H - h0, S1n)
    u1 -= dot(ah1 * G, delta1)
    store_tile(u1_out + nb_v, V, rb, rv, b, V, u1)
    if OUTPUT_NORM:
        u1, _ = ln_stats(u1, rv < V, V)
    store_tile(y_ptr + nb_v, V, rb, rv, b, V, u1)


def padded(n: int) -> int:
    """The tile size of a dimension of n: the next power of two, at least 16 (`tl.dot`'s minimum)."""
    return max(16, 1 << (n - 1).bit_length())


def memory_stride(x):
    """x's stride between memories, after making its trailing dims contiguous (a chunk's view of
    the grid usually is: only the memory stride differs); -> (x, stride)."""
    expected = 1
    for size, stride in zip(reversed(x.shape[1:]), reversed(x.stride()[1:])):
        if size > 1 and stride != expected:
            x = x.contiguous()
            break
        expected *= size
    return x, x.stride(0)


def unit_columns(x):
    """x with a unit stride along its last dim (R_l: any memory and row strides are passed)."""
    return x if x.stride(-1) == 1 or x.shape[-1] == 1 else x.contiguous()


def chunk_forward(output_norm: bool, block_h: int, q, k, v, beta, f, G, m_end, m_mix, WS0, WS1, R0, R1):
    """Launch `chunk_forward_kernel` on float32 tensors (shapes as `ChunkStep`'s; R_l (N, o, i)
    with unit column stride, e.g. the W half of WS_l). -> (y, WS'_0, WS'_1, z0, z1, delta0,
    delta1, u0, u1)."""
    (q, sq), (k, sk), (v, sv) = memory_stride(q), memory_stride(k), memory_stride(v)
    (beta, sbeta), (f, sf), (G, sG) = memory_stride(beta), memory_stride(f), memory_stride(G)
    (m_end, sme), (m_mix, smix) = memory_stride(m_end), memory_stride(m_mix)
    (WS0, sws0), (WS1, sws1) = memory_stride(WS0), memory_stride(WS1)
    R0, R1 = unit_columns(R0), unit_columns(R1)
    N, b, D = q.shape
    H, V = WS0.shape[1], WS1.shape[1]
    new = q.new_empty
    y, ws0_out, ws1_out = new(N, b, V), new(N, H, 2 * D), new(N, V, 2 * H)
    z0, d0, u0, z1, d1, u1 = new(N, b, H), new(N, b, H), new(N, b, H), new(N, b, V), new(N, b, V), new(N, b, V)
    chunk_forward_kernel[(N,)](
        q, k, v, beta, f, G, m_end, m_mix, WS0, WS1, R0, R1, y, ws0_out, ws1_out, z0, z1, d0, d1, u0, u1,
        sq, sk, sv, sbeta, sf, sG, sme, smix, sws0, sws1, R0.stride(0), R0.stride(1), R1.stride(0), R1.stride(1),
        b, D, H, V, OUTPUT_NORM=output_norm, BB=padded(b), BD=padded(D), BH=min(block_h, padded(H)),
        BV=padded(V), num_warps=4, num_stages=1,
    )
    return y, ws0_out, ws1_out, z0, z1, d0, d1, u0, u1

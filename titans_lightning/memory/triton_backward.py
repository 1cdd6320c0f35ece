"""The chunk step's backward as one Triton kernel (the formulas of `chunk._Grads`, depth 2, GELU).

Shape legend as in `triton_forward.py`. Per memory n (one program), from dy (b, V) and dWS'_l,
with the forward's saved z0, delta0, u0 (b, H), z1, delta1, u1 (b, V):

    pass A, per hidden block (everything the block's columns determine):
        layer-1 retrieval  dWS1 += du1^T [beta a1 | f a1],  da1 = beta du1 W1 + f du1 S1 + d_ah1 h1
        layer-1 chunk end  dWS1 += [beta_b dW1' | f_b dW1' + m_b dS1'],  d_delta1, d_h1, dG[b-1]
        layer-0 retrieval  du0 = da1 s'(u0),  dWS0 += du0^T [beta q | f q],  d_delta0
        layer-0 chunk end  dWS0 += [beta_b dW0' | f_b dW0' + m_b dS0'],  d_delta0
        layer-0 surprise   delta0 = s'(z0) (delta1 R1):  dz0 += d_delta0 (delta1 R1) s''(z0),
                           d_delta1 += (d_delta0 s'(z0)) R1^T,  dR1 += delta1^T (d_delta0 s'(z0))
    between: d_delta1 complete -> (dz1, dv) through the top surprise; dq, the gate gradients
    pass B, per hidden block (the key forward z1 = s(z0) R1^T, z0 = k R0^T):
        dR1 += dz1^T h1,  dz0 += (dz1 R1) s'(z0),  dR0 = dz0^T k,  dk += dz0 R0

Pass A leaves its part of dz0 in a scratch buffer and its part of dR1 in dR1's destination;
pass B reads both back after a barrier (same program: its own writes). Without a separate R
(R = the W half of WS), dR's destination is the W half of dWS, which it joins.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_forward import memory_stride, padded, unit_columns
from .triton_ops import (
    dot,
    gelu_grad,
    gelu_grad2,
    ln_jacobian,
    ln_stats,
    load_chunk,
    load_tile,
    store_tile,
    top_surprise_backward,
)


@triton.jit
def _layer0_retrieval_end(q, k, beta, f, g_end, mix, beta_end, f_end, m_end, qk_G, du0, delta0,
                          ws0, dws0_new, dws0, h0, D, H, HAS_DWS0, BD: tl.constexpr, BH: tl.constexpr):
    """Layer 0 of pass A for hidden rows h0..h0+BH: stores the block's dWS0; returns dX_w, dX_s
    (BB, BD) partial sums, d_delta0 (BB, BH) and, through the chunk end, dY_end, dY_mix (BB, BD)
    partials and the (beta_b, f_b, m_b) gradient partials."""
    rd, rh = tl.arange(0, BD), tl.arange(0, BH)
    W0 = load_tile(ws0 + h0 * 2 * D, 2 * D, rh, rd, H - h0, D)  # (BH, BD)
    S0 = load_tile(ws0 + h0 * 2 * D + D, 2 * D, rh, rd, H - h0, D)
    dW0 = dot(tl.trans(du0), beta * q)
    dS0 = dot(tl.trans(du0), f * q)
    d_delta0 = -dot(tl.trans(qk_G), du0)
    dY_end = tl.zeros_like(q)
    dY_mix = tl.zeros_like(q)
    g_beta = tl.sum(tl.zeros_like(rd).to(tl.float32), 0)
    g_f = g_beta
    g_m = g_beta
    if HAS_DWS0:
        dW0n = load_tile(dws0_new + h0 * 2 * D, 2 * D, rh, rd, H - h0, D)
        dS0n = load_tile(dws0_new + h0 * 2 * D + D, 2 * D, rh, rd, H - h0, D)
        dW0 += beta_end * dW0n
        dS0 += f_end * dW0n + m_end * dS0n
        g_beta = tl.sum(tl.sum(dW0n * W0, 1), 0)
        g_f = tl.sum(tl.sum(dW0n * S0, 1), 0)
        g_m = tl.sum(tl.sum(dS0n * S0, 1), 0)
        d_delta0 -= dot(g_end * k, tl.trans(dW0n)) + dot(mix * k, tl.trans(dS0n))
        dY_end = dot(delta0, dW0n)
        dY_mix = dot(delta0, dS0n)
    store_tile(dws0 + h0 * 2 * D, 2 * D, rh, rd, H - h0, D, dW0)
    store_tile(dws0 + h0 * 2 * D + D, 2 * D, rh, rd, H - h0, D, dS0)
    return dot(du0, W0), dot(du0, S0), d_delta0, dY_end, dY_mix, g_beta, g_f, g_m


@triton.jit
def _layer1_retrieval_end(a1, h1, du1, d_ah1, delta1, beta, f, g_end, mix, beta_end, f_end, m_end,
                          ws1, dws1_new, h0, H, V, HAS_DWS1, BV: tl.constexpr, BH: tl.constexpr):
    """Layer 1 of pass A for hidden columns h0..h0+BH: returns the block's dW1, dS1 (BV, BH)
    (stored by the caller once dR1's part is known), da1, d_h1 (BB, BH), d_delta1's part
    (BB, BV), the row sums for d_beta, d_f, dG's last row, d_mix (BB,) and the (beta_b, f_b,
    m_b) gradient partials."""
    rv, rh = tl.arange(0, BV), tl.arange(0, BH)
    W1 = load_tile(ws1 + h0, 2 * H, rv, rh, V, H - h0)  # (BV, BH)
    S1 = load_tile(ws1 + H + h0, 2 * H, rv, rh, V, H - h0)
    dW1 = dot(tl.trans(du1), beta * a1)
    dS1 = dot(tl.trans(du1), f * a1)
    dX_w, dX_s = dot(du1, W1), dot(du1, S1)
    g_beta_rows, g_f_rows = tl.sum(a1 * dX_w, 1), tl.sum(a1 * dX_s, 1)
    da1 = beta * dX_w + f * dX_s + dot(d_ah1, h1)
    d_h1 = dot(tl.trans(d_ah1), a1)
    d_delta1 = tl.zeros_like(du1)
    g_end_rows = tl.zeros_like(g_beta_rows)
    g_mix_rows = tl.zeros_like(g_beta_rows)
    g_beta = tl.sum(g_mix_rows, 0)
    g_f = g_beta
    g_m = g_beta
    if HAS_DWS1:
        dW1n = load_tile(dws1_new + h0, 2 * H, rv, rh, V, H - h0)
        dS1n = load_tile(dws1_new + H + h0, 2 * H, rv, rh, V, H - h0)
        dW1 += beta_end * dW1n
        dS1 += f_end * dW1n + m_end * dS1n
        g_beta = tl.sum(tl.sum(dW1n * W1, 1), 0)
        g_f = tl.sum(tl.sum(dW1n * S1, 1), 0)
        g_m = tl.sum(tl.sum(dS1n * S1, 1), 0)
        d_delta1 = -(dot(g_end * h1, tl.trans(dW1n)) + dot(mix * h1, tl.trans(dS1n)))
        dY_end, dY_mix = dot(delta1, dW1n), dot(delta1, dS1n)
        d_h1 -= g_end * dY_end + mix * dY_mix
        g_end_rows = -tl.sum(dY_end * h1, 1)
        g_mix_rows = -tl.sum(dY_mix * h1, 1)
    return dW1, dS1, da1, d_h1, d_delta1, g_beta_rows, g_f_rows, g_end_rows, g_mix_rows, g_beta, g_f, g_m


@triton.jit
def _pass_b(k, dz1, r0, sr0_row, r1, sr1_row, z0_in, dz0_tmp, dr0, sdr0_row, dr1, sdr1_row, b, D, H: tl.constexpr, V,
            SEPARATE_R: tl.constexpr, BB: tl.constexpr, BD: tl.constexpr, BH: tl.constexpr, BV: tl.constexpr):
    """Through the key forward, per hidden block: dR1 += dz1^T h1, dz0 += (dz1 R1) s'(z0),
    dR0 += dz0^T k (added to what its destination holds unless SEPARATE_R); returns dk's part
    dz0 R0 (BB, BD)."""
    rb, rd, rh, rv = tl.arange(0, BB), tl.arange(0, BD), tl.arange(0, BH), tl.arange(0, BV)
    dk = tl.zeros((BB, BD), dtype=tl.float32)
    for h0 in range(0, H, BH):
        R0 = load_tile(r0 + h0 * sr0_row, sr0_row, rh, rd, H - h0, D)
        R1 = load_tile(r1 + h0, sr1_row, rv, rh, V, H - h0)
        h1, ds = gelu_grad(load_tile(z0_in + h0, H, rb, rh, b, H - h0))
        dR1 = load_tile(dr1 + h0, sdr1_row, rv, rh, V, H - h0) + dot(tl.trans(dz1), h1)
        store_tile(dr1 + h0, sdr1_row, rv, rh, V, H - h0, dR1)
        dz0 = load_tile(dz0_tmp + h0, H, rb, rh, b, H - h0) + dot(dz1, R1) * ds
        dR0 = dot(tl.trans(dz0), k)
        if not SEPARATE_R:  # the W half of dWS0, filled by pass A
            dR0 += load_tile(dr0 + h0 * sdr0_row, sdr0_row, rh, rd, H - h0, D)
        store_tile(dr0 + h0 * sdr0_row, sdr0_row, rh, rd, H - h0, D, dR0)
        dk += dot(dz0, R0)
    return dk


@triton.jit
def _store_gates(n, b, g_beta_rows, g_f_rows, g_end_rows, g_mix_rows, g_beta_end, g_f_end, g_m_end, dG,
                 dbeta_ptr, df_ptr, dG_ptr, dm_end_ptr, dm_mix_ptr, BB: tl.constexpr):
    """Store memory n's gate gradients: the per-token row sums (BB,), with the chunk end's
    scalars added at token b-1 (beta_b, f_b) and its row sums to G's last row."""
    rb = tl.arange(0, BB)
    last = rb == b - 1
    tl.store(dbeta_ptr + n * b + rb, tl.where(last, g_beta_rows + g_beta_end, g_beta_rows), mask=rb < b)
    tl.store(df_ptr + n * b + rb, tl.where(last, g_f_rows + g_f_end, g_f_rows), mask=rb < b)
    tl.store(dm_mix_ptr + n * b + rb, g_mix_rows, mask=rb < b)
    tl.store(dm_end_ptr + n, g_m_end)
    dG = tl.where(last[:, None], dG + g_end_rows[None, :], dG)
    store_tile(dG_ptr + n * b * b, b, rb, rb, b, b, dG)


@triton.jit(do_not_specialize=["HAS_DY", "HAS_DWS0", "HAS_DWS1"])
def chunk_backward_kernel(
    q_ptr, k_ptr, v_ptr, beta_ptr, f_ptr, G_ptr, m_end_ptr, m_mix_ptr, ws0_ptr, ws1_ptr, r0_ptr, r1_ptr,
    z0_in, z1_in, d0_in, d1_in, u0_in, u1_in, dy_ptr, dws0_new, dws1_new,
    dq_ptr, dk_ptr, dv_ptr, dbeta_ptr, df_ptr, dG_ptr, dm_end_ptr, dm_mix_ptr, dws0_ptr, dws1_ptr,
    dr0_ptr, dr1_ptr, dz0_tmp,
    sq, sk, sv, sbeta, sf, sG, sme, smix, sws0, sws1, sr0, sr0_row, sr1, sr1_row,
    sdr0, sdr0_row, sdr1, sdr1_row,
    b, D, H: tl.constexpr, V,
    HAS_DY, HAS_DWS0, HAS_DWS1,
    OUTPUT_NORM: tl.constexpr, SEPARATE_R: tl.constexpr, BB: tl.constexpr, BD: tl.constexpr, BH: tl.constexpr,
    BV: tl.constexpr,
):
    """One program per memory n: the gradients of every input of the forward kernel. Outputs are
    contiguous (N, ...) buffers except dR's destination (sdr*: memory and row strides). HAS_DY,
    HAS_DWS0, HAS_DWS1: 0 where that output got no gradient (its pointer is then a dummy); runtime
    flags, not specialised, so those cases share one compiled kernel."""
    n = tl.program_id(0).to(tl.int64)
    rb, rd, rh, rv = tl.arange(0, BB), tl.arange(0, BD), tl.arange(0, BH), tl.arange(0, BV)
    q, k, v, beta, f, G, g_end, mix, beta_end, f_end, m_end = load_chunk(
        n, q_ptr, k_ptr, v_ptr, beta_ptr, f_ptr, G_ptr, m_end_ptr, m_mix_ptr, sq, sk, sv, sbeta, sf, sG, sme, smix,
        b, D, V, BB, BD, BV)
    nb_h, nb_v = n * b * H, n * b * V
    z1 = load_tile(z1_in + nb_v, V, rb, rv, b, V)
    delta1 = load_tile(d1_in + nb_v, V, rb, rv, b, V)
    du1 = tl.zeros((BB, BV), dtype=tl.float32)
    if HAS_DY:
        du1 = load_tile(dy_ptr + nb_v, V, rb, rv, b, V)
        if OUTPUT_NORM:
            o, sigma = ln_stats(load_tile(u1_in + nb_v, V, rb, rv, b, V), rv < V, V)
            du1 = ln_jacobian(du1, o, sigma, rv < V, V)
    d_mixed1 = -dot(du1, tl.trans(delta1))  # d/d((a1 h1^T) o G)
    qk = dot(q, tl.trans(k))
    ws0, ws1, dws0, dws1 = ws0_ptr + n * sws0, ws1_ptr + n * sws1, dws0_ptr + n * H * 2 * D, dws1_ptr + n * V * 2 * H
    r0, r1, dr0, dr1 = r0_ptr + n * sr0, r1_ptr + n * sr1, dr0_ptr + n * sdr0, dr1_ptr + n * sdr1
    dws0_n, dws1_n = dws0_new + n * H * 2 * D, dws1_new + n * V * 2 * H
    d_delta1 = tl.zeros((BB, BV), dtype=tl.float32)
    ah1 = tl.zeros((BB, BB), dtype=tl.float32)
    d_mixed0 = tl.zeros((BB, BB), dtype=tl.float32)
    dX_w0 = tl.zeros((BB, BD), dtype=tl.float32)
    dX_s0 = tl.zeros((BB, BD), dtype=tl.float32)
    dY_end0 = tl.zeros((BB, BD), dtype=tl.float32)
    dY_mix0 = tl.zeros((BB, BD), dtype=tl.float32)
    g_beta_rows = tl.zeros((BB,), dtype=tl.float32)
    g_f_rows = tl.zeros((BB,), dtype=tl.float32)
    g_end_rows = tl.zeros((BB,), dtype=tl.float32)
    g_mix_rows = tl.zeros((BB,), dtype=tl.float32)
    g_beta_end = tl.sum(g_mix_rows, 0)  # float32 scalars
    g_f_end = g_beta_end
    g_m_end = g_beta_end
    for h0 in range(0, H, BH):  # pass A
        z0 = load_tile(z0_in + nb_h + h0, H, rb, rh, b, H - h0)
        h1, dsz, d2sz = gelu_grad2(z0)
        a1, dsu = gelu_grad(load_tile(u0_in + nb_h + h0, H, rb, rh, b, H - h0))
        delta0 = load_tile(d0_in + nb_h + h0, H, rb, rh, b, H - h0)
        ah1 += dot(a1, tl.trans(h1))
        dW1, dS1, da1, d_h1, dd1, gb, gf, ge, gm, sb, sf_, sm = _layer1_retrieval_end(
            a1, h1, du1, d_mixed1 * G, delta1, beta, f, g_end, mix, beta_end, f_end, m_end,
            ws1, dws1_n, h0, H, V, HAS_DWS1, BV, BH)
        d_delta1 += dd1
        g_beta_rows += gb
        g_f_rows += gf
        g_end_rows += ge
        g_mix_rows += gm
        du0 = da1 * dsu
        dxw, dxs, d_delta0, dye, dym, sb0, sf0, sm0 = _layer0_retrieval_end(
            q, k, beta, f, g_end, mix, beta_end, f_end, m_end, qk * G, du0, delta0,
            ws0, dws0_n, dws0, h0, D, H, HAS_DWS0, BD, BH)
        dX_w0 += dxw
        dX_s0 += dxs
        dY_end0 += dye
        dY_mix0 += dym
        g_beta_end += sb + sb0
        g_f_end += sf_ + sf0
        g_m_end += sm + sm0
        d_mixed0 -= dot(du0, tl.trans(delta0))
        # layer-0 surprise: delta0 = s'(z0) * (delta1 R1)
        R1 = load_tile(r1 + h0, sr1_row, rv, rh, V, H - h0)
        dg = d_delta0 * dsz
        dz0 = d_delta0 * dot(delta1, R1) * d2sz + d_h1 * dsz
        store_tile(dz0_tmp + nb_h + h0, H, rb, rh, b, H - h0, dz0)
        d_delta1 += dot(dg, tl.trans(R1))
        dR1 = dot(tl.trans(delta1), dg)
        if SEPARATE_R:
            store_tile(dr1 + h0, sdr1_row, rv, rh, V, H - h0, dR1)
        else:  # R1 is the W half of WS1: its gradient joins dWS1's
            dW1 += dR1
        store_tile(dws1 + h0, 2 * H, rv, rh, V, H - h0, dW1)
        store_tile(dws1 + H + h0, 2 * H, rv, rh, V, H - h0, dS1)
    d_delta1 -= dot(tl.trans(ah1 * G), du1)
    dz1, dv = top_surprise_backward(z1, v, d_delta1, rv < V, V, OUTPUT_NORM)
    store_tile(dv_ptr + nb_v, V, rb, rv, b, V, dv)
    d_ah0 = d_mixed0 * G
    store_tile(dq_ptr + n * b * D, D, rb, rd, b, D, beta * dX_w0 + f * dX_s0 + dot(d_ah0, k))
    g_beta_rows += tl.sum(q * dX_w0, 1)
    g_f_rows += tl.sum(q * dX_s0, 1)
    g_end_rows -= tl.sum(dY_end0 * k, 1)
    g_mix_rows -= tl.sum(dY_mix0 * k, 1)
    _store_gates(n, b, g_beta_rows, g_f_rows, g_end_rows, g_mix_rows, g_beta_end, g_f_end, g_m_end,
                 d_mixed1 * ah1 + d_mixed0 * qk, dbeta_ptr, df_ptr, dG_ptr, dm_end_ptr, dm_mix_ptr, BB)
    dk = dot(tl.trans(d_ah0), q) - (g_end * dY_end0 + mix * dY_mix0)
    tl.debug_barrier()  # pass B reads this program's dz0 scratch and dR destinations back
    dk += _pass_b(k, dz1, r0, sr0_row, r1, sr1_row, z0_in + nb_h, dz0_tmp + nb_h, dr0, sdr0_row, dr1,
                  sdr1_row, b, D, H, V, SEPARATE_R, BB, BD, BH, BV)
    store_tile(dk_ptr + n * b * D, D, rb, rd, b, D, dk)


def chunk_backward(output_norm: bool, block_h: int, inputs, saved, dy, dws0_new, dws1_new, separate_ref: bool):
    """Launch `chunk_backward_kernel`. inputs: the forward's (q, k, v, beta, f, G, m_end, m_mix,
    WS0, WS1, R0, R1), R_l the W half of WS_l unless separate_ref; saved: its (z0, z1, delta0,
    delta1, u0, u1); dy, dWS'_l: incoming gradients or None. -> the gradients of (q, k, v, beta,
    f, G, m_end, m_mix, WS0, WS1) and, if separate_ref, of (R0, R1) (else they join dWS's W half)."""
    q, k, v, beta, f, G, m_end, m_mix, WS0, WS1, R0, R1 = inputs
    (q, sq), (k, sk), (v, sv) = memory_stride(q), memory_stride(k), memory_stride(v)
    (beta, sbeta), (f, sf), (G, sG) = memory_stride(beta), memory_stride(f), memory_stride(G)
    (m_end, sme), (m_mix, smix) = memory_stride(m_end), memory_stride(m_mix)
    (WS0, sws0), (WS1, sws1) = memory_stride(WS0), memory_stride(WS1)
    R0, R1 = unit_columns(R0), unit_columns(R1)
    N, b, D = q.shape
    H, V = WS0.shape[1], WS1.shape[1]
    dy, dws0_new, dws1_new = (None if x is None else x.contiguous() for x in (dy, dws0_new, dws1_new))
    new = q.new_empty
    dq, dk, dv, dbeta, df, dG = new(N, b, D), new(N, b, D), new(N, b, V), new(N, b), new(N, b), new(N, b, b)
    dm_end, dm_mix, dws0, dws1, dz0_tmp = new(N), new(N, b), new(N, H, 2 * D), new(N, V, 2 * H), new(N, b, H)
    dR0, dR1 = (new(N, H, D), new(N, V, H)) if separate_ref else (dws0[..., :D], dws1[..., :H])
    chunk_backward_kernel[(N,)](
        q, k, v, beta, f, G, m_end, m_mix, WS0, WS1, R0, R1, *saved,
        q if dy is None else dy, q if dws0_new is None else dws0_new, q if dws1_new is None else dws1_new,
        dq, dk, dv, dbeta, df, dG, dm_end, dm_mix, dws0, dws1, dR0, dR1, dz0_tmp,
        sq, sk, sv, sbeta, sf, sG, sme, smix, sws0, sws1, R0.stride(0), R0.stride(1), R1.stride(0), R1.stride(1),
        dR0.stride(0), dR0.stride(1), dR1.stride(0), dR1.stride(1),
        b, D, H, V, int(dy is not None), int(dws0_new is not None), int(dws1_new is not None),
        OUTPUT_NORM=output_norm, SEPARATE_R=separate_ref, BB=padded(b), BD=padded(D),
        BH=min(block_h, padded(H)), BV=padded(V), num_warps=4, num_stages=1,
    )
    grads = (dq, dk, dv, dbeta, df, dG, dm_end, dm_mix, dws0, dws1)
    return grads + (dR0, dR1) if separate_ref else grads

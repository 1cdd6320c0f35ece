"""Per-channel forgetting (the NeurIPS option): every output row of every memory layer decays by
its own alpha. Shapes as in `functional.py`, plus o = a layer's output width (its channels).

Per token and layer, with alpha_t now a vector over the layer's channels (rows of W):

    S_t = eta_t S_{t-1} - theta_t grad l(W_ref; k_t, v_t)
    W_t = diag(1 - alpha_t) W_{t-1} + u_t S_t

Each row is the scalar recurrence of `functional.py` with its own beta, so inside a chunk

    W_t[r] = beta_t[r] W[r] + f_t[r] S[r] - sum_{s<=t} G_{t,s}[r] delta_s[r] h_s^T,

and retrieval's mixing `(a h^T) o G` becomes a per-channel b x b contraction. G is (o, b, b) per
memory and chunk, so it is built chunk by chunk (not for the whole call) and the chunk is
differentiated by autograd: an option that costs about b times more mixing work than the shared
alpha, for a more expressive forgetting. Tested against the same token-by-token reference.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from .chunk import DERIVATIVES, _key_pass, layer_norm
from .gates import channel_gates
from .grid import Grid
from .state import FastWeightState


def channel_chunk(activation, output_norm, q, k, v, beta, f, G, m_end, m_mix, W, S, R):
    """One chunk with per-channel gates, in differentiable ops -> (y, W', S').

    Args:
        q, k (N, b, i_0), v (N, b, o_L); per layer l: beta[l], f[l] (N, b, o_l), G[l] (N, o_l, b, b);
        m_end (N,), m_mix (N, b) (momentum is shared by all channels); W, S, R per layer (N, o_l, i_l).
    """
    act, act_backward, _ = DERIVATIVES[activation]
    L = len(W)
    h, _, delta = _key_pass(R, k, v, act, act_backward, output_norm)  # the shared gate's key pass (plain ops)
    a, new_W, new_S = q, [], []
    for layer in range(L):
        mixed = torch.bmm(a, h[layer].mT)[:, None] * G[layer]  # (N, o, b, b)
        recalled = (mixed @ delta[layer].mT[..., None]).squeeze(-1).mT  # (N, b, o)
        u = beta[layer] * torch.bmm(a, W[layer].mT) + f[layer] * torch.bmm(a, S[layer].mT) - recalled
        a = act(u) if layer < L - 1 else u
        end = G[layer][:, :, -1, :].mT * delta[layer]  # (N, b, o): G_{b,s}[r] delta_s[r]
        new_W.append(beta[layer][:, -1, :, None] * W[layer] + f[layer][:, -1, :, None] * S[layer] - end.mT @ h[layer])
        new_S.append(m_end[:, None, None] * S[layer] - (m_mix[..., None] * delta[layer]).mT @ h[layer])
    return (layer_norm(a) if output_norm else a), new_W, new_S


def run_channel_chunks(q, k, v, lr, momentum, decays, write, state, chunk_size, activation, output_norm):
    """The per-channel-decay path: gates built chunk by chunk, each chunk by autograd."""
    T = q.shape[1]
    grid = Grid.plan(state, T, chunk_size)
    lrs, moms, writes = (grid(x, fill).unbind(1) for x, fill in ((2 * lr, 0.0), (momentum, 1.0), (write, 0.0)))
    qs, ks, vs = (grid(x).unbind(1) for x in (q, k, v))
    decays = [grid(d).unbind(1) for d in decays]
    W, S, ys, ref = list(state.weights), list(state.momentum), [], grid.ref
    L = len(W)
    for c in range(grid.chunks):
        step = (activation, output_norm, L, qs[c], ks[c], vs[c], lrs[c], moms[c], writes[c], *(d[c] for d in decays),
                *W, *S, *(ref or W))
        if torch.is_grad_enabled():  # recomputed in backward: the (N, o, b, b) mixings are never all held
            y, *WS = checkpoint(_channel_step, *step, use_reentrant=False)
        else:
            y, *WS = _channel_step(*step)
        new_W, S = WS[:L], WS[L:]
        ys.append(y)
        ref_out, ref, W = tuple(ref or W), (), new_W
    return grid.ungrid(ys, T), FastWeightState(tuple(W), tuple(S), ref_out, state.position + T)


def _channel_step(activation, output_norm, L, q, k, v, lr, momentum, write, *tensors):
    """Gates and chunk of the per-channel path -> (y, W'..., S'...); tensors = decays, W, S, R."""
    decays, W, S, R = (list(tensors[i * L : (i + 1) * L]) for i in range(4))
    gates = channel_gates(lr, momentum, decays, write)
    y, new_W, new_S = channel_chunk(activation, output_norm, q, k, v, *gates, W, S, R)
    return (y, *new_W, *new_S)

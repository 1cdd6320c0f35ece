"""The benchmarks' FLOP counter: the ops torch's FlopCounterMode misses are counted, correctly."""

import re

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.flops import counted_flops
from titans_lightning.backbone import TitansBackbone, TitansConfig


class _Attention(nn.Module):
    """q = k = v = x viewed as (B, heads, T, d); returns (out, None) like a backbone."""

    def __init__(self, heads: int, causal: bool, mask: bool = False) -> None:
        super().__init__()
        self.heads, self.causal, self.mask = heads, causal, mask
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        B, T, D = x.shape
        q = (x * self.scale).view(B, T, self.heads, D // self.heads).transpose(1, 2)
        mask = torch.ones(T, T, dtype=torch.bool).tril() if self.mask else None
        return F.scaled_dot_product_attention(q, q, q, attn_mask=mask, is_causal=self.causal), None


def test_cpu_attention_counted_forward_and_backward_half_when_causal():
    B, H, T, d = 2, 2, 64, 8
    x = torch.randn(B, T, H * d)
    full = 4 * B * H * T * T * d  # QK^T and PV, 2 flops per multiply-add
    total = full + 5 * full // 2  # backward: scores recomputed, dV, dP, dQ, dK
    assert counted_flops(_Attention(H, causal=False), x) == total
    assert counted_flops(_Attention(H, causal=True), x) == full // 2 + 5 * full // 4
    assert counted_flops(_Attention(H, causal=False, mask=True), x) == total  # a mask is computed in full


class _InPlaceProduct(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 5, 7))

    def forward(self, x):  # x (3, 4, 5): acc (3, 4, 7) += x @ w, in place
        acc = torch.zeros(3, 4, 7)
        acc.baddbmm_(x, self.w)
        return acc, None


def test_in_place_products_counted():
    x = torch.randn(3, 4, 5)
    forward = 2 * 3 * 4 * 5 * 7
    assert counted_flops(_InPlaceProduct(), x) == forward + forward  # backward: d/dw only (x needs no grad)


def test_backbone_transformer_count_includes_attention():
    cfg = TitansConfig.from_name("debug", variant="transformer", persistent_tokens=0)
    model = TitansBackbone(cfg)
    short, long = (counted_flops(model, torch.randn(1, T, cfg.dim)) for T in (64, 128))
    assert long > 2 * short  # everything but attention doubles with the tokens; attention quadruples


def test_bench_backbone_train_prints_the_flop_ledger_and_floors(capsys):
    from benchmarks import bench_backbone
    from titans_lightning.memory import layer

    real_write = layer.neural_memory
    threads = torch.get_num_threads()  # main() pins one thread and keeps its --set overrides
    try:
        bench_backbone.main(["train", "--seqs", "32", "--rounds", "1", "--floor", "--variants", "lmm",
                             "transformer", "--set", "dim=32", "depth=1", "chunk_size=8"])
    finally:
        torch.set_num_threads(threads)
        bench_backbone.OVERRIDES.clear()
    assert layer.neural_memory is real_write  # the stand-in never outlives its contender
    out = capsys.readouterr().out
    assert "GFLOP/step" in out
    chunk_rate = re.search(r"memory chunk products alone \(hot, batch \d+\): ([0-9.]+) GFLOP/s", out)
    assert chunk_rate and float(chunk_rate.group(1)) > 0  # the ceiling the floors divide by
    rows = {row[1]: row for row in (line.split() for line in out.splitlines()) if row[:1] == ["32"]}
    assert set(rows) == {"lmm", "transformer", "lmm-nowrite"}
    assert all(float(row[-2]) > 0 and float(row[-1]) > 0 for row in rows.values())  # GFLOP/step, GFLOP/s
    assert float(rows["lmm-nowrite"][-2]) < float(rows["lmm"][-2])  # the stub removed the writes' products
    assert "lmm: " in out and "at best" in out


def test_write_stand_in_keeps_projections_in_the_graph():
    from benchmarks import bench_backbone

    model = bench_backbone.TitansBackbone(bench_backbone.TitansConfig.from_name("debug", variant="lmm"))
    with bench_backbone.memory_writes(stubbed=True):
        h, _ = model(torch.randn(2, 16, model.dim))
        h.square().mean().backward()
    memory = next(m for m in model.modules() if type(m).__name__ == "NeuralMemory")
    assert memory.to_qkv.weight.grad is not None and memory.to_gates.weight.grad is not None
    assert memory.memory_init[0].grad is None  # M_0 is only read by the real write

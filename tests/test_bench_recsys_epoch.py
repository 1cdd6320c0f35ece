"""The recommendation epoch-cost benchmark (docs/results/recsys-epoch-cost.md) runs its recipes on
the shipped Beauty data and prints one row per order and model, ratios to the first model."""

import re

from benchmarks import bench_recsys_epoch


def test_bench_recsys_epoch_prints_each_order_and_model(capsys):
    bench_recsys_epoch.main(["--models", "sasrec", "lmm", "--batches", "2", "--rounds", "1"])
    out = capsys.readouterr().out
    rows = re.findall(r"^\| (random|grouped) \| (\w+) \| (\d+)% \| ([\d.]+) \| (\d+) \| ([\d.]+)x \|$", out, flags=re.M)
    assert [(r[0], r[1]) for r in rows] == [("random", "sasrec"), ("random", "lmm"), ("grouped", "sasrec"),
                                           ("grouped", "lmm")], out
    assert rows[0][5] == rows[2][5] == "1.00" and int(rows[2][2]) > int(rows[0][2])  # grouped: more real positions

"""The activation-checkpointing benchmark runs its modes in fresh processes and prints the table."""

import re

from benchmarks import bench_checkpointing


def test_bench_checkpointing_prints_every_mode(capsys):
    bench_checkpointing.main(["--seq", "64", "--steps", "1", "--segment", "2", "--modes", "none", "both",
                              "--rounds", "1"])
    out = capsys.readouterr().out
    rows = re.findall(r"^(none|both)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, flags=re.M)
    assert [r[0] for r in rows] == ["none", "both"], out
    assert rows[0][2] == "1.00" and rows[0][4] == "1.00" and float(rows[1][3]) > 0

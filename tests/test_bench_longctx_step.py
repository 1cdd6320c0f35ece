"""``benchmarks/bench_longctx_step.py``: cases parse (and bad ones say the form), and a small case of
a memory variant runs through the recipe's model and prints its row."""

from __future__ import annotations

import pytest

from benchmarks import bench_longctx_step as bench


def test_cases_parse_and_a_bad_one_names_the_form():
    assert bench.parse_case("mac:512:4") == ("mac", 512, 4, None, None)
    assert bench.parse_case("lmm:2048:4:64") == ("lmm", 2048, 4, 64, 64)
    assert bench.parse_case("mac:512:4:16:64") == ("mac", 512, 4, 16, 64)
    with pytest.raises(SystemExit, match="variant:length:batch"):
        bench.parse_case("mac:512")


def test_the_recipe_model_is_built_with_the_case_segment():
    task = bench.build("mac", 32)
    assert task.backbone.config.segment_len == task.backbone.config.chunk_size == 32
    assert bench.build("mac", 16, 64).backbone.config.chunk_size == 64
    assert task.backbone.config.dim == 64 and task.context_loss_weight == 1.0  # the recipe's


def test_a_small_case_prints_its_row(capsys):
    bench.main(["--cases", "mac:160:1", "lmm:160:1:32", "--warmup", "0", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "| mac | recipe | 160 x 1 |" in out and "| lmm | 32 / 32 | 160 x 1 |" in out

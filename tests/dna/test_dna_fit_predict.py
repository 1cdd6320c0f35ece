"""``titans fit`` then ``titans predict`` through the DNA recipes, on a file of each new kind: a
CSV with a split column, one file per split, BED intervals on a gzipped genome, and a pretraining
model scoring a FASTA file; the recipe's writer puts ``predictions.csv`` in the predict run folder."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import polars as pl
import pytest
import yaml

from titans_lightning.backbone.config import SIZES
from titans_lightning.cli import main
from titans_lightning.runs import QUIET, newest_version

RNG = random.Random(0)
# The recipes' widths back to None so that size=debug fills them (as tests/test_recipes.py does).
DEBUG = {"model": {"init_args": {"backbone": {"size": "debug",
                                              **dict.fromkeys([*SIZES["debug"], "mlp_hidden", "memory_tokens"])}}}}


def random_dna(n: int) -> str:
    return "".join(RNG.choice("ACGT") for _ in range(n))


def gz(path: Path, text: str) -> str:
    path.write_bytes(gzip.compress(text.encode()))
    return str(path)


def split_column_case(tmp: Path) -> tuple[list[str], list[str]]:
    """A CSV with train / test rows (validation carved from training); predict a gzipped FASTA."""
    rows = "".join(f"{random_dna(12)},{'ab'[i % 2]},{'test' if i % 5 == 0 else 'train'}\n" for i in range(60))
    (tmp / "d.csv").write_text("sequence,label,split\n" + rows)
    return ["--data.path", str(tmp / "d.csv"), "--data.split_column", "split",
            "--data.predict_path", gz(tmp / "p.fa.gz", ">s1\nACGTAC\n>s2\nGGTTAACC\n")], ["s1", "s2"]


def split_files_case(tmp: Path) -> tuple[list[str], list[str]]:
    """A training CSV and a class -> FASTA test mapping; predict a CSV with an id column."""
    (tmp / "train.csv").write_text("sequence,label\n" + "".join(f"{random_dna(10)},{'xy'[i % 2]}\n"
                                                                for i in range(40)))
    test = {}
    for name in "xy":
        (tmp / f"{name}.fa").write_text("".join(f">{name}{i}\n{random_dna(10)}\n" for i in range(4)))
        test[name] = str(tmp / f"{name}.fa")
    (tmp / "p.csv").write_text("name,sequence\nq1,ACGTTT\nq2,TTTACG\nq3,GATTACA\n")
    return ["--data.train_path", str(tmp / "train.csv"), "--data.test_path", yaml.safe_dump(test).strip(),
            "--data.predict_path", str(tmp / "p.csv"), "--data.id_column", "name"], ["q1", "q2", "q3"]


def bed_case(tmp: Path) -> tuple[list[str], list[str]]:
    """Intervals on both strands of a gzipped genome, 16-base windows; predict a FASTA."""
    genome = {"chr1": random_dna(400), "chr2": random_dna(300)}
    gz(tmp / "g.fa.gz", "".join(f">{name}\n{seq}\n" for name, seq in genome.items()))
    lines = [f"chr{1 + i % 2}\t{20 + 7 * i}\t{30 + 7 * i}\t{'pn'[i % 3 == 0]}\t0\t{'+-'[i % 2]}\n" for i in range(36)]
    (tmp / "r.bed").write_text("".join(lines))
    return ["--data.bed", str(tmp / "r.bed"), "--data.genome", str(tmp / "g.fa.gz"), "--data.window", "16",
            "--data.predict_path", str(tmp / "p.fa")], ["w1"]


def pretrain_case(tmp: Path) -> tuple[list[str], list[str]]:
    """A pretraining model scores each sequence of a gzipped FASTA in bits per nucleotide."""
    return ["--data.predict_path", gz(tmp / "p.fa.gz", f">long\n{random_dna(150)}\n>short\nACGTTA\n")], \
        ["long", "short"]


CASES = [
    pytest.param("debug.yaml", split_column_case, id="split-column"),
    pytest.param("debug.yaml", split_files_case, id="split-files"),
    pytest.param("debug.yaml", bed_case, id="bed-genome"),
    pytest.param("pretrain.yaml", pretrain_case, id="pretrain-bits"),
]


@pytest.mark.parametrize("recipe, case", CASES)
def test_fit_then_predict(tmp_path, recipe, case):
    (tmp_path / "p.fa").write_text(">w1\nACGTACGTAC\n")
    (tmp_path / "debug.yaml").write_text(yaml.safe_dump(DEBUG))
    data, ids = case(tmp_path)
    common = ["-c", f"recipes/dna/{recipe}", "-c", str(tmp_path / "debug.yaml"), "--trainer.default_root_dir",
              str(tmp_path / "runs"), "--data.batch_size", "4", *QUIET, *data]
    main(["fit", *common, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1"])
    checkpoint = next((tmp_path / "runs").glob("**/last.ckpt"))
    main(["predict", *common, "--ckpt_path", str(checkpoint)])
    written = pl.read_csv(newest_version(tmp_path / "runs" / "csv") / "predictions.csv")
    assert written["id"].to_list() == ids
    if recipe == "pretrain.yaml":
        assert written["bases"].to_list() == [149, 5] and all(0 < b < 10 for b in written["bpn"])
        return
    probs = written.select(pl.col("^prob_.*$"))
    assert probs.width == 2 and all(abs(sum(row) - 1) < 1e-5 for row in probs.iter_rows())
    assert set(written["predicted"]) <= {c.removeprefix("prob_") for c in probs.columns}


def bad_split_value(tmp: Path) -> tuple[list[str], str]:
    (tmp / "d.csv").write_text("sequence,label,split\nACGT,a,train\nACGT,b,valid\n")
    return (["--data.path", str(tmp / "d.csv"), "--data.split_column", "split"],
            f"error: {tmp / 'd.csv'} line 3: 'split' (split_column) is 'valid'; expected one of train, val, test")


def unknown_chromosome(tmp: Path) -> tuple[list[str], str]:
    gz(tmp / "g.fa.gz", ">chr1\nACGTACGTAC\n")
    (tmp / "r.bed").write_text("chr1\t0\t4\ta\nchrX\t0\t4\tb\n")
    return (["--data.bed", str(tmp / "r.bed"), "--data.genome", str(tmp / "g.fa.gz")],
            f"error: {tmp / 'r.bed'} line 2: chromosome 'chrX' is not in {tmp / 'g.fa.gz'} (its records: chr1)")


@pytest.mark.parametrize("case", [pytest.param(bad_split_value, id="split-value"),
                                  pytest.param(unknown_chromosome, id="bed-chromosome")])
def test_a_bad_new_input_ends_titans_with_one_error_line(tmp_path, case, capsys, monkeypatch):
    monkeypatch.delenv("TITANS_TRACEBACK", raising=False)
    args, expected = case(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", "recipes/dna/debug.yaml", "--trainer.default_root_dir", str(tmp_path), *QUIET, *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "Traceback" not in err
    assert err.rstrip().splitlines()[-1] == expected

"""FASTA reading (plain, gzipped, many records, errors) and the pretraining windows."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from datamodules.dna import GenomicsPretrainDataModule
from datamodules.dna.fasta import FastaFormatError, read_fasta, split_held_out, tiled_windows
from datamodules.dna.tokenizer import PAD, InvalidNucleotideError, NucleotideTokenizer, reverse_complement_tokens

TOKENIZER = NucleotideTokenizer()
TWO_RECORDS = ">chr1 first record\nACGTAC\nGTNN\n\n>chr2\nggcc\n"


def write(path: Path, text: str, gz: bool = False) -> Path:
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("gz", [pytest.param(False, id="plain"), pytest.param(True, id="gzip")])
def test_reads_records_across_lines(tmp_path, gz):
    records = read_fasta(write(tmp_path / "x.fa", TWO_RECORDS, gz))
    assert [r.name for r in records] == ["chr1", "chr2"]
    assert TOKENIZER.decode(records[0].tokens) == "ACGTACGTNN"
    assert TOKENIZER.decode(records[1].tokens) == "GGCC"
    assert records[0].tokens.dtype == torch.uint8


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    assert len(read_fasta(write(tmp_path / "plain_name.fa", TWO_RECORDS, gz=True))) == 2


def test_windows_file_line_endings_and_comments(tmp_path):
    path = tmp_path / "crlf.fa"
    path.write_bytes(b";old-style comment\r\n>r1\r\nAC\r\nGT\r\n")
    assert TOKENIZER.decode(read_fasta(path)[0].tokens) == "ACGT"


ERROR_CASES = [
    pytest.param("", FastaFormatError, r"e\.fa: no FASTA records in 0 lines", id="empty-file"),
    pytest.param("\n\n;comment\n", FastaFormatError, r"e\.fa: no FASTA records in 3 lines", id="no-header"),
    pytest.param("ACGT\n>r1\nACGT\n", FastaFormatError, r"e\.fa line 1: sequence line before any '>' header",
                 id="sequence-before-header"),
    pytest.param("\n\nAC\n", FastaFormatError, r"e\.fa line 3: sequence line before", id="after-blank-lines"),
    pytest.param(">r1\n>r2\nAC\n", FastaFormatError, r"e\.fa line 1: record 'r1' has no sequence lines",
                 id="empty-record"),
    pytest.param(">r1\nACGT\n>r2\nACGT\nAAXA\n", InvalidNucleotideError,
                 r"record 'r2' \(.*e\.fa line 5\): character 'X' at position 7 ", id="bad-char-2nd-line"),
    pytest.param(">p1 protein\nMKWVTFISLL\n", InvalidNucleotideError,  # M K W V T are IUPAC codes
                 r"record 'p1' \(.*e\.fa line 2\): character 'F' at position 6 ", id="protein"),
]


@pytest.mark.parametrize("text, error, message", ERROR_CASES)
def test_errors_name_file_line_record_and_position(tmp_path, text, error, message):
    with pytest.raises(error, match=message):
        read_fasta(write(tmp_path / "e.fa", text))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.fa"):
        read_fasta(tmp_path / "nope.fa")


def regions_text(regions):
    return [TOKENIZER.decode(r) for r in regions]


def test_held_out_is_the_tail_of_one_record(tmp_path):
    records = read_fasta(write(tmp_path / "t.fa", ">chr\n" + "A" * 90 + "C" * 10 + "\n"))
    train, val = split_held_out(records, 0.1)
    assert regions_text(train) == ["A" * 90] and regions_text(val) == ["C" * 10]


def test_held_out_is_the_last_records_and_the_cut_one(tmp_path):
    text = ">a\n" + "A" * 50 + "\n>b\n" + "C" * 30 + "\n>c\n" + "G" * 20 + "\n"
    records = read_fasta(write(tmp_path / "t.fa", text))
    train, val = split_held_out(records, 0.3)  # last 30 of 100 bases: 10 of b and all of c
    assert regions_text(train) == ["A" * 50, "C" * 20]
    assert regions_text(val) == ["C" * 10, "G" * 20]


def test_validation_windows_score_every_base_once():
    region = torch.arange(23, dtype=torch.uint8) % 4 + 2
    ids, starts = tiled_windows([region], 6, None)  # windows of 6 tokens score 5 bases each
    assert starts.tolist() == [0, 5, 10, 15, 20]
    scored = [p for s in starts.tolist() for p in range(s + 1, min(s + 6, 23))]
    assert scored == list(range(1, 23))


def test_pretrain_datamodule_windows_stay_inside_training_records(tmp_path):
    # Every record has its own base, so a window mixing two records would hold two bases.
    lengths = [40, 9, 25, 60, 5, 33, 18, 30]
    text = "".join(f">r{i}\n{base * n}\n" for i, (base, n) in enumerate(zip("ACGTACGT", lengths)))
    data = GenomicsPretrainDataModule(path=str(write(tmp_path / "g.fa", text)), seq_len=15, val_fraction=0.1,
                                      train_windows=200, batch_size=8, seed=3)
    assert data.data_sizes == {"vocab_size": 7}
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["tokens"].shape == batch["mask"].shape == (8, 16)
    assert torch.equal(batch["mask"], batch["tokens"] != PAD)
    train, val = data.datasets["train"], data.datasets["val"]
    for i in range(len(train)):
        tokens = train[i]["tokens"]
        real = tokens[tokens != PAD]
        assert len(set(real.tolist())) == 1 and torch.all(tokens[len(real):] == PAD)
    # 10% of 220 bases is held out: the last 22 of r7; its windows score all of them but the first.
    scored = sum(int((val[i]["mask"][1:] & val[i]["mask"][:-1]).sum()) for i in range(len(val)))
    assert scored == 21


def test_pretrain_rc_augment_switch(tmp_path):
    path = write(tmp_path / "g.fa", ">r\n" + "AAAACCCCGG" * 20 + "\n")
    make = lambda rc: GenomicsPretrainDataModule(path=str(path), seq_len=9, train_windows=64, rc_augment=rc,
                                                 batch_size=4)
    plain, augmented = make(False), make(True)
    plain.setup("fit"), augmented.setup("fit")
    torch.manual_seed(0)
    plain_train, augmented_train = plain.datasets["train"], augmented.datasets["train"]
    windows = [(plain_train[i]["tokens"], augmented_train[i]["tokens"]) for i in range(64)]
    forward = sum(torch.equal(a, b) for a, b in windows)
    reverse = sum(torch.equal(reverse_complement_tokens(a), b) for a, b in windows)
    assert forward + reverse == 64 and 10 < reverse < 54
    assert all(torch.equal(plain_train[i]["tokens"], w[0]) for i, w in enumerate(windows))  # off = unchanged

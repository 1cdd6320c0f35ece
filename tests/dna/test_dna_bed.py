"""BED intervals on a reference genome: labels from a column or one BED per class, the minus
strand as the reverse complement, windows around centres, errors naming the BED line, and a
genome read for the chromosomes the intervals name only."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

from datamodules.dna import GenomicsClassificationDataModule
from datamodules.dna.bed import read_genome
from datamodules.dna.tokenizer import NucleotideTokenizer, reverse_complement

RNG = random.Random(0)
GENOME = {"chr1": "".join(RNG.choice("ACGT") for _ in range(300)),
          "chr2": "".join(RNG.choice("ACGT") for _ in range(120)),
          "chrM": "".join(RNG.choice("ACGT") for _ in range(50))}


def write_genome(path: Path, width: int = 60) -> str:
    """GENOME as FASTA with ``width``-base lines, gzipped when the name ends in .gz."""
    text = "".join(f">{name} some description\n" + "".join(seq[i:i + width] + "\n" for i in range(0, len(seq), width))
                   for name, seq in GENOME.items())
    path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())
    return str(path)


def write_bed(path: Path, lines: list[str]) -> str:
    path.write_text("track name=test\n# a comment\n" + "".join(line + "\n" for line in lines))
    return str(path)


def texts(data: GenomicsClassificationDataModule) -> list[str]:
    tokenizer = NucleotideTokenizer()
    return [tokenizer.decode(s) for s in data.data.sequences]


def module(bed, genome: str, **kwargs) -> GenomicsClassificationDataModule:
    return GenomicsClassificationDataModule(bed=bed, genome=genome, batch_size=4, **kwargs)


def test_intervals_labels_and_strands(tmp_path):
    genome = write_genome(tmp_path / "g.fa.gz")
    bed = write_bed(tmp_path / "r.bed", ["chr1\t10\t20\tenhancer\t0\t+", "chr2\t0\t7\tother\t0\t-",
                                         "chr1\t290\t300\tother", "chr2 5 9 enhancer 0 ."])
    data = module(bed, genome)
    assert data.label_names == ["enhancer", "other"]
    assert texts(data) == [GENOME["chr1"][10:20], reverse_complement(GENOME["chr2"][0:7]),
                           GENOME["chr1"][290:300], GENOME["chr2"][5:9]]
    assert data.data.labels.tolist() == [0, 1, 1, 0]


def test_label_from_another_column(tmp_path):
    genome = write_genome(tmp_path / "g.fa")
    bed = write_bed(tmp_path / "r.bed", ["chr1\t0\t5\tpeak1\t1", "chr1\t5\t9\tpeak2\t0", "chr2\t1\t4\tpeak3\t1"])
    data = module(bed, genome, bed_label_column=5)
    assert data.label_names == ["0", "1"] and data.data.labels.tolist() == [1, 0, 1]


def test_one_bed_per_class_and_windows_around_centres(tmp_path):
    genome = write_genome(tmp_path / "g.fa")
    beds = {"pos": write_bed(tmp_path / "pos.bed", ["chr1\t100\t111", "chr2\t50\t52\tx\t0\t-"]),
            "neg": write_bed(tmp_path / "neg.bed", ["chr1\t200\t260"])}
    data = module(beds, genome, window=8)
    assert data.label_names == ["pos", "neg"] and data.data.labels.tolist() == [0, 0, 1]
    # centres 105, 51, 230; the window starts 4 bases before each
    assert texts(data) == [GENOME["chr1"][101:109], reverse_complement(GENOME["chr2"][47:55]),
                           GENOME["chr1"][226:234]]


def test_a_window_may_end_at_the_chromosome_end(tmp_path):
    data = module(write_bed(tmp_path / "r.bed", ["chr2\t100\t110\ta", "chr2\t40\t44\tb"]),
                  write_genome(tmp_path / "g.fa"), window=30)
    assert texts(data)[0] == GENOME["chr2"][90:120]


def test_only_the_named_chromosomes_are_kept(tmp_path):
    genome = write_genome(tmp_path / "g.fa")
    sequences, names = read_genome(genome, {"chr2"})
    assert list(sequences) == ["chr2"] and names == ["chr1", "chr2", "chrM"]
    assert NucleotideTokenizer().decode(sequences["chr2"]) == GENOME["chr2"]


ERROR_CASES = [
    pytest.param(["chr1\t0\t5\ta", "chr9\t0\t5\tb"], {},
                 r"r\.bed line 4: chromosome 'chr9' is not in .*g\.fa \(its records: chr1, chr2, chrM\)",
                 id="unknown-chromosome"),
    pytest.param(["1\t0\t5\ta"], {}, r"r\.bed line 3: chromosome '1' is not in .*the genome has 'chr1'",
                 id="other-chromosome-naming"),
    pytest.param(["chr1\t0\t5\ta", "chr2\t100\t121\tb"], {},
                 r"r\.bed line 4: chr2:100-121: the interval runs past the end of chr2 \(120 bases in .*g\.fa\)",
                 id="past-the-end"),
    pytest.param(["chr2\t100\t110\ta"], {"window": 32},
                 r"r\.bed line 3: chr2:100-110: the window \[89, 121\) around the interval's centre runs past "
                 r"the end of chr2", id="window-past-the-end"),
    pytest.param(["chr1\t2\t4\ta"], {"window": 10}, r"r\.bed line 3: .*window \[-2, 8\) .*past the start of chr1",
                 id="window-past-the-start"),
    pytest.param(["chr1\tten\t20\ta"], {}, r"r\.bed line 3: start 'ten' is not a non-negative integer", id="bad-start"),
    pytest.param(["chr1\t20\t10\ta"], {}, r"r\.bed line 3: start 20 >= end 10", id="start-after-end"),
    pytest.param(["chr1\t0\t10\ta\t0\t*"], {}, r"r\.bed line 3: strand \(column 6\) is '\*'", id="bad-strand"),
    pytest.param(["chr1\t0\t10"], {}, r"r\.bed line 3: no label in column 4 \(bed_label_column\)", id="no-label"),
    pytest.param(["chr1\t0"], {}, r"r\.bed line 3: 2 column\(s\); a BED line has at least chrom, start, end",
                 id="too-few-columns"),
    pytest.param([], {}, r"r\.bed: no intervals", id="empty"),
]


@pytest.mark.parametrize("lines, options, message", ERROR_CASES)
def test_bed_errors_name_the_file_and_line(tmp_path, lines, options, message):
    genome = write_genome(tmp_path / "g.fa")
    bed = write_bed(tmp_path / "r.bed", lines)
    with pytest.raises(ValueError, match=message):
        _ = module(bed, genome, **options).data_sizes


@pytest.mark.parametrize("options, message", [
    pytest.param({"bed": "r.bed"}, r"bed and genome go together", id="bed-without-genome"),
    pytest.param({"window": 100}, r"window cuts BED intervals", id="window-without-bed"),
    pytest.param({"bed": "r.bed", "genome": "g.fa", "classes": {"a": "a.fa"}}, r"give one source, not both classes "
                 r"and bed", id="bed-and-classes"),
])
def test_bed_options_that_do_not_go_together(options, message):
    with pytest.raises(ValueError, match=message):
        GenomicsClassificationDataModule(**options)

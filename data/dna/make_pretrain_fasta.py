"""Write data/dna/splice_pretrain.fa, the default FASTA of recipes/dna/pretrain.yaml.

The project ships no genome. This file holds the training split of the splice benchmark (the
split of recipes/dna/splice_*.yaml: val 0.1, test 0.2, split_seed 0), one record per
sequence, so that pretraining never sees a validation or test sequence of the fine-tuning runs.
It is a stand-in that lets the recipe run anywhere; for real pretraining pass a genome:
    titans fit -c recipes/dna/pretrain.yaml --data.path hg38.fa.gz

Run from the repository root (the output is committed; re-running gives the same bytes):
    python data/dna/make_pretrain_fasta.py
"""

from __future__ import annotations

import argparse

import polars as pl

from datamodules.dna import GenomicsClassificationDataModule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default="data/dna/splice.csv")
    parser.add_argument("--out", default="data/dna/splice_pretrain.fa")
    args = parser.parse_args()
    # The same split as the classification recipes (their defaults, spelled out).
    data = GenomicsClassificationDataModule(path=args.csv, val_fraction=0.1, test_fraction=0.2, split_seed=0)
    data.setup("fit")
    texts = pl.read_csv(args.csv, infer_schema=False)["sequence"].to_list()  # as written, ambiguity codes too
    with open(args.out, "w") as f:
        for row in sorted(data.splits["train"].tolist()):
            # Header: the CSV line of the sequence (data row + header line), so it can be traced.
            f.write(f">splice_line{row + 2}\n{texts[row]}\n")
    print(f"wrote {len(data.splits['train'])} sequences to {args.out}")


if __name__ == "__main__":
    main()

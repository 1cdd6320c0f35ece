"""DNA data: FASTA files, labelled sequences, the nucleotide tokenizer, and the pretraining and
classification DataModules (``datamodules.dna.GenomicsPretrainDataModule``,
``datamodules.dna.GenomicsClassificationDataModule``, the class paths recipes name)."""

from .datamodule import GenomicsClassificationDataModule, GenomicsPretrainDataModule

__all__ = ["GenomicsClassificationDataModule", "GenomicsPretrainDataModule"]

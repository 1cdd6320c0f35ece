"""Old path of the DNA DataModules (earlier recipes and runs' ``config.yaml``): use ``datamodules.dna``."""

from .dna import GenomicsClassificationDataModule, GenomicsPretrainDataModule

__all__ = ["GenomicsClassificationDataModule", "GenomicsPretrainDataModule"]

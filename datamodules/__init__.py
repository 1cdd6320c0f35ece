"""One LightningDataModule per data source, on a shared base. Never imports the model.

One subpackage per source, named like its folder under ``data/``: ``text`` (with the
needle-in-a-haystack data), ``dna``, ``timeseries``, ``recsys``. ``genomics`` and ``niah`` are the
old module paths, kept as re-exports so earlier recipes and runs' ``config.yaml`` still load.
"""

from .base import TitansDataModule
from .dna import GenomicsClassificationDataModule, GenomicsPretrainDataModule
from .recsys import InteractionDataModule
from .text import TextDataModule
from .timeseries import TimeSeriesDataModule

__all__ = [
    "GenomicsClassificationDataModule",
    "GenomicsPretrainDataModule",
    "InteractionDataModule",
    "TextDataModule",
    "TimeSeriesDataModule",
    "TitansDataModule",
]

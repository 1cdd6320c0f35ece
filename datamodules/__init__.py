"""One LightningDataModule per data source, on a shared base. Never imports the model."""

from .base import TitansDataModule
from .genomics import GenomicsClassificationDataModule, GenomicsPretrainDataModule
from .recsys import InteractionDataModule
from .text import TextDataModule
from .timeseries import TimeSeriesDataModule

__all__ = ["TitansDataModule"]

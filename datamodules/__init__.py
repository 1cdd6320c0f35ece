"""One LightningDataModule per data source, on a shared base. Never imports the model."""

from .base import TitansDataModule

__all__ = ["TitansDataModule"]

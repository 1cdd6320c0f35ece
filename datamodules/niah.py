"""Old path of the needle-in-a-haystack DataModule (earlier recipes and runs' ``config.yaml``):
use ``datamodules.text``."""

from .text import NeedleDataModule

__all__ = ["NeedleDataModule"]

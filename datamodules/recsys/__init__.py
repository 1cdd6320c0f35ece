"""Recommendation data: an interaction log read into per-user histories (``log``) and the
leave-one-out ``InteractionDataModule`` (``datamodules.recsys.InteractionDataModule`` in recipes)."""

from .datamodule import InteractionDataModule

__all__ = ["InteractionDataModule"]

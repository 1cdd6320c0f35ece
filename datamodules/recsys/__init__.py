"""Recommendation data: an interaction log in one of the field's formats (``formats``, ``lines``)
read into per-user histories (``log``) and the leave-one-out ``InteractionDataModule``
(``datamodules.recsys.InteractionDataModule`` in recipes)."""

from .datamodule import InteractionDataModule

__all__ = ["InteractionDataModule"]

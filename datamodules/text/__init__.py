"""Text data: a plain-text corpus, its tokenizers and ``TextDataModule``, and beside it the
needle-in-a-haystack data (``NeedleDataModule``) built from the same bytes and tokenizer.

Recipes name the DataModules by this package (``datamodules.text.TextDataModule``,
``datamodules.text.NeedleDataModule``); the modules inside hold the parsing they use.
"""

from .datamodule import TextDataModule
from .niah import NeedleDataModule

__all__ = ["NeedleDataModule", "TextDataModule"]

"""A domain defined outside the package: proof that adding a domain needs no change inside it.

A DataModule (``data.py``), a head and task (``task.py``), callbacks (``callbacks.py``) and a
recipe (``recipe.yaml``); the tests train it through ``titans fit`` with ``tests/`` on the path.
"""

from .callbacks import PredictionFigure, ResumeProbe, ShardReport
from .data import DelayedCopyDataModule
from .task import CopyHead, DelayedCopyTask

__all__ = ["CopyHead", "DelayedCopyDataModule", "DelayedCopyTask", "PredictionFigure", "ResumeProbe", "ShardReport"]

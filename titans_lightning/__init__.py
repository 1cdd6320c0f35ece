"""titans-lightning: a PyTorch Lightning toolkit for Titans (Behrouz, Zhong, Mirrokni 2025).

Read these first: ``cli.py`` (the single entry point), ``tasks/base.py`` (what every domain
subclasses), ``datamodules/base.py`` (the data side), ``recipes/`` (one YAML per experiment).
Importing the package has no side effects: it imports neither Lightning nor the model.
``titans_lightning.load_pretrained(folder)`` (``pretrained.py``) loads a model written by
``titans export``: the model and ``safetensors`` are imported at its first use, Lightning never.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_pretrained"]


def __getattr__(name: str) -> Any:
    """``load_pretrained``, imported on first access (so that importing the package stays free)."""
    if name == "load_pretrained":
        from titans_lightning.pretrained import load_pretrained

        return load_pretrained
    raise AttributeError(f"module 'titans_lightning' has no attribute {name!r}")

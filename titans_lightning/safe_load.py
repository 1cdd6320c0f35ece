"""Reading checkpoints without running code from them.

A ``.ckpt`` is a pickle: read with ``torch.load(..., weights_only=False)`` it may call any function
it names (an object's ``__reduce__`` runs while it loads), so a checkpoint from the internet could
execute anything. Every checkpoint the toolkit reads goes through torch's weights-only unpickler,
which accepts tensors, containers and plain values, plus the toolkit's own config types
(:data:`SAFE_TYPES`, the classes a checkpoint saved outside the CLI holds in its
hyperparameters); anything else is refused before any of it runs:

- :func:`load_checkpoint`: ``titans-stream``, ``titans export`` and the CLI's reading of the
  hyperparameters of ``--ckpt_path``;
- :func:`allowed_globals`: a context in which Lightning's own loader (``--ckpt_path``,
  ``load_from_checkpoint``, both with ``weights_only=True``) accepts the same types.

A refusal is an :class:`UnsafeCheckpointError` naming the file and what it holds.
Importing this module imports neither Lightning nor the model; resolving :data:`SAFE_TYPES`
(when a checkpoint is read) imports the tasks, and with them Lightning.
"""

from __future__ import annotations

import contextlib
import importlib
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union

import torch

#: Import paths of the classes a checkpoint may hold besides tensors and plain values.
SAFE_TYPES: tuple[str, ...] = (
    "titans_lightning.backbone.config.TitansConfig",  # TitansTask(backbone=TitansConfig(...))
    "titans_lightning.tasks.schedules.AdamW",  # the default optimizer / lr_scheduler classes
    "titans_lightning.tasks.schedules.WarmupCosine",
)


class UnsafeCheckpointError(ValueError):
    """A checkpoint holds something that loading would have to run: refused, nothing of it ran."""


def safe_types() -> list[type]:
    """The classes of :data:`SAFE_TYPES`, imported."""
    found = []
    for path in SAFE_TYPES:
        module, _, name = path.rpartition(".")
        found.append(getattr(importlib.import_module(module), name))
    return found


@contextlib.contextmanager
def allowed_globals() -> Iterator[None]:
    """Within it, ``torch.load(..., weights_only=True)`` (Lightning's loader too) also accepts the
    toolkit's config types; nothing else is added, and the allowance ends with the block."""
    with torch.serialization.safe_globals(safe_types()):
        yield


def load_checkpoint(path: Union[str, Path], map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """The dictionary saved in the checkpoint file ``path``, read by the weights-only unpickler.

    Raises FileNotFoundError when there is no such file, and :class:`UnsafeCheckpointError` (a
    ValueError) when the file holds an object that is neither a tensor, a plain value nor one of
    :data:`SAFE_TYPES` (a pickled payload): such a file is refused before any of it runs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r}: no such checkpoint file")
    try:
        with allowed_globals():
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(refusal(path, error)) from None


def refusal(path: Path, error: Exception) -> str:
    """The message of a refused checkpoint: the file, the object it names, what to do."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    held = f"`{found.group(1)}`" if found else "an object that is not a tensor or a plain value"
    return (f"{str(path)!r}: refused to load: the checkpoint holds {held}, which is neither a tensor, a plain "
            f"value nor one of the toolkit's config types ({', '.join(SAFE_TYPES)}); loading it would run code "
            f"from the file. Load only checkpoints written by `titans fit`, or models exported with `titans "
            f"export` (safetensors).")

"""An exported model, loaded without Lightning: ``load_pretrained(folder)`` -> backbone + head.

Shape legend: B batch, T tokens, D model width (``backbone.dim``), V vocabulary.

``titans export`` (``export.py``) writes a folder::

    model.safetensors   the weights of ``backbone.*`` and ``head.*`` (a tied matrix stored once)
    config.json         {"format": 1, "task": <class path>, "backbone": {every TitansConfig field},
                         "head": {"type": <a key of HEADS>, "args": {its constructor arguments}},
                         "data_sizes": {...}, "data_class": <class path or null>,
                         "tokenizer": <file name or null>, "source": {"checkpoint", "global_step"}}
    tokenizer.json      the run's tokenizer, as its DataModule saved it (text domains)
    training_config.yaml  the run's resolved config, for the record

Loading reads JSON and tensors only: no pickle, and no class named by a file is imported (the
head is chosen by its ``type`` among :data:`HEADS`, the heads this module knows how to rebuild).
Pure torch and ``safetensors``: importing this module imports neither Lightning nor ``datamodules``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, Union

from torch import Tensor, nn

from titans_lightning.backbone import TitansBackbone, TitansConfig
from titans_lightning.heads.dna import NucleotideLMHead
from titans_lightning.heads.lm import LMHead
from titans_lightning.heads.recsys import NextItemHead

FORMAT = 1
WEIGHTS, CONFIG = "model.safetensors", "config.json"


@dataclasses.dataclass(frozen=True)
class HeadType:
    """A head :func:`load_pretrained` can rebuild: its class, and its constructor arguments read
    back from a built head (``args_of(head) -> dict``, JSON values)."""

    cls: type[nn.Module]
    args_of: Callable[[nn.Module], dict[str, Any]]


#: The exportable heads by the ``type`` name written in config.json. An allowlist on purpose: a
#: folder from the internet names a key here, never a class to import.
HEADS: dict[str, HeadType] = {
    "lm": HeadType(LMHead, lambda h: {"vocab_size": h.embedding.num_embeddings, "dim": h.embedding.embedding_dim,
                                      "tie_weights": h.tie_weights}),
    "nucleotide_lm": HeadType(NucleotideLMHead, lambda h: {"vocab_size": h.embed.table.num_embeddings,
                                                           "dim": h.embed.table.embedding_dim}),
    "next_item": HeadType(NextItemHead, lambda h: {"num_items": h.num_items, "dim": h.embedding.embedding_dim,
                                                   "dropout": h.dropout.p, "bias": h.bias is not None}),
}


def head_type_of(head: nn.Module) -> Optional[str]:
    """The :data:`HEADS` name of ``head``'s class (exactly that class), or None."""
    return next((name for name, kind in HEADS.items() if type(head) is kind.cls), None)


class PretrainedModel(nn.Module):
    """A Titans backbone and its domain head, as trained; ``config`` is the export's config.json.

    ``model(tokens, state)`` -> ``(hidden (B, T, D), state)``: the head's embedding, then the
    backbone, streaming (pass the returned state to continue). ``model.logits(tokens, state)``
    -> ``(logits (B, T, V), state)`` for heads with an output layer (language models).
    """

    def __init__(self, backbone: TitansBackbone, head: nn.Module, config: dict[str, Any]) -> None:
        super().__init__()
        self.backbone, self.head, self.config = backbone, head, config

    def forward(self, tokens: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        return self.backbone(self.head.embed(tokens), state)

    def logits(self, tokens: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        if not hasattr(self.head, "logits"):
            raise TypeError(f"{type(self.head).__name__} has no logits(); it is not a language-model head")
        hidden, state = self(tokens, state)
        return self.head.logits(hidden), state


def build_model(config: dict[str, Any]) -> PretrainedModel:
    """The model that config.json describes, with freshly initialised weights."""
    head = config.get("head") or {}
    if head.get("type") not in HEADS:
        raise ValueError(f"config.json: head type {head.get('type')!r} is not one of {sorted(HEADS)}")
    names = {f.name for f in dataclasses.fields(TitansConfig)}
    unknown = sorted(set(config["backbone"]) - names)
    if unknown:
        raise ValueError(f"config.json: backbone fields {unknown} are not TitansConfig fields")
    backbone = TitansBackbone(TitansConfig(**config["backbone"]))
    return PretrainedModel(backbone, HEADS[head["type"]].cls(**head["args"]), config)


def read_config(folder: Union[str, Path]) -> dict[str, Any]:
    """config.json of an export folder, checked for its format."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} not found: expected a folder written by `titans export`")
    config = json.loads(path.read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r}: export format {config.get('format')!r}, this version reads {FORMAT}")
    return config


def load_pretrained(folder: Union[str, Path], device: str = "cpu") -> PretrainedModel:
    """The model exported into ``folder`` by ``titans export``, in eval mode on ``device``.

    Reads ``config.json`` and ``model.safetensors`` only (no pickle, no Lightning); every weight
    must be present and fit (a missing or extra tensor is an error naming it).
    """
    from safetensors.torch import load_model

    config = read_config(folder)
    model = build_model(config)
    weights = Path(folder) / WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{str(weights)!r} not found: expected a folder written by `titans export`")
    load_model(model, weights, strict=True)
    return model.to(device).eval()

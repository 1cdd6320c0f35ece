"""Starting a task from another run's weights: ``load_weights(checkpoint, backbone, parts)``.

A fine-tuning task (DNA classification from pretraining, a needle model trained on long haystacks
from one trained on short ones) builds its model as usual, then copies a Lightning checkpoint's
``backbone.*`` weights, and those of the head parts it names, in place. The optimizer, the step and
the schedule start fresh; resuming a run is ``--ckpt_path``, not this. The checkpoint is read with
``weights_only=True`` (nothing in the file runs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

from titans_lightning.backbone import TitansBackbone, TitansConfig
from titans_lightning.safe_load import load_checkpoint


def load_weights(path: str, backbone: TitansBackbone, parts: Mapping[str, nn.Module] = {}) -> None:
    """Copy a Lightning checkpoint's ``backbone.*`` weights, and for each ``prefix -> module`` of
    ``parts`` (``{"head.embed.": head.embed}``, ``{"head.": head}``) its ``<prefix>*`` weights, in place.

    Raises ValueError naming the checkpoint when it lacks a part's weights, when its backbone
    configuration differs from ``backbone.config`` (listing the differing fields), or when a
    part's weights do not fit.
    """
    checkpoint = load_checkpoint(path)  # weights only: nothing in the file runs
    state = checkpoint.get("state_dict", {})
    check_backbone_config(path, checkpoint.get("hyper_parameters", {}).get("backbone"), backbone.config)
    for prefix, module in {"backbone.": backbone, **parts}.items():
        weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not weights:
            raise ValueError(f"{path}: no '{prefix}*' weights in the checkpoint's state_dict")
        try:
            module.load_state_dict(weights)
        except RuntimeError as error:
            raise ValueError(f"{path}: the '{prefix}*' weights do not fit this model: {error}") from None


#: TitansConfig fields a warm start may change: none changes a weight's shape or meaning. Dropout
#: acts in training only; the gate starts are overwritten by the loaded gate weights; the backend
#: computes the same function; the gate bounds (``memory_max_lr``, ``memory_max_decay``) scale what
#: the loaded gates give, which a long second stage may tighten (docs/longctx.md).
MAY_CHANGE = frozenset({"dropout", "memory_backend", "memory_init_lr_bias", "memory_init_momentum_bias",
                        "memory_init_decay_bias", "memory_max_lr", "memory_max_decay"})


def check_backbone_config(path: str, saved: Any, config: TitansConfig) -> None:
    """The checkpoint's backbone must be built exactly like this one, but for :data:`MAY_CHANGE`.

    ``saved`` is the checkpoint's ``backbone`` hyperparameter: a TitansConfig, or (written by
    the CLI) its arguments as given, with size-coupled fields left None; either way it is
    rebuilt as a TitansConfig, so that both sides have every field filled in.
    """
    if saved is None:
        return  # not a TitansTask checkpoint: load_state_dict still checks every shape
    if dataclasses.is_dataclass(saved):
        saved = dataclasses.asdict(saved)
    saved = saved.as_dict() if hasattr(saved, "as_dict") else dict(saved)
    names = {f.name for f in dataclasses.fields(TitansConfig)}
    saved = dataclasses.asdict(TitansConfig(**{k: v for k, v in saved.items() if k in names}))
    differ = {k: (saved[k], v) for k, v in dataclasses.asdict(config).items() if k not in MAY_CHANGE and saved[k] != v}
    if differ:
        fields = ", ".join(f"{k}: checkpoint {a!r} vs model {b!r}" for k, (a, b) in differ.items())
        raise ValueError(f"{path}: the checkpoint's backbone differs from model.init_args.backbone ({fields}); "
                         f"use the backbone of the run it comes from")

"""``titans export --ckpt_path X --out DIR``: a trained checkpoint as a folder that loads without
Lightning (``titans_lightning.load_pretrained(DIR)``; the layout is in ``pretrained.py``).

The checkpoint is read by the weights-only unpickler (``safe_load.py``); the task is rebuilt from
its hyperparameters by Lightning's ``load_from_checkpoint`` (so the exported backbone and head are
exactly the trained ones), then its backbone config, head type and sizes go to ``config.json``
and its ``backbone.*`` / ``head.*`` weights to ``model.safetensors``. The run folder's tokenizer
(``tokenizer.json``, written by the DataModule's ``save_artifacts``) and ``config.yaml`` are copied.
Only a ``TitansTask`` whose head is one of ``pretrained.HEADS`` exports; any other is refused,
naming what it has and what exports.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import shutil
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from titans_lightning.pretrained import CONFIG, FORMAT, HEADS, WEIGHTS, PretrainedModel, head_type_of, read_config
from titans_lightning.safe_load import allowed_globals, load_checkpoint

TOKENIZER, TRAINING_CONFIG = "tokenizer.json", "training_config.yaml"


class ExportError(ValueError):
    """A checkpoint that cannot be exported (not written by ``titans fit``, no backbone, a head
    ``load_pretrained`` cannot rebuild); the message says which and why."""


def task_class_of(ckpt_path: Path, hparams: dict[str, Any]) -> type:
    """The ``TitansTask`` subclass a checkpoint's hyperparameters name (``_class_path``, as the CLI saves it)."""
    from titans_lightning.tasks.base import TitansTask

    class_path = hparams.get("_class_path")
    if not class_path:
        raise ExportError(f"{str(ckpt_path)!r} does not name its task class (_class_path): export a checkpoint "
                         "written by `titans fit`")
    module, _, name = class_path.rpartition(".")
    task_class = getattr(importlib.import_module(module), name)
    if not (isinstance(task_class, type) and issubclass(task_class, TitansTask)):
        raise ExportError(f"{str(ckpt_path)!r}: {class_path} is not a TitansTask (a backbone and a head): "
                         "nothing to export")
    return task_class


def load_task(ckpt_path: Path, task_class: type) -> Any:
    """The task rebuilt from the checkpoint on CPU, in eval mode, without compilation or activation
    checkpointing (they change how the model runs, not its weights)."""
    plain = {"compile": False, "activation_checkpointing": False}
    accepted = inspect.signature(task_class.__init__).parameters
    with allowed_globals():
        task = task_class.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True,
                                               **{k: v for k, v in plain.items() if k in accepted})
    return task.eval()


def export_config(task: Any, ckpt_path: Path, checkpoint: dict[str, Any], data_class: Optional[str],
                  tokenizer: Optional[str]) -> dict[str, Any]:
    """config.json of ``task`` (see ``pretrained.py``); refuses a head ``load_pretrained`` cannot rebuild."""
    head_type = head_type_of(task.head)
    if head_type is None:
        known = ", ".join(f"{name} ({kind.cls.__name__})" for name, kind in HEADS.items())
        raise ExportError(f"{str(ckpt_path)!r}: {type(task).__name__} has a {type(task.head).__name__} head, which "
                         f"export cannot rebuild without Lightning; exportable heads: {known}")
    return {"format": FORMAT, "task": f"{type(task).__module__}.{type(task).__qualname__}",
            "backbone": dataclasses.asdict(task.backbone.config),
            "head": {"type": head_type, "args": HEADS[head_type].args_of(task.head)},
            "data_sizes": dict(task.data_sizes), "data_class": data_class, "tokenizer": tokenizer,
            "source": {"checkpoint": str(ckpt_path), "global_step": checkpoint.get("global_step")}}


def run_data_class(run_dir: Path) -> Optional[str]:
    """``data.class_path`` of the run's ``config.yaml`` (the class that reads its tokenizer), if any."""
    path = run_dir / "config.yaml"
    config = yaml.safe_load(path.read_text()) if path.is_file() else None
    return ((config or {}).get("data") or {}).get("class_path")


def export(ckpt_path: Union[str, Path], out: Union[str, Path]) -> Path:
    """Write the export folder ``out`` (created if needed) of the checkpoint ``ckpt_path``; returns it."""
    from safetensors.torch import save_model

    ckpt_path, out = Path(ckpt_path), Path(out)
    if not ckpt_path.is_file():
        raise ExportError(f"{str(ckpt_path)!r}: no such checkpoint file")
    checkpoint = load_checkpoint(ckpt_path)
    task = load_task(ckpt_path, task_class_of(ckpt_path, checkpoint.get("hyper_parameters") or {}))
    run_dir = ckpt_path.resolve().parent.parent  # <run>/checkpoints/<name>.ckpt
    tokenizer = TOKENIZER if (run_dir / TOKENIZER).is_file() else None
    config = export_config(task, ckpt_path, checkpoint, run_data_class(run_dir), tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    save_model(PretrainedModel(task.backbone, task.head, config), str(out / WEIGHTS),
               metadata={"format": str(FORMAT), "task": config["task"]})
    (out / CONFIG).write_text(json.dumps(config, indent=1))
    if tokenizer:
        shutil.copyfile(run_dir / TOKENIZER, out / TOKENIZER)
    if (run_dir / "config.yaml").is_file():
        shutil.copyfile(run_dir / "config.yaml", out / TRAINING_CONFIG)
    return out


def load_tokenizer(folder: Union[str, Path]) -> Any:
    """The tokenizer of an export folder, read by ``load_tokenizer`` of the data class its config
    names (the text DataModules have one), as ``titans-stream`` reads a run's: this package never
    imports the data side. Raises ValueError when the export has no tokenizer."""
    config = read_config(folder)
    if not config.get("tokenizer") or not config.get("data_class"):
        raise ValueError(f"{str(folder)!r}: the export has no tokenizer (its run folder held no {TOKENIZER})")
    module, _, name = config["data_class"].rpartition(".")
    data_class = getattr(importlib.import_module(module), name)
    if not callable(getattr(data_class, "load_tokenizer", None)):
        raise ValueError(f"{str(folder)!r}: {config['data_class']} has no load_tokenizer(source)")
    return data_class.load_tokenizer(str(Path(folder) / config["tokenizer"]))


def main(args: Optional[list[str]] = None) -> Path:
    """``titans export --ckpt_path X --out DIR``; ``--print_config`` shows the parsed options."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog="titans export", description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="options from a YAML file")
    parser.add_argument("--ckpt_path", type=str, required=True, help="a checkpoint written by `titans fit`")
    parser.add_argument("--out", type=str, required=True, help="the folder to write (created if needed)")
    options = parser.parse_args(args)
    out = export(options.ckpt_path, options.out)
    print(f"exported {options.ckpt_path} to {out}: {WEIGHTS}, {CONFIG}"
          + "".join(f", {name}" for name in (TOKENIZER, TRAINING_CONFIG) if (out / name).is_file()))
    return out

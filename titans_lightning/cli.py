"""The single entry point: ``titans fit|validate|test|predict -c recipe.yaml [--key value ...]``,
and ``titans export --ckpt_path X --out DIR`` (``export.py``).

``model`` is any :class:`~titans_lightning.tasks.Task` subclass (a ``TitansTask`` or a baseline)
and ``data`` any ``LightningDataModule`` subclass with a ``data_sizes`` attribute (in practice a
``datamodules.TitansDataModule``), both named by ``class_path`` in the recipe (an import path: a
domain may live outside this package; this package never imports ``datamodules``). Configs merge
left to right (``-c a.yaml -c b.yaml --trainer.max_steps 10``) and OmegaConf interpolations such
as ``${trainer.max_steps}`` resolve after the merge. The resolved config is written into each run's
folder as ``config.yaml``; ``titans fit -c <run>/config.yaml`` reproduces the run.

Checkpoints are read with ``weights_only=True`` only (``--weights_only`` defaults to true), the
toolkit's config types allowed (``safe_load.py``): a checkpoint holding a pickled payload is
refused with one ``error:`` line before any of it runs.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

import torch.distributed as dist
from jsonargparse import set_parsing_settings
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_warn

from titans_lightning.callbacks import BestAndLastCheckpoint, run_directory
from titans_lightning.errors import TRACEBACK_VARIABLE, input_errors_as_one_line
from titans_lightning.export import ExportError
from titans_lightning.export import main as export_main
from titans_lightning.safe_load import UnsafeCheckpointError, allowed_globals, load_checkpoint
from titans_lightning.tasks.base import Task


class RunConfigSaver(SaveConfigCallback):
    """Writes the resolved config to ``<run dir>/config.yaml`` (next to ``checkpoints/``) and
    into the config of every W&B run.

    Lightning's default writes to ``trainer.log_dir``, which for W&B is the shared ``save_dir``:
    every run would collide there. A run folder is new per run (a new CSV version, a new W&B
    run id), so overwriting only ever replaces a copy of the same run (a resumed W&B id).
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        run_dir = run_directory(trainer)  # collective: every rank calls it
        if trainer.is_global_zero:
            os.makedirs(run_dir, exist_ok=True)
            self.parser.save(self.config, os.path.join(run_dir, self.config_filename),
                             skip_unset=False, overwrite=True, multifile=self.multifile)
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_hyperparams({"config": self.config.as_dict()})
        self.already_saved = True


class DataArtifacts(Callback):
    """Hands the run folder to the DataModule's ``save_artifacts(run_dir)`` (see
    ``datamodules.TitansDataModule.save_artifacts``), on global rank zero, after the DataModule's
    ``setup``: the data side writes what a run keeps (a tokenizer) without knowing where runs live."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        save = getattr(trainer.datamodule, "save_artifacts", None)
        if save is None:
            return
        run_dir = run_directory(trainer)  # collective: every rank calls it
        if trainer.is_global_zero:
            os.makedirs(run_dir, exist_ok=True)
            save(run_dir)


class TitansCLI(LightningCLI):
    """LightningCLI with the data-to-model size link and the toolkit's default callbacks."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Whatever sizes a DataModule derives (vocab_size, num_items, channels, classes) reach
        # the task whole, so a new domain adds sizes without touching the CLI.
        parser.link_arguments("data.data_sizes", "model.init_args.data_sizes", apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse, remembering which model arguments the command line itself gave."""
        command_line = sys.argv[1:] if args is None else args
        self.command_line_model_keys = model_keys(command_line) if isinstance(command_line, (list, tuple)) else []
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """With ``--ckpt_path``, LightningCLI replaces the model arguments by the hyperparameters
        saved in the checkpoint (so that the trained architecture is rebuilt); model arguments
        given on the command line win over them (``titans predict ... --ckpt_path last.ckpt
        --model.temperature 0.5`` samples at 0.5), as a user would expect. Lightning's own
        reading of the hyperparameters, but through :func:`checkpoint_model_config`."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or not os.path.isfile(ckpt_path):
            return
        model = checkpoint_model_config(ckpt_path)
        if not model:
            return
        config = self.config[subcommand]
        given = {key: config[key] for key in self.command_line_model_keys if key in config}
        try:
            self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise
        for key, value in given.items():
            self.config[subcommand][key] = value

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        """Lightning's subcommand parser, with ``--weights_only`` defaulting to true: Lightning's
        loader of ``--ckpt_path`` then runs no code from the file (``safe_load.allowed_globals``
        lets the toolkit's config types through). ``--weights_only false`` is for a file you trust."""
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if "weights_only" in self._subcommand_method_arguments[subcommand]:
            parser.set_defaults(weights_only=True)
        return parser

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        configured = config.get("callbacks") or []
        configured = configured if isinstance(configured, list) else [configured]
        return super()._instantiate_trainer(config, callbacks + self.default_callbacks(config, configured + callbacks))

    def default_callbacks(self, config: dict[str, Any], present: list[Callback]) -> list[Callback]:
        """A rich progress bar and a checkpoint that keeps ``last.ckpt`` plus the best by the
        task's ``monitor`` / ``monitor_mode``, each unless the recipe configures its own (or
        disables it with ``enable_progress_bar`` / ``enable_checkpointing: false``); always
        :class:`DataArtifacts`."""
        defaults: list[Callback] = [DataArtifacts()]
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in present):
            defaults.append(RichProgressBar())
        if config.get("enable_checkpointing") is not False and not any(isinstance(c, ModelCheckpoint) for c in present):
            defaults.append(BestAndLastCheckpoint(
                monitor=getattr(self.model, "monitor", None),
                mode=getattr(self.model, "monitor_mode", "min"),
                filename="best-{step}",
                save_last=True,
                save_top_k=1,
            ))
        return defaults


def checkpoint_model_config(ckpt_path: str) -> dict[str, Any]:
    """The ``model`` config saved in a checkpoint's hyperparameters, as LightningCLI reads it,
    less the arguments its class no longer takes (``load_from_checkpoint`` leaves them out
    too): a checkpoint of an earlier run still loads, e.g. ``backbone: null`` of ``DLinearTask``
    and ``PopularityTask`` from before they stood on the task harness without a backbone."""
    hparams = load_checkpoint(ckpt_path).get("hyper_parameters", {})
    hparams.pop("_instantiator", None)
    if "_class_path" not in hparams:
        return hparams
    class_path = hparams.pop("_class_path")
    module, _, name = class_path.rpartition(".")
    try:
        parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    except (ImportError, AttributeError, ValueError):
        parameters = {}  # the parser names the class path that does not resolve
    if parameters and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        retired = sorted(set(hparams) - set(parameters))
        if retired:
            rank_zero_warn(f"{ckpt_path}: {class_path} no longer takes {retired}; left out")
        hparams = {key: value for key, value in hparams.items() if key in parameters}
    return {"class_path": class_path, "dict_kwargs": hparams}


def model_keys(args) -> list[str]:
    """Config keys of the ``--model.*`` options in a command line, as ``model.init_args.<name>``.

    ``["--model.temperature", "0.5", "--model.backbone.dim=32"]`` ->
    ``["model.init_args.temperature", "model.init_args.backbone.dim"]`` (the class itself,
    ``--model`` or ``--model.class_path``, is not an argument).
    """
    keys = []
    for arg in args:
        if not isinstance(arg, str) or not arg.startswith("--model."):
            continue
        path = arg[2:].split("=", 1)[0].split(".")[1:]
        if path and path[0] == "init_args":
            path = path[1:]
        if path and path[0] not in ("class_path", "dict_kwargs"):
            keys.append(".".join(["model", "init_args", *path]))
    return keys


def finish_wandb() -> None:
    """Close the W&B run, if one was opened, while its service is still up (left to the
    interpreter's exit hooks, an offline run can end before its summary is written)."""
    wandb = sys.modules.get("wandb")  # never import it just to find that no run exists
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def close_process_group() -> None:
    """Barrier, then destroy the process group: with gloo a rank can otherwise abort at
    interpreter exit after training finished (a torch issue)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


DESCRIPTION = (f"Train, evaluate and run Titans models: titans fit|validate|test|predict -c recipe.yaml; "
               f"titans export --ckpt_path X --out DIR writes a model that loads without Lightning. A bad "
               f"input (a file, a column, a value) ends the command with one 'error:' line; set "
               f"{TRACEBACK_VARIABLE}=1 for the full traceback.")


@input_errors_as_one_line
def main(args: ArgsType = None) -> None:
    """Run ``titans <subcommand> ...``; ``args`` (a list of strings) replaces ``sys.argv[1:]``.
    A user-input error, or a checkpoint refused by ``safe_load``, ends it as one ``error:`` line
    (``titans_lightning.errors``)."""
    command_line = sys.argv[1:] if args is None else args
    try:
        with allowed_globals():
            if isinstance(command_line, (list, tuple)) and list(command_line[:1]) == ["export"]:
                export_main(list(command_line[1:]))
                return
            run_cli(args)
    except (UnsafeCheckpointError, ExportError) as error:
        raise SystemExit(f"error: {error}") from None
    finish_wandb()
    close_process_group()


def run_cli(args: ArgsType) -> None:
    """``TitansCLI`` over ``args``: parse, build and run one of fit, validate, test, predict."""
    # Interpolations such as ${trainer.max_steps} are written from the root of the whole config;
    # this keeps them valid inside nested class configs (model.init_args..., trainer.logger...).
    # attribute docstrings of TitansConfig's fields become the CLI help of those options
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True, docstring_parse_attribute_docstrings=True)
    TitansCLI(
        Task,
        LightningDataModule,  # any DataModule class_path; data_sizes reaches the task by the link
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=RunConfigSaver,
        seed_everything_default=0,
        auto_configure_optimizers=False,  # tasks take `optimizer` / `lr_scheduler` themselves
        parser_kwargs={"parser_mode": "omegaconf+", "description": DESCRIPTION},
        args=args,
    )


if __name__ == "__main__":
    main()

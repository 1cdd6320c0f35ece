"""Weights & Biases with checkpoints as artifacts in offline runs too.

Lightning's ``WandbLogger`` refuses ``log_model`` with ``offline=True`` ("an invalid configuration
since model checkpoints cannot be uploaded in offline mode"). W&B itself keeps an offline run's
artifacts: ``run.log_artifact`` records the artifact in the run's folder and stages its files
locally, and ``wandb sync <run folder>`` uploads them with the rest of the run. :class:`WandbLogger`
is Lightning's, with that combination allowed: ``recipes/logger/wandb.yaml`` names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger


class WandbLogger(LightningWandbLogger):
    """Lightning's ``WandbLogger`` (same arguments, same behaviour online), also with ``log_model``
    when ``offline``: checkpoints are then logged to the offline run (``true``: at the end of
    training, ``"all"``: at every save) and uploaded by ``wandb sync``.

    Args:
        offline: write the run locally (no account, no network); ``wandb sync`` uploads it later.
        log_model: log ``ModelCheckpoint``'s checkpoints as ``model`` artifacts: ``False``,
            ``True`` (at the end of training, "best" and "latest" aliases) or ``"all"``.
        name, save_dir, version, dir, id, anonymous, project, experiment, prefix,
            checkpoint_name, add_file_policy, kwargs: as Lightning's ``WandbLogger``.
    """

    def __init__(
        self,
        name: Optional[str] = None,
        save_dir: Union[str, Path] = ".",
        version: Optional[str] = None,
        offline: bool = False,
        dir: Optional[Union[str, Path]] = None,
        id: Optional[str] = None,
        anonymous: Optional[bool] = None,
        project: Optional[str] = None,
        log_model: Union[Literal["all"], bool] = False,
        experiment: Any = None,
        prefix: str = "",
        checkpoint_name: Optional[str] = None,
        add_file_policy: Literal["mutable", "immutable"] = "mutable",
        **kwargs: Any,
    ) -> None:
        # Lightning's check runs on these arguments only: build it online, then go offline.
        super().__init__(name=name, save_dir=save_dir, version=version, offline=False, dir=dir, id=id,
                         anonymous=anonymous, project=project, log_model=log_model, experiment=experiment,
                         prefix=prefix, checkpoint_name=checkpoint_name, add_file_policy=add_file_policy, **kwargs)
        self._offline = offline  # read when the run starts: WANDB_MODE=dryrun

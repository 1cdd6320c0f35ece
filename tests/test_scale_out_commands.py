"""The CPU form of every scale-out command of docs/scale-out.md trains, as written but for the
hardware: GPU fragments kept with ``--trainer.accelerator cpu``, multi-process commands on two
gloo processes of one node, two steps each, under a temporary folder. (tests/test_documented_commands.py
only parses these; the GPU forms themselves run on GPUs only.)

- ``titans fit ...`` with ``ddp.yaml`` / ``fsdp.yaml`` or ``--trainer.devices``: Lightning starts
  the second process, as on a GPU node;
- ``torchrun ... -m titans_lightning.cli fit ...``: torchrun starts both, one node;
- ``--ckpt_path``: the checkpoint of the FSDP command's own run, resumed for one more step;
- ``srun ...``: needs SLURM; parsed by the documented-commands test only;
- ``--model.compile true``: trained at debug size by tests/lm/test_lm_compile.py (compiling the
  quickstart here would add a minute of inductor time and test nothing more).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_documented_commands import COMMANDS, Command

from external_domain.runs import QUIET, REPO, newest_version, read_metrics, run_subprocess, series, subprocess_env

SOURCE = "docs/scale-out.md"
STEPS = ["--trainer.max_steps", "2", "--trainer.log_every_n_steps", "1", "--trainer.val_check_interval", "2",
         "--trainer.limit_val_batches", "1", *QUIET]
MULTI_PROCESS = ("recipes/trainer/ddp.yaml", "recipes/trainer/fsdp.yaml")


def scale_out_commands() -> list[Command]:
    """The ``titans fit`` commands of the scale-out page (torchrun ones included), SLURM's left out."""
    return [c for c in COMMANDS if c.source == SOURCE and c.program == "titans" and c.args[:1] == ("fit",)
            and not c.text.startswith("srun") and "--model.compile" not in c.args]


def without_options(args: list[str], *names: str) -> list[str]:
    """``args`` with every ``--name value`` pair of ``names`` removed."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        else:
            out.append(arg)
    return out


def cpu_form(command: Command, root: Path, checkpoint: Path | None) -> list[str]:
    """The command's CLI arguments on CPU processes of one node, writing under ``root``."""
    args = without_options(list(command.args), "--trainer.devices", "--trainer.num_nodes", "--ckpt_path")
    devices = "2" if any(f in args for f in MULTI_PROCESS) or "--trainer.devices" in command.args else "1"
    args += ["--trainer.accelerator", "cpu", "--trainer.devices", devices, "--trainer.num_nodes", "1",
             "--trainer.default_root_dir", str(root), *STEPS]
    if "--ckpt_path" in command.args:
        args += ["--ckpt_path", str(checkpoint), "--trainer.max_steps", "3"]
    return args


def run(command: Command, root: Path, checkpoint: Path | None = None) -> Path:
    args = cpu_form(command, root, checkpoint)
    if command.text.startswith("torchrun"):
        launcher = ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                    "--master_port", "29517", "-m", "titans_lightning.cli"]
        import subprocess

        proc = subprocess.run([sys.executable, *launcher, *args], cwd=REPO, env=subprocess_env(),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-5000:]
    else:
        run_subprocess(args)
    return newest_version(root / "csv")


CASES = [pytest.param(c, id=c.text) for c in scale_out_commands()]


def test_the_scale_out_page_documents_each_form():
    texts = [c.text for c in scale_out_commands()]
    assert any("ddp.yaml" in t for t in texts) and any("fsdp.yaml" in t for t in texts)
    assert any(t.startswith("torchrun") for t in texts) and any("--ckpt_path" in t for t in texts)
    assert any("--model.activation_checkpointing" in t for t in texts)


@pytest.fixture(scope="module")
def fsdp_checkpoint(tmp_path_factory) -> Path:
    """``last.ckpt`` (a folder of shards) of the CPU form of the page's first FSDP command."""
    first = next(c for c in scale_out_commands()
                 if "recipes/trainer/fsdp.yaml" in c.args and "--ckpt_path" not in c.args)
    return run(first, tmp_path_factory.mktemp("fsdp")) / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("command", CASES)
def test_scale_out_command_trains_on_cpu(command, tmp_path, fsdp_checkpoint):
    run_dir = run(command, tmp_path, fsdp_checkpoint)
    steps = series(read_metrics(run_dir), "train/loss")
    if "--ckpt_path" in command.args:
        assert sorted(steps) == [2], "the resumed run trains only the step after the checkpoint"
    else:
        assert steps, "it trained"

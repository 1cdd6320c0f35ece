"""Starting a needle model from another run's weights (``NeedleTask(pretrained=...)``): every
backbone and LM head weight is taken, for the memory variants; a checkpoint of the plain language
model works too; a different backbone is refused naming the file and the field; and the CLI flag
trains from a real checkpoint with a fresh step count."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from titans_lightning.backbone import TitansConfig
from titans_lightning.cli import main
from titans_lightning.runs import QUIET, read_metrics, series
from titans_lightning.tasks.lm import LanguageModelingTask
from titans_lightning.tasks.longctx import NeedleTask

REPO = Path(__file__).resolve().parents[2]
VOCAB = {"vocab_size": 257}


def built(cls, seed: int, variant: str = "mac", depth: int = 2, **kwargs):
    torch.manual_seed(seed)
    task = cls(TitansConfig(variant=variant, size="debug", depth=depth), data_sizes=VOCAB, **kwargs)
    task.configure_model()
    return task


def saved(task, path: Path) -> str:
    """What Lightning writes, as far as loading reads it: the state dict and the hyperparameters."""
    with torch.no_grad():  # make the saved weights unmistakable
        for p in task.parameters():
            p.add_(0.25)
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}, path)
    return str(path)


@pytest.mark.parametrize("source", [NeedleTask, LanguageModelingTask])
@pytest.mark.parametrize("variant", ["mac", "mag", "mal", "lmm"])
def test_every_backbone_and_head_weight_is_taken(tmp_path, variant, source):
    before = built(source, seed=1, variant=variant)
    path = saved(before, tmp_path / "short.ckpt")
    fresh = built(NeedleTask, seed=2, variant=variant)
    task = built(NeedleTask, seed=2, variant=variant, pretrained=path)
    weights, fresh_weights = task.state_dict(), fresh.state_dict()
    for name, value in before.state_dict().items():
        torch.testing.assert_close(weights[name], value, rtol=0, atol=0, msg=name)
        assert not torch.equal(fresh_weights[name], value), name  # the seed alone would not give them
    assert task.head.output.weight is task.head.embedding.weight  # still tied


def test_a_different_backbone_is_refused_naming_the_file_and_field(tmp_path):
    path = saved(built(NeedleTask, seed=1, depth=3), tmp_path / "deep.ckpt")
    refused = r"deep\.ckpt: the checkpoint.s backbone differs .*depth: checkpoint 3 vs model 2"
    with pytest.raises(ValueError, match=refused):
        built(NeedleTask, seed=2, pretrained=path)


def test_a_tighter_gate_bound_is_taken_with_the_weights(tmp_path):
    """The gate bounds and starts may differ (they change no weight); the loaded gates then give
    alpha under the new bound."""
    path = saved(built(NeedleTask, seed=1), tmp_path / "short.ckpt")
    torch.manual_seed(2)
    config = TitansConfig(variant="mac", size="debug", depth=2, memory_max_decay=1e-4, memory_init_decay_bias=-12.0)
    task = NeedleTask(config, data_sizes=VOCAB, pretrained=path)
    task.configure_model()
    memory = task.backbone.blocks[0].mixer.memory
    decay = memory._gates(torch.randn(1, 3, config.dim))[2]
    assert 0 < float(decay.max()) <= 1e-4


SHORT = ["-c", str(REPO / "recipes/longctx/debug.yaml"), "--data.batch_size", "2", "--data.depths", "[0.5]",
         "--data.samples_per_cell", "1", "--trainer.val_check_interval", "2", *QUIET]


def short_stage(tmp_path) -> Path:
    """Two steps of the debug recipe; its last checkpoint."""
    main(["fit", *SHORT, "--trainer.default_root_dir", str(tmp_path / "short"), "--trainer.max_steps", "2"])
    return tmp_path / "short" / "csv" / "version_0" / "checkpoints" / "last.ckpt"


def test_the_cli_trains_from_a_checkpoint_with_a_fresh_step_count(tmp_path):
    checkpoint, common = short_stage(tmp_path), SHORT
    long = tmp_path / "long"
    main(["fit", *common, "--trainer.default_root_dir", str(long), "--trainer.max_steps", "2",
          "--model.pretrained", str(checkpoint)])
    run = long / "csv" / "version_0"
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]["pretrained"] == str(checkpoint)
    assert sorted(series(read_metrics(run), "train/loss")) == [0, 1]  # steps counted from 0: not a resume
    started = torch.load(checkpoint, weights_only=True)["state_dict"]
    ended = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    # two steps moved the loaded weights a little, far less than a fresh initialisation would differ
    gap = max((ended[k] - started[k]).abs().max().item() for k in started if k.startswith("backbone."))
    assert 0 < gap < 0.1


def test_the_stage2_fragment_trains_from_the_stage1_checkpoint(tmp_path):
    """``-c <variant recipe> -c recipes/longctx/stage2_2048.yaml --model.pretrained CKPT``, the
    documented second stage, at a debug size (the lengths shortened): its settings reach the run,
    the gradient is cut (``tbptt_segment``), and the steps count from 0."""
    checkpoint = short_stage(tmp_path)
    long = tmp_path / "long"
    main(["fit", "-c", str(REPO / "recipes/longctx/debug.yaml"), "-c", str(REPO / "recipes/longctx/stage2_2048.yaml"),
          "--model.pretrained", str(checkpoint), "--trainer.default_root_dir", str(long), "--data.depths", "[0.5]",
          "--data.train_length", "256", "--model.tbptt_segment", "64", "--data.eval_lengths", "[256]",
          "--trainer.max_steps", "2", "--trainer.val_check_interval", "2", *QUIET])
    run = long / "csv" / "version_0"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["init_args"]["tbptt_segment"] == 64 and config["data"]["init_args"]["batch_size"] == 4
    assert config["model"]["init_args"]["optimizer"]["init_args"]["lr"] == 0.001
    assert config["data"]["init_args"]["test_lengths"] == [2048, 4096, 16384, 65536]
    assert sorted(series(read_metrics(run), "train/loss")) == [0, 1]


def test_the_long_memory_mac_commands_train_both_stages(tmp_path):
    """The two documented commands of recipes/longctx/long_memory.yaml at a debug size: stage 1 with
    the bounded forget gate, stage 2 from it with the stage-2 and write-penalty fragments."""
    fragment = ["-c", str(REPO / "recipes/longctx/long_memory.yaml")]
    main(["fit", *SHORT, *fragment, "--trainer.default_root_dir", str(tmp_path / "short"), "--trainer.max_steps", "2"])
    checkpoint = tmp_path / "short" / "csv" / "version_0" / "checkpoints" / "last.ckpt"
    long = tmp_path / "long"
    main(["fit", "-c", str(REPO / "recipes/longctx/debug.yaml"), *fragment,
          "-c", str(REPO / "recipes/longctx/stage2_2048.yaml"), "-c", str(REPO / "recipes/longctx/write_penalty.yaml"),
          "--model.pretrained", str(checkpoint), "--trainer.default_root_dir", str(long), "--data.depths", "[0.5]",
          "--data.train_length", "256", "--model.tbptt_segment", "64", "--data.eval_lengths", "[256]",
          "--trainer.max_steps", "2", "--trainer.val_check_interval", "2", *QUIET])
    run = long / "csv" / "version_0"
    model = yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]
    assert model["write_penalty"] == 1.0 and model["tbptt_segment"] == 64
    assert model["backbone"]["memory_max_decay"] == 0.0001 and model["backbone"]["memory_init_decay_bias"] == -12.0
    rates = series(read_metrics(run), "train/write_rate")
    assert sorted(rates) == [0, 1] and all(0 < r < 1 for r in rates.values())

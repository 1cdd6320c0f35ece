"""The LM recipes through ``titans``: a user's own folder by ``--data.path`` alone, ``titans predict``,
and the six variant recipes at equal size and token budget."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from external_domain.runs import QUIET, REPO, newest_version, read_metrics, series
from titans_lightning.backbone import TitansBackbone, TitansConfig
from titans_lightning.backbone.config import VARIANTS
from titans_lightning.cli import main

DEBUG = REPO / "recipes" / "lm" / "debug.yaml"
VARIANT_RECIPES = {v: REPO / "recipes" / "lm" / f"{v}.yaml" for v in VARIANTS}


def titans(subcommand: str, root: Path, *args: str) -> None:
    main([subcommand, "-c", str(DEBUG), "--trainer.default_root_dir", str(root),
          "--data.cache_dir", str(root / "cache"), *QUIET, *args])


def test_own_folder_by_data_path_then_predict(make_corpus, tmp_path, capsys):
    """Only ``--data.path`` changes (BPE here, so the vocabulary link is exercised too): the run
    trains, logs val/bpb and val/ppl, keeps the tokenizer beside the run, and ``titans predict``
    continues the prompts from the checkpoint."""
    corpus = make_corpus(12)
    titans("fit", tmp_path, "--data.path", str(corpus), "--data.tokenizer", "bpe", "--data.bpe_vocab_size", "300",
           "--data.seq_len", "16", "--trainer.max_steps", "4", "--trainer.val_check_interval", "2")
    run = newest_version(tmp_path / "csv")
    rows = read_metrics(run)
    assert len(series(rows, "val/bpb")) == 2 and all(math.isfinite(v) for v in series(rows, "val/bpb").values())
    assert series(rows, "val/ppl")
    assert (run / "tokenizer.json").is_file()
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["state_dict"]["head.embedding.weight"].shape == (300, 32)  # vocab linked from the data
    capsys.readouterr()

    titans("predict", tmp_path, "--data.path", str(corpus), "--data.tokenizer", "bpe", "--data.bpe_vocab_size", "300",
           "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--data.prompts", '["<doc 03>", ""]',
           "--model.max_new_tokens", "12")
    printed = capsys.readouterr().out
    written = (newest_version(tmp_path / "csv") / "generated.txt").read_text(encoding="utf-8")
    assert "=== prompt 0: '<doc 03>'\n<doc 03>" in written and "=== prompt 1: ''" in written
    assert "=== prompt 0: '<doc 03>'" in printed


def test_variant_recipes_share_size_and_token_budget():
    """Same data, steps, batch and window; backbone parameters within 1% of MAC's."""
    configs = {v: yaml.safe_load(p.read_text()) for v, p in VARIANT_RECIPES.items()}
    budget = {v: (c["trainer"]["max_steps"], c["data"]["init_args"]["batch_size"], c["data"]["init_args"]["seq_len"],
                  c["data"]["init_args"]["path"], c["data"]["init_args"]["tokenizer"]) for v, c in configs.items()}
    assert len(set(budget.values())) == 1, budget
    params = {}
    for variant, config in configs.items():
        backbone = config["model"]["init_args"]["backbone"]
        assert backbone["variant"] == variant
        params[variant] = TitansBackbone(TitansConfig(**backbone)).num_parameters()
    for count in params.values():
        assert abs(count / params["mac"] - 1) < 0.01, params


@pytest.mark.parametrize("variant", [v for v in VARIANT_RECIPES if v != "mac"])
def test_variant_recipe_differs_from_mac_only_in_variant_width_and_paths(variant):
    mac, other = (yaml.safe_load(p.read_text()) for p in (VARIANT_RECIPES["mac"], VARIANT_RECIPES[variant]))
    for config in (mac, other):
        config["trainer"]["default_root_dir"] = None
        config["model"]["init_args"]["backbone"].update(variant=None, mlp_hidden=None)
    assert mac == other


def test_predict_command_line_model_arguments_win_over_the_checkpoint(make_corpus, tmp_path):
    """LightningCLI rebuilds the model from the checkpoint's hyperparameters; what the user types
    on the command line (here 5 new tokens instead of the recipe's 64) must still apply."""
    corpus = make_corpus(6)
    titans("fit", tmp_path, "--data.path", str(corpus), "--data.seq_len", "16", "--trainer.max_steps", "2",
           "--trainer.val_check_interval", "2")
    checkpoint = newest_version(tmp_path / "csv") / "checkpoints" / "last.ckpt"
    titans("predict", tmp_path, "--data.path", str(corpus), "--ckpt_path", str(checkpoint),
           "--data.prompts", '["ab"]', "--model.max_new_tokens", "5", "--model.init_args.top_k", "1")
    written = (newest_version(tmp_path / "csv") / "generated.txt").read_text(encoding="utf-8")
    continuation = written.split("=== prompt 0: 'ab'\nab", 1)[1].rstrip("\n")
    # 5 bytes decode to at most 5 characters (the recipe's 64 before the fix)
    assert len(continuation) <= 5, continuation

"""``titans export`` and ``load_pretrained``: the exported model gives the trained model's logits,
loads without Lightning, and a checkpoint whose head cannot be rebuilt is refused by name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from external_domain.runs import REPO, subprocess_env
from titans_lightning.backbone import TitansBackbone, TitansConfig
from titans_lightning.pretrained import HEADS, head_type_of, load_pretrained
from titans_lightning.streaming import load_lm


def test_exported_model_gives_the_trained_logits(lm_run: Path, lm_export: Path):
    assert {p.name for p in lm_export.iterdir()} == {"model.safetensors", "config.json", "tokenizer.json",
                                                     "training_config.yaml"}
    config = json.loads((lm_export / "config.json").read_text())
    assert config["task"] == "titans_lightning.tasks.lm.LanguageModelingTask"
    assert config["head"] == {"type": "lm", "args": {"vocab_size": 257, "dim": 32, "tie_weights": True}}
    assert config["backbone"]["variant"] == "mac" and config["backbone"]["dim"] == 32  # every field resolved
    assert (lm_export / "tokenizer.json").read_text() == (lm_run / "tokenizer.json").read_text()

    task = load_lm(lm_run / "checkpoints" / "last.ckpt", "cpu")
    model = load_pretrained(lm_export)
    tokens = torch.randint(0, 257, (2, 21), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = task.head.logits(task.backbone(task.head.embed(tokens))[0])
        logits, _ = model.logits(tokens)
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    assert model.head.output.weight is model.head.embedding.weight, "tied weights stay tied"


def test_load_pretrained_never_imports_lightning(lm_export: Path):
    code = ("import sys, torch, titans_lightning\n"
            f"model = titans_lightning.load_pretrained({str(lm_export)!r})\n"
            "logits, state = model.logits(torch.zeros(1, 5, dtype=torch.long))\n"
            "assert logits.shape == (1, 5, 257), logits.shape\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', "
            "'datamodules'))\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True, env=subprocess_env(), cwd=REPO, timeout=120)


def test_a_head_that_cannot_be_rebuilt_is_refused_by_name(fit_external, tmp_path: Path, capsys):
    from titans_lightning.cli import main

    run_dir = fit_external()
    with pytest.raises(SystemExit) as refused:
        main(["export", "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "out")])
    message = str(refused.value.code)
    assert message.startswith("error: ") and "DelayedCopyTask has a CopyHead head" in message
    assert "exportable heads: lm (LMHead)" in message
    assert not (tmp_path / "out").exists(), "nothing is written for a refused checkpoint"


@pytest.mark.parametrize(("name", "args"), [
    pytest.param("lm", {"vocab_size": 11, "dim": 8, "tie_weights": False}, id="lm-untied"),
    pytest.param("nucleotide_lm", {"vocab_size": 7, "dim": 8}, id="nucleotide_lm"),
    pytest.param("next_item", {"num_items": 5, "dim": 8, "dropout": 0.1, "bias": True}, id="next_item"),
])
def test_every_exportable_head_reads_back_its_arguments(name, args):
    """``args_of`` of a built head gives back the arguments that built it (so config.json does)."""
    head = HEADS[name].cls(**args)
    assert head_type_of(head) == name and HEADS[name].args_of(head) == args


def test_export_round_trips_a_next_item_head(tmp_path: Path):
    """A non-LM head through the same files: weights and config written as export writes them."""
    from safetensors.torch import save_model

    from titans_lightning.pretrained import PretrainedModel, build_model

    torch.manual_seed(0)
    backbone = TitansBackbone(TitansConfig(variant="lmm", size="debug"))
    head = HEADS["next_item"].cls(num_items=9, dim=32, bias=True)
    config = {"format": 1, "task": "test", "backbone": {"variant": "lmm", "size": "debug"},
              "head": {"type": "next_item", "args": HEADS["next_item"].args_of(head)}}
    save_model(PretrainedModel(backbone, head, config), str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = load_pretrained(tmp_path)
    items = torch.randint(1, 10, (2, 6))
    torch.testing.assert_close(loaded(items)[0], PretrainedModel(backbone, head, config).eval()(items)[0])
    assert type(build_model(config).head) is type(head)


def test_a_folder_naming_an_unknown_head_is_refused(lm_export: Path, tmp_path: Path):
    config = json.loads((lm_export / "config.json").read_text())
    config["head"]["type"] = "os.system"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"head type 'os.system' is not one of \['lm', 'next_item', "):
        load_pretrained(tmp_path)


def test_export_options_parse(capsys):
    from titans_lightning.cli import main

    with pytest.raises(SystemExit) as done:
        main(["export", "--ckpt_path", "runs/x/last.ckpt", "--out", "exported/", "--print_config"])
    assert done.value.code == 0 and "ckpt_path: runs/x/last.ckpt" in capsys.readouterr().out

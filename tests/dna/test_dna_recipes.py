"""The DNA recipes end to end through ``titans``: pretrain, then fine-tune from its checkpoint;
the classification recipes switched to per-class FASTA files by data arguments only.

(Every recipe is also parsed and debug-fitted by tests/test_recipes.py.)
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from titans_lightning.backbone.config import SIZES
from titans_lightning.cli import main

REPO = Path(__file__).resolve().parents[2]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
# The recipes' widths back to None so that size=debug fills them (as tests/test_recipes.py does).
DEBUG = {"model": {"init_args": {"backbone": {"size": "debug",
                                              **dict.fromkeys([*SIZES["debug"], "mlp_hidden", "memory_tokens"])}}}}


def debug_config(tmp_path: Path) -> str:
    path = tmp_path / "debug_backbone.yaml"
    path.write_text(yaml.safe_dump(DEBUG))
    return str(path)


def backbone_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith(("backbone.", "head.embed."))}


def test_finetune_starts_from_the_pretraining_checkpoint(tmp_path):
    debug = debug_config(tmp_path)
    main(["fit", "-c", "recipes/dna/pretrain.yaml", "-c", debug, "--trainer.max_steps", "3",
          "--trainer.limit_val_batches", "1", "--trainer.default_root_dir", str(tmp_path / "pre"),
          "--data.batch_size", "4", *QUIET])
    pretrained = tmp_path / "pre" / "checkpoints" / "last.ckpt"
    # lr 0 and one step: the fine-tuned model still holds exactly what it loaded.
    main(["fit", "-c", "recipes/dna/finetune.yaml", "-c", debug, "--model.init_args.pretrained", str(pretrained),
          "--model.init_args.optimizer.init_args.lr", "0", "--trainer.max_steps", "1", "--trainer.max_epochs", "1",
          "--trainer.limit_val_batches", "1", "--trainer.default_root_dir", str(tmp_path / "fine"),
          "--data.batch_size", "4", *QUIET])
    (finetuned,) = (tmp_path / "fine").glob("csv/version_0/checkpoints/last.ckpt")
    before, after = backbone_weights(pretrained), backbone_weights(finetuned)
    assert before.keys() == after.keys() and len(before) > 10
    assert all(torch.equal(before[k], after[k]) for k in before)
    state = torch.load(finetuned, map_location="cpu", weights_only=False)["state_dict"]
    assert state["head.classifier.weight"].shape == (3, 32)  # a fresh 3-class head on the debug width


def test_classification_recipe_takes_fasta_files_per_class(tmp_path):
    for name, base in (("donor", "GT"), ("other", "CA")):
        records = (f">{name}{i}\nACGTAC{base * (i % 5 + 1)}TTGA\n" for i in range(40))
        (tmp_path / f"{name}.fa").write_text("".join(records))
    classes = {"donor": str(tmp_path / "donor.fa"), "other": str(tmp_path / "other.fa")}
    main(["fit", "-c", "recipes/dna/debug.yaml", "--data.classes", yaml.safe_dump(classes, default_flow_style=True),
          "--trainer.max_steps", "2", "--trainer.default_root_dir", str(tmp_path / "run"), *QUIET])
    (checkpoint,) = (tmp_path / "run").glob("csv/version_0/checkpoints/last.ckpt")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    assert state["head.classifier.weight"].shape[0] == 2

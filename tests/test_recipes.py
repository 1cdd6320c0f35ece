"""Every YAML under recipes/ goes through the CLI, found by glob so a new recipe is tested on arrival.

A recipe (a file whose ``model`` names its ``class_path``) must print its config and train a few
steps at debug size; a fragment (trainer, strategy, precision, logger, or a domain's stage such as
``longctx/stage2_2048.yaml``: no model class) must compose with a recipe (its domain's
``debug.yaml``, or the external domain's for the domain-free ones) and leave its own settings in
the merged config.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from external_domain.runs import EXTERNAL_RECIPE, QUIET, REPO
from titans_lightning.backbone.config import SIZES
from titans_lightning.cli import main
from titans_lightning.tasks import TitansTask

ALL_YAML = sorted(REPO.glob("recipes/**/*.yaml"))
RECIPES = [p for p in ALL_YAML if "class_path" in ((yaml.safe_load(p.read_text()) or {}).get("model") or {})]
FRAGMENTS = [p for p in ALL_YAML if p not in RECIPES]


def base_recipe(fragment: Path) -> Path:
    """The recipe a fragment composes with: its domain folder's ``debug.yaml`` where it has one."""
    debug = fragment.parent / "debug.yaml"
    return debug if debug in RECIPES else EXTERNAL_RECIPE

# Every size-coupled backbone field back to None, so that size=debug fills them all: a recipe's
# own widths (dim 256, segment 512 ...) would make a smoke fit slow. A YAML file, because
# jsonargparse rejects `--model.backbone.dim null` for a dataclass inside a subclass.
DEBUG_BACKBONE = {"model": {"init_args": {"backbone": {
    "size": "debug", **dict.fromkeys([*SIZES["debug"], "mlp_hidden", "memory_tokens"])}}}}


def has_backbone(recipe: Path) -> bool:
    """Whether the recipe's task is a ``TitansTask`` (a baseline on the task harness has no backbone
    to shrink, and no ``backbone`` argument)."""
    module, _, name = yaml.safe_load(recipe.read_text())["model"]["class_path"].rpartition(".")
    return issubclass(getattr(importlib.import_module(module), name), TitansTask)


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(REPO / "recipes")) for p in paths]


def print_config(args: list[str], capsys: pytest.CaptureFixture) -> dict[str, Any]:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    out, err = capsys.readouterr()
    assert not exit_info.value.code, err[-3000:]
    return yaml.safe_load(out)


def leaves(tree: Any, prefix: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """(key path, value) of every non-dict value of a nested dict."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from leaves(value, (*prefix, key))
    else:
        yield prefix, tree


def lookup(tree: dict[str, Any], path: tuple) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def test_the_glob_finds_the_fragments():
    assert {"trainer/cpu.yaml", "trainer/ddp.yaml", "trainer/fsdp.yaml", "logger/wandb.yaml",
            "longctx/stage2_2048.yaml"} <= set(ids(FRAGMENTS))
    assert base_recipe(REPO / "recipes/longctx/stage2_2048.yaml") == REPO / "recipes/longctx/debug.yaml"


def class_paths(items: list[dict]) -> list[str]:
    return [item["class_path"] for item in items or []]


@pytest.mark.parametrize("fragment", FRAGMENTS, ids=ids(FRAGMENTS))
def test_fragment_composes_with_a_domain_recipe(fragment, capsys):
    merged = print_config(["-c", str(base_recipe(fragment)), "-c", str(fragment)], capsys)
    for path, value in leaves(yaml.safe_load(fragment.read_text())):
        if path[-1].endswith("+"):  # `key+:` appends to the list at `key`: the merged list ends with it
            merged_list = lookup(merged, (*path[:-1], path[-1][:-1]))
            assert class_paths(merged_list)[-len(value):] == class_paths(value), f"{'.'.join(path)} not appended"
        elif isinstance(value, str) and "${" in value:
            assert "${" not in str(lookup(merged, path)), f"{'.'.join(path)} left unresolved"
        else:
            assert lookup(merged, path) == value, f"{'.'.join(path)} did not take the fragment's value"


def test_gpu_fragment_adds_matmul_precision_and_keeps_the_recipe_callbacks(capsys):
    """gpu.yaml appends its callback (`callbacks+`); a plain list would drop the recipe's own."""
    recipe = REPO / "recipes/lm/quickstart.yaml"
    own = class_paths(yaml.safe_load(recipe.read_text())["trainer"]["callbacks"])
    merged = print_config(["-c", str(recipe), "-c", str(REPO / "recipes/trainer/gpu.yaml")], capsys)
    callbacks = merged["trainer"]["callbacks"]
    assert own and class_paths(callbacks) == [*own, "titans_lightning.callbacks.MatmulPrecision"]
    assert callbacks[-1]["init_args"] == {"precision": "high"}


@pytest.mark.parametrize("recipe", RECIPES, ids=ids(RECIPES))
def test_recipe_prints_its_config(recipe, capsys):
    config = print_config(["-c", str(recipe)], capsys)
    assert config["model"]["class_path"] and config["data"]["class_path"]


def stand_in_data(recipe: Path, tmp_path: Path) -> list[str]:
    """``--data.path`` to a small generated file when the recipe's data is not shipped (Yelp: its
    terms forbid redistribution); nothing when it is. Only the sequence format has a stand-in."""
    init = yaml.safe_load(recipe.read_text())["data"].get("init_args", {})
    path = init.get("path")
    if path is None or (REPO / path).exists():
        return []
    assert init.get("format") == "sequences", f"{recipe}: its data {path} is missing"
    lines = [" ".join(map(str, [user, *((user * 7 + 3 * i) % 40 + 1 for i in range(6 + user % 5))]))
             for user in range(1, 61)]
    stand_in = tmp_path / "sequences.txt"
    stand_in.write_text("\n".join(lines) + "\n")
    return ["--data.path", str(stand_in)]


@pytest.mark.parametrize("recipe", RECIPES, ids=ids(RECIPES))
def test_recipe_trains_a_few_steps_at_debug_size(recipe, tmp_path):
    debug = tmp_path / "debug_backbone.yaml"
    debug.write_text(yaml.safe_dump(DEBUG_BACKBONE))
    shrink = ["-c", str(debug)] if has_backbone(recipe) else []
    main(["fit", "-c", str(recipe), *shrink, "--trainer.fast_dev_run", "2", "--trainer.accelerator", "cpu",
          "--trainer.devices", "1", "--trainer.strategy", "auto", "--trainer.precision", "32-true",
          "--trainer.default_root_dir", str(tmp_path), "--data.batch_size", "2",
          *stand_in_data(recipe, tmp_path), *QUIET])

"""The DataModules' old class paths still load: recipes and runs' saved ``config.yaml`` files
written before ``datamodules/`` became one subpackage per data source name them, and
``titans fit -c <run>/config.yaml`` must keep reproducing those runs."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from external_domain.runs import REPO
from titans_lightning.cli import main

# old class path -> the canonical one (the data source's subpackage)
MOVED = {
    "datamodules.text.TextDataModule": "datamodules.text.TextDataModule",
    "datamodules.niah.NeedleDataModule": "datamodules.text.NeedleDataModule",
    "datamodules.genomics.GenomicsClassificationDataModule": "datamodules.dna.GenomicsClassificationDataModule",
    "datamodules.genomics.GenomicsPretrainDataModule": "datamodules.dna.GenomicsPretrainDataModule",
    "datamodules.recsys.InteractionDataModule": "datamodules.recsys.InteractionDataModule",
    "datamodules.timeseries.TimeSeriesDataModule": "datamodules.timeseries.TimeSeriesDataModule",
}
# an old path, and a recipe that names the class under its new path
OLD_CONFIGS = [
    pytest.param("datamodules.niah.NeedleDataModule", "recipes/longctx/debug.yaml", id="niah"),
    pytest.param("datamodules.genomics.GenomicsClassificationDataModule", "recipes/dna/debug.yaml", id="genomics"),
    pytest.param("datamodules.genomics.GenomicsPretrainDataModule", "recipes/dna/pretrain.yaml",
                 id="genomics-pretrain"),
]


def load(class_path: str) -> type:
    module, name = class_path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("old", MOVED)
def test_old_class_path_is_the_new_class(old):
    new = load(MOVED[old])
    assert load(old) is new
    assert new.__module__.startswith(MOVED[old].rsplit(".", 1)[0] + ".")  # defined inside the subpackage


def test_recipes_name_the_canonical_paths():
    named = {yaml.safe_load(p.read_text()).get("data", {}).get("class_path") for p in REPO.glob("recipes/*/*.yaml")}
    stale = sorted(p for p in named if p in MOVED and MOVED[p] != p)
    assert not stale, f"recipes still name old class paths: {stale}"


@pytest.mark.parametrize("old, recipe", OLD_CONFIGS)
def test_a_config_naming_the_old_path_parses(old, recipe, tmp_path: Path, capsys):
    """A copy of the recipe with the old class path, as an earlier run's config.yaml holds it."""
    text = (REPO / recipe).read_text()
    new = MOVED[old]
    assert f"class_path: {new}" in text
    (tmp_path / "config.yaml").write_text(text.replace(f"class_path: {new}", f"class_path: {old}"))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(tmp_path / "config.yaml"), "--print_config"])
    out, err = capsys.readouterr()
    assert not exit_info.value.code, err[-3000:]
    assert yaml.safe_load(out)["data"]["class_path"] in (old, new)

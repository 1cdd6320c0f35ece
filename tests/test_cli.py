"""The ``titans`` CLI: help, print_config, a domain from outside the package trained end to end,
the saved config reproducing its run, and recipe typos reported as clear errors."""

from __future__ import annotations

import pytest
import torch
import yaml

from external_domain.runs import EXTERNAL_RECIPE, read_metrics, series
from titans_lightning.cli import main


def run_main(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``titans *args`` run in this process."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def test_help_lists_the_subcommands(capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    for subcommand in ("fit", "validate", "test", "predict"):
        assert subcommand in out


def test_fit_print_config_without_a_recipe(capsys):
    code, out, _ = run_main(["fit", "--print_config"], capsys)
    assert code == 0
    config = yaml.safe_load(out)
    assert {"trainer", "model", "data", "seed_everything"} <= set(config)


def test_backbone_fields_are_command_line_options(capsys):
    args = ["fit", "-c", str(EXTERNAL_RECIPE), "--model.backbone.variant", "mac", "--model.backbone.depth", "3",
            "--print_config"]
    code, out, _ = run_main(args, capsys)
    assert code == 0
    backbone = yaml.safe_load(out)["model"]["init_args"]["backbone"]
    assert (backbone["variant"], backbone["depth"], backbone["size"]) == ("mac", 3, "debug")


def test_external_domain_trains_and_its_saved_config_reproduces_the_run(fit_external, tmp_path):
    run_dir = fit_external("--trainer.callbacks+=titans_lightning.callbacks.Throughput")

    hparams = yaml.safe_load((run_dir / "hparams.yaml").read_text())
    assert hparams["data_sizes"] == {"channels": 4}, "data_sizes must flow from the DataModule by link"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["trainer"]["logger"]["init_args"]["save_dir"] == str(tmp_path), "interpolation not resolved"
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"last.ckpt", "best-step=4.ckpt"}
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["lr_schedulers"][0]["total_steps"] == 4, "an unset schedule horizon takes the trainer's"

    rows = read_metrics(run_dir)
    losses, val = series(rows, "train/loss"), series(rows, "val/mse")
    assert sorted(losses) == [0, 1, 2, 3] and len(val) == 2
    assert val[max(val)] < val[min(val)], "the delayed-copy error should fall within 4 steps"
    tokens_per_sec = series(rows, "perf/tokens_per_sec")
    assert len(tokens_per_sec) == 4 and min(tokens_per_sec.values()) > 0

    main(["fit", "-c", str(run_dir / "config.yaml"), "--trainer.enable_progress_bar", "false"])
    rerun = read_metrics(run_dir.parent / "version_1")
    assert series(rerun, "train/loss") == pytest.approx(losses, rel=1e-6)


@pytest.mark.parametrize(
    ("original", "typo", "named"),
    [
        pytest.param("max_steps: 4", "max_stepz: 4", "max_stepz", id="trainer-key"),
        pytest.param("delay: 2", "delai: 2", "delai", id="datamodule-argument"),
        pytest.param("variant: transformer", "variantt: transformer", "variantt", id="backbone-field"),
    ],
)
def test_a_typo_in_a_recipe_fails_with_a_message_naming_the_key(original, typo, named, tmp_path, capsys):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text(EXTERNAL_RECIPE.read_text().replace(original, typo))
    code, _, err = run_main(["fit", "-c", str(recipe)], capsys)
    assert code != 0
    assert named in err
    assert "Traceback" not in err


@pytest.mark.parametrize("args, keys", [
    (["--model.temperature", "0.5"], ["model.init_args.temperature"]),
    (["--model.init_args.top_k=3", "--model.backbone.dim", "32"],
     ["model.init_args.top_k", "model.init_args.backbone.dim"]),
    (["--model", "x.Task", "--model.class_path", "x.Task", "--data.path", "a"], []),
], ids=["plain", "init_args-and-nested", "class-not-an-argument"])
def test_model_keys_of_a_command_line(args, keys):
    from titans_lightning.cli import model_keys
    assert model_keys(args) == keys

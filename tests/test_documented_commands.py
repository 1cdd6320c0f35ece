"""Every command in README.md, docs/ and experiments/ runs or parses, so that a documented command
cannot rot.

Commands come from the fenced code blocks (``bash``, ``sh``, ``shell``, ``console`` or no language)
of ``README.md``, ``docs/**/*.md`` and ``experiments/**/*.md`` (the results beside each experiment):
lines joined at a trailing ``\\``, comments dropped, split at ``|``, ``&&`` and ``;``,
``for x in a b; do ...; done`` taken at its first value, and ``VAR=value``, ``env``, ``srun`` and
``torchrun ... -m`` prefixes removed. Kept: ``titans ...``, ``titans-stream ...``,
``python -m titans_lightning.cli ...``, ``python benchmarks/<script>.py`` and
``python experiments/<domain>/<script>.py``. The test ids are the commands as written (loop
variables filled in).

- **run** for real, at debug size for two steps and two batches, writing under a temporary folder
  that stands in for ``runs/``: ``titans`` commands whose configs are debug recipes
  (``recipes/<domain>/debug.yaml``, the external domain's recipe, a run folder of one of them, the
  ``cpu`` and ``csv`` fragments) on one CPU process, whose other files all exist; a checkpoint or
  run folder under ``runs/`` is first trained by that debug recipe. ``--help``, ``--print_config``
  and ``--<key>.help`` commands run as they are. ``titans-stream`` of such a checkpoint over a
  shipped file reads its first 4,096 tokens.
- **parse** only: every other ``titans`` command (``--print_config`` of its own subcommand: GPU and
  multi-process fragments, real-size recipes, files of the user's), every other ``titans-stream``
  (its argument parser), and every ``python benchmarks/...`` and ``python experiments/...`` (the
  script's own argparse, stopped right after parsing: a benchmark or experiment never runs here).
"""

from __future__ import annotations

import argparse
import re
import runpy
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from unittest import mock

import pytest
import yaml

from external_domain.runs import EXTERNAL_RECIPE, QUIET, REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("**/*.md")),
        *sorted((REPO / "experiments").glob("**/*.md"))]
SCRIPT = re.compile(r"^(?:benchmarks/\w+|experiments/\w+/\w+)\.py$")
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
SEPARATORS = {";", "&&", "||", "|", "&"}
REDIRECTS = {">", ">>", "<"}

# Recipes cheap enough to train in this test, by the folder their runs go to.
DEBUG_RECIPES = {yaml.safe_load(p.read_text())["trainer"]["default_root_dir"]: p.relative_to(REPO).as_posix()
                 for p in [*sorted(REPO.glob("recipes/*/debug.yaml")), EXTERNAL_RECIPE]}
RUN_FRAGMENTS = {"recipes/trainer/cpu.yaml", "recipes/logger/csv.yaml"}
LIMITS = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "2",
          "--trainer.limit_test_batches", "2", "--trainer.limit_predict_batches", "2", *QUIET]
STREAM_LIMIT = ["--max-tokens", "4096"]
# Documented commands that can neither run nor parse here, each with its reason (none today).
SKIPPED: dict[str, str] = {}

PATH_LIKE = re.compile(r"[\w.~*/=-]*\.(?:csv|tsv|parquet|pq|fa|fasta|gz|txt|ckpt|yaml|yml|json|jsonl|pt)\b")
HELP_FLAGS = re.compile(r"^(--help|-h|--print_config(=.*)?|--[\w.]+\.help)$")


@dataclass(frozen=True)
class Command:
    """One documented command: ``program`` is ``titans``, ``titans-stream`` or a script's path
    (a benchmark or an experiment)."""

    text: str
    source: str
    program: str
    args: tuple[str, ...]


# -- reading the docs ---------------------------------------------------------------------------

def shell_blocks(markdown: str) -> Iterator[list[str]]:
    """The lines of each fenced shell block (indented fences, as inside list items, included)."""
    block: Optional[list[str]] = None
    shell = False
    for line in markdown.splitlines():
        fence = line.strip()
        if fence.startswith("```") and block is None:
            block, shell = [], fence[3:].strip().lower() in SHELL_LANGUAGES
        elif fence.startswith("```"):
            if shell:
                yield block
            block = None
        elif block is not None:
            block.append(line)


def logical_lines(lines: list[str]) -> Iterator[str]:
    """Lines joined at a trailing backslash."""
    pending = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
        else:
            yield pending + line
            pending = ""
    if pending:
        yield pending


def tokens_of(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    return list(lexer)


def segments(tokens: list[str]) -> Iterator[list[str]]:
    """Simple commands of a line: split at separators, redirections dropped, a for loop taken at
    its first value."""
    loop: Optional[tuple[str, str]] = None
    current: list[str] = []
    for token in [*tokens, ";"]:
        if token not in SEPARATORS:
            current.append(token)
            continue
        words, current = current, []
        if words[:1] == ["for"] and len(words) >= 4 and words[2] == "in":
            loop = (words[1], words[3])
            continue
        if words[:1] == ["do"]:
            words = words[1:]
        if words == ["done"]:
            loop = None
            continue
        if loop:
            words = [w.replace("${" + loop[0] + "}", loop[1]).replace("$" + loop[0], loop[1]) for w in words]
        kept = []
        for word in words:
            if kept and kept[-1] in REDIRECTS:
                kept.pop()
            else:
                kept.append(word)
        if kept:
            yield kept


def program_of(words: list[str]) -> Optional[tuple[str, list[str]]]:
    """``(program, args)`` of a simple command without its prefixes, or None if not ours."""
    words = list(words)
    if words[:1] == ["env"]:
        words = words[1:]
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
        words = words[1:]
    if words[:1] == ["srun"]:  # srun's own options are written --name=value
        words = words[1:]
        while words and words[0].startswith("-"):
            words = words[1:]
    if words[:1] == ["torchrun"] and "-m" in words:
        at = words.index("-m")
        words = ["python", *words[at:]]
    if words[:3] in (["python", "-m", "titans_lightning.cli"], ["python3", "-m", "titans_lightning.cli"]):
        words = ["titans", *words[3:]]
    if words[:1] in (["titans"], ["titans-stream"]):
        return words[0], words[1:]
    if len(words) >= 2 and words[0] in ("python", "python3") and SCRIPT.match(words[1]):
        return words[1], words[2:]
    return None


def documented_commands() -> list[Command]:
    seen: dict[str, Command] = {}
    for doc in DOCS:
        for block in shell_blocks(doc.read_text()):
            for line in logical_lines(block):
                for words in segments(tokens_of(line)):
                    found = program_of(words)
                    text = shlex.join(words)
                    if found and text not in seen:
                        seen[text] = Command(text, doc.relative_to(REPO).as_posix(), found[0], tuple(found[1]))
    return list(seen.values())


COMMANDS = documented_commands()


# -- deciding what runs -------------------------------------------------------------------------

def debug_root(path: str) -> Optional[str]:
    """The debug recipe's run folder that ``path`` (under ``runs/``) lies in, if any."""
    return next((root for root in DEBUG_RECIPES if path == root or path.startswith(root + "/")), None)


def values(args: tuple[str, ...]) -> Iterator[str]:
    """Every argument that is a value: positionals, option values, the part after ``=``."""
    for arg in args:
        if arg.startswith("-"):
            if "=" in arg:
                yield arg.split("=", 1)[1]
        else:
            yield arg


def referenced_paths(args: tuple[str, ...]) -> Iterator[str]:
    for value in values(args):
        if value.startswith("~") or value.endswith("/"):
            yield value
        yield from (m.group(0) for m in PATH_LIKE.finditer(value))


def exists(path: str) -> bool:
    if "*" in path:
        return any(REPO.glob(path))
    return (REPO / Path(path).expanduser()).exists()


def roots_needed(args: tuple[str, ...]) -> Optional[set[str]]:
    """The debug run folders the command reads from, or None if it reads a file that is neither
    shipped nor made by a debug recipe."""
    roots = set()
    for path in referenced_paths(args):
        if path.startswith("runs/"):
            root = debug_root(path)
            if root is None:
                return None
            roots.add(root)
        elif not exists(path):
            return None
    return roots


def option_value(args: tuple[str, ...], *names: str) -> list[str]:
    found = []
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                found.append(args[i + 1])
            elif arg.startswith(name + "="):
                found.append(arg.split("=", 1)[1])
    return found


def titans_run_root(args: tuple[str, ...]) -> Optional[str]:
    """The debug run folder a ``titans`` command trains or reads, if it is cheap enough to run."""
    if not args or args[0] not in ("fit", "validate", "test", "predict"):
        return None
    if (option_value(args, "--trainer.devices") not in ([], ["1"])
            or option_value(args, "--trainer.num_nodes", "--trainer.strategy")):
        return None
    if option_value(args, "--trainer.accelerator") not in ([], ["cpu"]):
        return None
    root = None
    for config in option_value(args, "-c", "--config"):
        if config in RUN_FRAGMENTS:
            continue
        recipe_root = next((r for r, recipe in DEBUG_RECIPES.items() if recipe == config), None)
        root = recipe_root or (debug_root(config) if config.startswith("runs/") else None)
        if root is None:
            return None
    return root


def mode_of(command: Command) -> str:
    if command.program == "titans":
        if any(HELP_FLAGS.match(a) for a in command.args):
            return "run"
        return "run" if titans_run_root(command.args) and roots_needed(command.args) is not None else "parse"
    if command.program == "titans-stream":
        checkpoint = next(values(command.args), "")
        readable = checkpoint.startswith("runs/") and roots_needed(command.args) is not None
        return "run" if readable and "-" not in command.args else "parse"
    return "parse"


CASES = [pytest.param(c, id=c.text, marks=[pytest.mark.skip(reason=SKIPPED[c.text])] if c.text in SKIPPED else [])
         for c in COMMANDS]


# -- running -----------------------------------------------------------------------------------

class Parsed(Exception):
    """Raised right after a script's argparse has accepted its arguments."""


def in_runs(args: tuple[str, ...], runs: Path) -> list[str]:
    """``args`` with every ``runs/...`` path (alone or after ``=``) moved under ``runs``."""
    moved = []
    for arg in args:
        key, eq, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
        if value.startswith("runs/"):
            value = str(runs / value)
        moved.append(f"{key}{eq}{value}" if eq or key else value)
    return moved


def titans(args: list[str], capsys: pytest.CaptureFixture) -> None:
    from titans_lightning.cli import main

    try:
        main(args)
    except SystemExit as exit_info:
        if exit_info.code:
            pytest.fail(f"titans {shlex.join(args)} exited {exit_info.code}:\n{capsys.readouterr().err[-3000:]}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder standing in for ``runs/``."""
    return tmp_path_factory.mktemp("doc-runs")


@pytest.fixture(scope="module")
def train(runs: Path):
    """``train(root)``: the debug recipe of ``root`` trained once into ``runs/<root>``."""
    trained: set[str] = set()

    def train(root: str, capsys: pytest.CaptureFixture) -> None:
        if root not in trained:
            titans(["fit", "-c", DEBUG_RECIPES[root], "--trainer.default_root_dir", str(runs / root), *LIMITS], capsys)
            trained.add(root)

    return train


def parse_benchmark(script: str, args: list[str], capsys: pytest.CaptureFixture) -> None:
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        original(self, args, namespace)
        raise Parsed

    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_then_stop), \
            mock.patch.object(sys, "argv", [script, *args]):
        try:
            runpy.run_path(str(REPO / script), run_name="__main__")
        except Parsed:
            return
        except SystemExit as exit_info:
            if exit_info.code:
                pytest.fail(f"{script} rejected its arguments:\n{capsys.readouterr().err[-2000:]}")
            return  # --help
    pytest.fail(f"{script} never parsed its arguments with argparse")


@pytest.mark.parametrize("command", CASES)
def test_documented_command(command: Command, runs: Path, train, capsys, monkeypatch):
    monkeypatch.chdir(REPO)  # documented paths are relative to the checkout
    mode = mode_of(command)
    if command.program == "titans" and mode == "run" and any(HELP_FLAGS.match(a) for a in command.args):
        titans(list(command.args), capsys)
    elif command.program == "titans" and mode == "run":
        for needed in roots_needed(command.args):
            train(needed, capsys)
        root = runs / titans_run_root(command.args)
        titans([*in_runs(command.args, runs), "--trainer.default_root_dir", str(root), *LIMITS], capsys)
    elif command.program == "titans":
        titans([*command.args, "--print_config"], capsys)
    elif command.program == "titans-stream":
        from titans_lightning import streaming

        if mode == "run":
            for needed in roots_needed(command.args):
                train(needed, capsys)
            try:
                streaming.main([*in_runs(command.args, runs), *STREAM_LIMIT])
            except SystemExit as exit_info:
                assert not exit_info.code, capsys.readouterr().err[-3000:]
        else:
            streaming.parse_args(list(command.args))
    else:
        parse_benchmark(command.program, list(command.args), capsys)


def test_the_docs_document_every_debug_recipe_and_the_quickstart():
    """The extraction finds commands at all: each debug recipe's fit runs, the quickstart parses."""
    fits = {c.text: mode_of(c) for c in COMMANDS if c.program == "titans" and c.args[:1] == ("fit",)}
    for recipe in sorted(REPO.glob("recipes/*/debug.yaml")):
        text = f"titans fit -c {recipe.relative_to(REPO).as_posix()}"
        assert fits.get(text) == "run", f"no runnable `{text}` in README.md or docs/"
    assert "titans fit -c recipes/lm/quickstart.yaml" in fits


def test_skipped_commands_are_still_documented():
    texts = {c.text for c in COMMANDS}
    assert not set(SKIPPED) - texts, "a skipped command is no longer in the docs: remove it from SKIPPED"

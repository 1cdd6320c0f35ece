"""Errors a user can read: a bad input file of every domain ends ``titans fit`` with one ``error:``
line naming the file and what was expected (exit status 1); ``TITANS_TRACEBACK=1`` brings the
traceback back; errors that are not the data side's input checks keep their traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lightning.pytorch import LightningDataModule

from external_domain.runs import QUIET, REPO, subprocess_env
from titans_lightning.cli import main
from titans_lightning.errors import TRACEBACK_VARIABLE, is_input_error


def latin1_text(path: Path) -> Path:
    path.write_bytes(b"fine line\n" * 3 + b"caf\xe9\n")
    return path


def series_with_a_bad_date(path: Path) -> Path:
    rows = ["date,a,b"] + [f"2020-01-01 {h:02d}:00:00,{h}.5,{h}" for h in range(6)]
    rows[3] = "yesterday,2.5,4"
    path.write_text("\n".join(rows) + "\n")
    return path


def fasta_without_header(path: Path) -> Path:
    path.write_text("ACGT\n>r1\nACGT\n")
    return path


def labels_with_an_empty_sequence(path: Path) -> Path:
    path.write_text("sequence,label\nACGT,EI\n,N\n")
    return path


def interactions_with_a_bad_timestamp(path: Path) -> Path:
    path.write_text("userId,movieId,timestamp\n1,1,5\n1,2,soon\n1,3,7\n")
    return path


# (recipe, file maker, file name, options naming the file, what the message must say besides the file)
CASES = [
    pytest.param("lm/debug.yaml", latin1_text, "latin1.txt", ["--data.path"],
                 "byte 33 (line 4) is not valid UTF-8", id="lm-text"),
    pytest.param("forecasting/debug.yaml", series_with_a_bad_date, "series.csv", ["--data.path"],
                 "data row 2 (line 4): 'yesterday' is not a date", id="forecasting-csv"),
    pytest.param("dna/pretrain.yaml", fasta_without_header, "genome.fa", ["--model.backbone.size=debug", "--data.path"],
                 "line 1: sequence line before any '>' header", id="dna-fasta"),
    pytest.param("dna/debug.yaml", labels_with_an_empty_sequence, "labels.csv", ["--data.path"],
                 "line 3: empty 'sequence'; every row needs a sequence and a label", id="dna-labels"),
    pytest.param("recsys/debug.yaml", interactions_with_a_bad_timestamp, "log.csv", ["--data.path"],
                 "cannot read 'soon' at row 2 (line 3", id="recsys-interactions"),
    pytest.param("longctx/debug.yaml", latin1_text, "haystack.txt", ["--data.haystack=text", "--data.haystack_path"],
                 "byte 33 (line 4) is not valid UTF-8", id="longctx-haystack"),
]


def fit_args(recipe: str, path: Path, options: list[str], root: Path) -> list[str]:
    return ["fit", "-c", str(REPO / "recipes" / recipe), *options, str(path),
            "--trainer.default_root_dir", str(root), *QUIET]


@pytest.mark.parametrize("recipe, make, name, options, expected", CASES)
def test_a_bad_file_ends_with_one_error_line(recipe, make, name, options, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(TRACEBACK_VARIABLE, raising=False)
    path = make(tmp_path / name)
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(recipe, path, options, tmp_path))
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
    assert str(path) in errors[0] and expected in errors[0], errors[0]
    assert "Traceback" not in err

    monkeypatch.setenv(TRACEBACK_VARIABLE, "1")
    with pytest.raises(ValueError, match="^" + str(path)):  # the exception itself, traceback and all
        main(fit_args(recipe, path, options, tmp_path))


def test_a_datamodule_argument_check_wrapped_by_the_parser_is_one_line_too(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(TRACEBACK_VARIABLE, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(REPO / "recipes/recsys/debug.yaml"), "--data.max_len", "0",
              "--trainer.default_root_dir", str(tmp_path), *QUIET])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "Traceback" not in err
    assert err.rstrip().splitlines()[-1].startswith("error: InteractionDataModule: expected max_len >= 1")


def test_from_the_shell_one_line_and_the_traceback_on_request(tmp_path):
    path = interactions_with_a_bad_timestamp(tmp_path / "log.csv")
    args = fit_args("recsys/debug.yaml", path, ["--data.path"], tmp_path)
    command = [sys.executable, "-m", "titans_lightning.cli", *args]
    plain = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert plain.returncode == 1
    assert plain.stderr.rstrip().splitlines()[-1].startswith(f"error: {path}: timestamp column 'timestamp'")
    assert "Traceback" not in plain.stderr

    verbose = subprocess.run(command, cwd=REPO, env=subprocess_env(**{TRACEBACK_VARIABLE: "1"}), capture_output=True,
                             text=True, timeout=300)
    assert verbose.returncode == 1
    assert "Traceback (most recent call last)" in verbose.stderr
    assert verbose.stderr.rstrip().splitlines()[-1].startswith(f"ValueError: {path}: timestamp column")


def test_an_error_from_outside_the_data_checks_keeps_its_traceback(tmp_path, capsys, monkeypatch):
    import external_domain.data

    monkeypatch.delenv(TRACEBACK_VARIABLE, raising=False)

    def broken(*args):  # a bug met while the DataModule sets up: not an input check of the data side
        return int("not a number")

    monkeypatch.setattr(external_domain.data, "delayed_copy", broken)
    with pytest.raises(ValueError, match="invalid literal"):
        main(["fit", "-c", str(REPO / "tests/external_domain/recipe.yaml"), "--trainer.default_root_dir", str(tmp_path),
              *QUIET])
    assert "error:" not in capsys.readouterr().err


# ---- which exceptions count -----------------------------------------------------------------

SOURCE = '''
import lightning

def check(path):
    raise ValueError(f"{path}: expected a number")

def unpack():
    a, b = (1, 2, 3)

def read(path):
    open(path)

def lookup():
    return {}["key"]

class Data(lightning.LightningDataModule):
    def setup(self, stage):
        check("own.csv")
'''


def module(name: str) -> dict:
    """``SOURCE`` run as a module named ``name`` (its frames report that module name)."""
    namespace = {"__name__": name}
    exec(compile(textwrap.dedent(SOURCE), f"<{name}>", "exec"), namespace)
    return namespace


def raised(call) -> BaseException:
    try:
        call()
    except Exception as error:  # noqa: BLE001 - any exception is the subject here
        return error
    raise AssertionError("nothing raised")


@pytest.mark.parametrize("package, call, counts", [
    pytest.param("datamodules.fake", lambda m: m["check"]("a.csv"), True, id="data-side-raise"),
    pytest.param("datamodules.fake", lambda m: m["read"]("/nonexistent/a.csv"), True, id="data-side-missing-file"),
    pytest.param("datamodules.fake", lambda m: m["unpack"](), False, id="data-side-unpacking-bug"),
    pytest.param("datamodules.fake", lambda m: m["lookup"](), False, id="data-side-key-error"),
    pytest.param("titans_lightning.fake", lambda m: m["check"]("a.csv"), False, id="model-side-raise"),
    pytest.param("my_domain.data", lambda m: m["Data"]().setup("fit"), True, id="external-datamodule-raise"),
    pytest.param("my_domain.data", lambda m: m["check"]("a.csv"), False, id="external-without-a-datamodule"),
])
def test_which_errors_are_input_errors(package, call, counts):
    namespace = module(package)
    assert issubclass(namespace["Data"], LightningDataModule)
    assert is_input_error(raised(lambda: call(namespace))) is counts

"""titans-stream: pieces cover the input exactly, the state stays the same size however long the
stream, and the streamed loss equals a full forward on a short file (from a real checkpoint)."""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from datamodules.text.tokenizer import BPETokenizer, ByteTokenizer
from titans_lightning.backbone import TitansBackbone, TitansConfig
from titans_lightning.heads.lm import LMHead
from titans_lightning.streaming import LossStream, find_tokenizer, load_lm, run, token_pieces

TEXT = "To be, or not to be: that is the question.\nWhether 'tis nobler in the mind — to suffer.\n" * 4


def full_forward_nll(task, data: bytes) -> torch.Tensor:
    """(n,) next-token losses of ``[EOD] + data`` in one call (the reference)."""
    tokens = torch.tensor([[256, *data]])
    with torch.no_grad():
        hidden, _ = task.backbone(task.head.embed(tokens[:, :-1]))
        return F.cross_entropy(task.head.logits(hidden)[0].float(), tokens[0, 1:], reduction="none")


def test_streamed_loss_equals_a_full_forward_on_a_short_file(debug_run: Path, tmp_path: Path):
    checkpoint = debug_run / "checkpoints" / "last.ckpt"
    data = TEXT.encode()
    (tmp_path / "in.txt").write_bytes(data)
    report = run([str(checkpoint), str(tmp_path / "in.txt"), "--chunk", "7", "--report-every", "100",
                  "--json", str(tmp_path / "out.json")])
    nll = full_forward_nll(load_lm(checkpoint, "cpu"), data)
    assert report.tokens == len(data) + 1 and report.predicted == len(data)
    assert math.isclose(report.loss, nll.mean().item(), rel_tol=1e-4)
    assert math.isclose(report.bpb, nll.mean().item() / math.log(2), rel_tol=1e-4)  # one byte per token
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["summary"]["tokens"] == len(data) + 1 and len(saved["reports"]) == (len(data) + 1) // 100


def test_stdin_streams_like_a_file(debug_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    checkpoint = str(debug_run / "checkpoints" / "last.ckpt")
    (tmp_path / "in.txt").write_bytes(TEXT.encode())
    from_file = run([checkpoint, str(tmp_path / "in.txt"), "--chunk", "64", "--max-tokens", "100"])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(TEXT.encode())))
    from_stdin = run([checkpoint, "-", "--chunk", "64", "--max-tokens", "100"])
    assert from_stdin.tokens == from_file.tokens == 100
    assert from_stdin.loss == from_file.loss


@pytest.mark.parametrize("variant,constant", [("mac", True), ("mag", True), ("mal", True), ("lmm", True),
                                              ("swa", True), ("transformer", False)])
def test_state_size_stays_constant_over_a_stream(variant, constant):
    torch.manual_seed(0)
    head, backbone = LMHead(257, 32), TitansBackbone(TitansConfig(variant=variant, size="debug")).eval()
    running = LossStream(head, backbone, torch.ones(257, dtype=torch.long))
    sizes = []
    for piece in torch.randint(0, 256, (12, 1, 16)):  # 16 = two debug segments, twice the window
        running.feed(piece)
        sizes.append(running.state.numel())
    assert (len(set(sizes)) == 1) == constant, sizes
    assert math.isfinite(running.report.loss) and running.report.tokens == 12 * 16


@pytest.mark.parametrize("chunk,block", [(5, 7), (64, 3), (1000, 1 << 20)], ids=["small", "tiny-blocks", "one-piece"])
def test_byte_pieces_cover_the_input_exactly(chunk, block):
    data = TEXT.encode()
    pieces = list(token_pieces(io.BytesIO(data), ByteTokenizer(), chunk, block_bytes=block))
    assert all(0 < p.size <= chunk for p in pieces)
    assert np.concatenate(pieces).tolist() == [256, *data]


def test_bpe_pieces_cut_between_lines_encode_like_the_whole_text():
    tokenizer = BPETokenizer.train([TEXT] * 5, 300)
    pieces = list(token_pieces(io.BytesIO(TEXT.encode()), tokenizer, chunk=9, block_bytes=50))
    assert np.concatenate(pieces).tolist() == [tokenizer.eod_id, *tokenizer.encode(TEXT).tolist()]


def test_missing_checkpoint_and_bad_options_are_reported(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        run([str(tmp_path / "nope.ckpt"), "-"])
    with pytest.raises(SystemExit):
        run([str(tmp_path / "nope.ckpt"), "-", "--chunk", "0"])


def run_folder(tmp_path: Path, data_class: str) -> Path:
    """A run folder whose config.yaml names ``data_class``; returns its (absent) checkpoint's path."""
    (tmp_path / "config.yaml").write_text(f"data:\n  class_path: {data_class}\n  init_args: {{}}\n")
    return tmp_path / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("data_class", ["datamodules.text.TextDataModule", "datamodules.niah.NeedleDataModule"],
                         ids=["text", "old-niah-path"])
def test_the_runs_tokenizer_is_read_by_the_data_class_its_config_names(data_class, tmp_path: Path):
    checkpoint = run_folder(tmp_path, data_class)
    bpe = BPETokenizer.train([TEXT] * 5, 300)
    bpe.save(tmp_path / "tokenizer.json")
    assert find_tokenizer(checkpoint, None, 300).encode(TEXT).tolist() == bpe.encode(TEXT).tolist()
    assert isinstance(find_tokenizer(checkpoint, "byte", 300), ByteTokenizer)
    (tmp_path / "tokenizer.json").unlink()
    assert isinstance(find_tokenizer(checkpoint, None, 257), ByteTokenizer)  # a byte-level run keeps no file
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        find_tokenizer(checkpoint, None, 300)


def test_a_run_without_config_or_with_a_non_text_data_class_is_reported(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        find_tokenizer(tmp_path / "checkpoints" / "last.ckpt", "byte", 257)
    with pytest.raises(TypeError, match="load_tokenizer"):
        find_tokenizer(run_folder(tmp_path, "datamodules.recsys.InteractionDataModule"), "byte", 257)

"""Streaming a trained language model over inputs of any length, with constant memory.

Shape legend: B streams, N tokens of one piece, D model width, V vocabulary, A answer tokens.

The backbone's state (``TitansBackbone(x, state) -> (h, state)``) is bounded for every variant but
the transformer, so reading a stream piece by piece costs the same memory at 2M tokens as at 16K.
Two users share the pieces here:

- the long-context evaluation (``tasks/longctx.py``): :func:`read_prompt` reads a haystack in
  pieces, then :func:`greedy_answer` / :func:`answer_nll` continue from the state it returns;
- the ``titans-stream`` command (:func:`main`): a file or stdin through a checkpoint, printing
  tokens/s, resident memory and the running loss and bits per byte::

      titans-stream runs/lm/debug/csv/version_0/checkpoints/last.ckpt book.txt --chunk 2048
      cat *.txt | titans-stream last.ckpt - --report-every 100000 --json stream.json

The model functions are pure torch; Lightning is imported only to load a checkpoint, never with
``weights_only=False`` (``safe_load.py``).
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import importlib
import json
import math
import os
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Optional

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from titans_lightning.safe_load import allowed_globals, load_checkpoint


@torch.no_grad()
def read_prompt(head: nn.Module, backbone: nn.Module, tokens: Tensor, chunk: int,
                state: Any = None) -> tuple[Tensor, Any]:
    """Feed ``tokens`` (B, N), N >= 1, in pieces of at most ``chunk`` tokens.

    Returns the last token's hidden state (B, D) (its next-token logits are
    ``head.logits(hidden)``) and the backbone state after the last token.
    """
    if tokens.ndim != 2 or tokens.shape[1] < 1 or chunk < 1:
        raise ValueError(f"read_prompt: expected (B, N >= 1) tokens and chunk >= 1, got {tuple(tokens.shape)}, {chunk}")
    for start in range(0, tokens.shape[1], chunk):
        hidden, state = backbone(head.embed(tokens[:, start:start + chunk]), state)
    return hidden[:, -1], state


@torch.no_grad()
def greedy_answer(head: nn.Module, backbone: nn.Module, hidden: Tensor, state: Any, steps: int) -> Tensor:
    """(B, steps) tokens decoded greedily from ``read_prompt``'s ``(hidden, state)``, one backbone
    call per token (the state is an immutable value: the caller's copy stays valid)."""
    tokens = []
    for step in range(steps):
        tokens.append(head.logits(hidden).argmax(-1))
        if step + 1 < steps:
            out, state = backbone(head.embed(tokens[-1][:, None]), state)
            hidden = out[:, -1]
    return torch.stack(tokens, 1)


@torch.no_grad()
def answer_nll(head: nn.Module, backbone: nn.Module, hidden: Tensor, state: Any, answer: Tensor) -> Tensor:
    """(B, A) next-token loss (nats) of ``answer`` (B, A) after the prompt, teacher-forced."""
    logits = head.logits(hidden)[:, None]
    if answer.shape[1] > 1:
        out, _ = backbone(head.embed(answer[:, :-1]), state)
        logits = torch.cat((logits, head.logits(out)), 1)
    return F.cross_entropy(logits.float().flatten(0, 1), answer.flatten(), reduction="none").view_as(answer)


@torch.no_grad()
def continuation_logprobs(head: nn.Module, backbone: nn.Module, hidden: Tensor, state: Any, continuation: Tensor,
                          chunk: int) -> tuple[Tensor, Tensor]:
    """Score ``continuation`` (B, A), A >= 1, after ``read_prompt``'s ``(hidden, state)``, reading
    it in pieces of at most ``chunk`` tokens (memory bounded by ``chunk``, whatever A).

    Returns (B, A) float32 log-probabilities of each continuation token and (B, A) whether each
    is the most likely token there (greedy decoding would produce it). The caller's state stays
    valid (states are values), so one prompt can be scored against several continuations.
    """
    last = head.logits(hidden).float()  # (B, V): predicts the continuation's first token
    logprobs, greedy = [], []
    for start in range(0, continuation.shape[1], chunk):
        piece = continuation[:, start:start + chunk]
        out, state = backbone(head.embed(piece), state)
        logits = torch.cat((last[:, None], head.logits(out[:, :-1]).float()), 1)  # (B, n, V)
        logprobs.append(logits.log_softmax(-1).gather(-1, piece[..., None])[..., 0])
        greedy.append(logits.argmax(-1) == piece)
        last = head.logits(out[:, -1]).float()
    return torch.cat(logprobs, 1), torch.cat(greedy, 1)


@dataclass
class StreamReport:
    """Where a stream stands: tokens read and predicted (all but the first), seconds spent in the
    model, summed loss in nats (over every predicted token, and over those standing for text),
    the bytes they stand for, the largest state (elements), resident and peak memory (MiB)."""

    tokens: int = 0
    predicted: int = 0
    seconds: float = 0.0
    nats: float = 0.0
    byte_nats: float = 0.0
    bytes: int = 0
    state_numel: int = 0
    rss_mib: float = 0.0
    peak_rss_mib: float = 0.0

    @property
    def loss(self) -> float:
        return self.nats / max(self.predicted, 1)

    @property
    def bpb(self) -> float:
        return self.byte_nats / math.log(2) / max(self.bytes, 1)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)

    def line(self) -> str:
        return (f"{self.tokens:>13,} tokens  {self.tokens_per_s:>9,.0f} tok/s  loss {self.loss:.4f}  "
                f"bpb {self.bpb:.4f}  rss {self.rss_mib:,.0f} MiB  peak {self.peak_rss_mib:,.0f} MiB  "
                f"state {self.state_numel:,} elements")

    def summary(self) -> dict[str, float]:
        keys = ("tokens", "seconds", "state_numel", "rss_mib", "peak_rss_mib")
        return {**{k: getattr(self, k) for k in keys}, "tokens_per_s": self.tokens_per_s, "loss": self.loss,
                "bpb": self.bpb}


def rss_mib() -> tuple[float, float]:
    """(resident, peak resident) memory of this process in MiB (Linux /proc; peak from getrusage)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1 << 10)
    try:
        with open("/proc/self/statm") as f:
            now = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except OSError:
        now = peak
    return now, peak


class LossStream:
    """Running next-token loss of a token stream fed piece by piece through ``head`` and ``backbone``.

    Holds the backbone state and the last token's logits (which predict the next piece's first
    token), nothing that grows with the stream. ``token_bytes`` (V,) gives the UTF-8 bytes each
    token stands for (bits per byte leave out tokens of 0 bytes, the end of a document).
    """

    def __init__(self, head: nn.Module, backbone: nn.Module, token_bytes: Tensor) -> None:
        self.head, self.backbone, self.token_bytes = head, backbone, token_bytes
        self.state: Any = None
        self.last_logits: Optional[Tensor] = None  # (1, V)
        self.report = StreamReport()

    @torch.no_grad()
    def feed(self, tokens: Tensor) -> None:
        """Read ``tokens`` (1, N) and add their next-token losses to the report."""
        start = time.perf_counter()
        hidden, self.state = self.backbone(self.head.embed(tokens), self.state)
        logits = self.head.logits(hidden)[0].float()  # (N, V)
        if self.last_logits is None:  # the stream's first token has no prediction
            logits_for, targets = logits[:-1], tokens[0, 1:]
        else:
            logits_for, targets = torch.cat((self.last_logits, logits[:-1])), tokens[0]
        nll = F.cross_entropy(logits_for, targets, reduction="none")  # (N or N - 1,)
        target_bytes = self.token_bytes[targets]
        self.last_logits = logits[-1:]
        r = self.report
        r.seconds += time.perf_counter() - start
        r.tokens += tokens.shape[1]
        r.predicted += targets.numel()
        r.nats += float(nll.sum())
        r.byte_nats += float(nll[target_bytes > 0].sum())
        r.bytes += int(target_bytes.sum())
        r.state_numel = max(r.state_numel, self.state.numel())
        r.rss_mib, r.peak_rss_mib = rss_mib()


def token_pieces(source: BinaryIO, tokenizer: Any, chunk: int, block_bytes: int = 1 << 20) -> Iterator[np.ndarray]:
    """Token pieces of at most ``chunk`` tokens from a byte stream, starting with the end-of-document
    token (training documents start after one). Reads ``block_bytes`` at a time.

    A byte tokenizer maps bytes to tokens exactly however the input is cut. Other tokenizers
    encode the text between newlines as they come (a multi-byte character or a word is never
    cut), which can differ from encoding the whole file at once where blank lines meet.
    """
    pending = np.array([tokenizer.eod_id], dtype=np.int64)
    decoder, carry = codecs.getincrementaldecoder("utf-8")(errors="replace"), ""
    while True:
        block = source.read(block_bytes)
        if tokenizer.kind == "byte":
            ids = np.frombuffer(block, dtype=np.uint8)
        else:
            text = carry + decoder.decode(block, final=not block)
            cut = len(text) if not block else text.rfind("\n") + 1
            ids, carry = tokenizer.encode(text[:cut]), text[cut:]
        pending = np.concatenate((pending, ids.astype(np.int64)))
        while pending.size >= chunk or (not block and pending.size):
            yield pending[:chunk]
            pending = pending[chunk:]
        if not block:
            return


BYTE_VOCAB = 257  # UTF-8 bytes and the end-of-document token: the text side's byte tokenizer


def find_tokenizer(checkpoint: Path, given: Optional[str], vocab_size: int) -> Any:
    """The tokenizer: ``given`` (``byte`` or a tokenizer.json), else the run's
    ``<run>/tokenizer.json`` beside ``<run>/checkpoints/``, else bytes when the vocabulary is 257.

    It is read by ``load_tokenizer`` of the data class that the run's ``config.yaml`` names (the
    text DataModules have one), so this module never imports the data side.
    """
    run_dir = checkpoint.resolve().parent.parent
    path = Path(given) if given and given != "byte" else run_dir / "tokenizer.json"
    if given == "byte" or (given is None and not path.is_file() and vocab_size == BYTE_VOCAB):
        source = "byte"
    elif path.is_file():
        source = str(path)
    else:
        raise FileNotFoundError(f"titans-stream: no tokenizer at {str(path)!r}; pass --tokenizer byte or the "
                                "tokenizer.json that the text DataModule wrote into the run folder")
    return run_data_class(run_dir).load_tokenizer(source)


def run_data_class(run_dir: Path) -> type:
    """The data class named by ``<run_dir>/config.yaml`` (``data.class_path``, as ``titans fit``
    wrote it), imported; it must offer ``load_tokenizer(source)``."""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"titans-stream: no {str(config_path)!r}; the tokenizer is read by the data class "
                                "that a run's config names: stream a checkpoint inside its `titans fit` run folder")
    config = yaml.safe_load(config_path.read_text()) or {}
    class_path = (config.get("data") or {}).get("class_path")
    if not class_path:
        raise ValueError(f"titans-stream: {str(config_path)!r} names no data.class_path")
    module, name = class_path.rsplit(".", 1)
    data_class = getattr(importlib.import_module(module), name)
    if not callable(getattr(data_class, "load_tokenizer", None)):
        raise TypeError(f"titans-stream: {class_path} has no load_tokenizer(source); streaming needs a text DataModule")
    return data_class


def load_lm(checkpoint: Path, device: str) -> nn.Module:
    """The task saved in ``checkpoint`` (any ``TitansTask`` with an LM head: ``head.embed`` and
    ``head.logits``), in eval mode on ``device``.

    The checkpoint names the task's class (the CLI stores ``_class_path``), which must be an
    installed ``TitansTask``. It is read by the weights-only unpickler (``safe_load``): a file
    holding anything but tensors, plain values and the toolkit's config types is refused
    (:class:`~titans_lightning.safe_load.UnsafeCheckpointError`) before any of it runs.
    """
    from titans_lightning.tasks.base import TitansTask

    if not checkpoint.is_file():
        raise FileNotFoundError(f"titans-stream: checkpoint {str(checkpoint)!r} not found")
    saved = load_checkpoint(checkpoint, mmap=True)
    class_path = saved.get("hyper_parameters", {}).get("_class_path")
    if not class_path:
        raise ValueError(f"titans-stream: {str(checkpoint)!r} does not name its task class (_class_path); "
                         "expected a checkpoint written by `titans fit`")
    module, name = class_path.rsplit(".", 1)
    task_class = getattr(importlib.import_module(module), name)
    if not issubclass(task_class, TitansTask):
        raise TypeError(f"titans-stream: {class_path} is not a TitansTask")
    with allowed_globals():
        task = task_class.load_from_checkpoint(checkpoint, map_location=device, weights_only=True)
    if not (hasattr(task.head, "embed") and hasattr(task.head, "logits")):
        raise TypeError(f"titans-stream: {type(task).__name__} has no language-model head (head.embed, head.logits)")
    return task.eval()


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="titans-stream", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a language-model checkpoint (titans fit ... checkpoints/*.ckpt)")
    parser.add_argument("input", help="a file to read, or - for stdin")
    parser.add_argument("--chunk", type=int, default=2048, help="tokens per backbone call (memory grows with it)")
    parser.add_argument("--tokenizer", default=None, help="byte, or a tokenizer.json (default: the run's)")
    parser.add_argument("--max-tokens", type=int, default=None, help="stop after this many tokens")
    parser.add_argument("--report-every", type=int, default=65536, help="tokens between progress lines")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ...")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="write the progress reports and summary here")
    args = parser.parse_args(argv)
    if args.chunk < 1 or args.report_every < 1 or (args.max_tokens is not None and args.max_tokens < 1):
        parser.error("--chunk, --report-every and --max-tokens must be >= 1")
    return args


def stream(task: nn.Module, source: BinaryIO, tokenizer: Any, args: argparse.Namespace) -> tuple[StreamReport, list]:
    """Feed ``source`` through ``task`` piece by piece; print a line every ``report_every`` tokens."""
    token_bytes = torch.from_numpy(tokenizer.token_bytes()).to(args.device)
    running = LossStream(task.head, task.backbone, token_bytes)
    history, next_report = [], args.report_every
    for piece in token_pieces(source, tokenizer, args.chunk):
        if args.max_tokens is not None:
            piece = piece[:args.max_tokens - running.report.tokens]
        running.feed(torch.from_numpy(piece)[None].to(args.device))
        report = running.report
        if report.tokens >= next_report or report.tokens == args.max_tokens:
            print(report.line(), flush=True)
            history.append(report.summary())
            next_report = (report.tokens // args.report_every + 1) * args.report_every
        if report.tokens == args.max_tokens:
            break
    return running.report, history


def run(argv: Optional[list[str]] = None) -> StreamReport:
    """``titans-stream CHECKPOINT INPUT [options]``; returns the final report."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    task = load_lm(args.checkpoint, args.device)
    tokenizer = find_tokenizer(args.checkpoint, args.tokenizer, task.data_sizes.get("vocab_size", 0))
    source = contextlib.nullcontext(sys.stdin.buffer) if args.input == "-" else open(args.input, "rb")
    with source as source:
        report, history = stream(task, source, tokenizer, args)
    print(f"done: {report.line()}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": report.summary(), "reports": history,
                                         "checkpoint": str(args.checkpoint), "chunk": args.chunk}, indent=1))
    return report


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point of ``titans-stream`` (see :func:`run`)."""
    run(argv)


if __name__ == "__main__":
    main()

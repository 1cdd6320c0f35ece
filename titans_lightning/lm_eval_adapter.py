"""lm-evaluation-harness adapter: ``lm_eval`` scores a model written by ``titans export``.

Shape legend: C context tokens, A continuation tokens, V vocabulary (one request at a time, B = 1).

:class:`TitansLM` is an ``lm_eval.api.model.LM`` registered as ``titans``
(``simple_evaluate(model="titans", model_args="pretrained=DIR")``). Every input is read through
the backbone's streaming state (``streaming.py``): the context in pieces of at most ``chunk``
tokens, so nothing is truncated and memory stays bounded for every variant but the transformer;
the continuation is scored the same way. Inputs start with the end-of-document token, as every
training document does. Text becomes tokens by the export's tokenizer; a continuation's tokens are
those of ``context + continuation`` past the context's (the Hugging Face models' convention in
``lm_eval``), with the context's trailing spaces moved to the continuation.

- ``loglikelihood``: summed log-probability of the continuation and whether greedy decoding
  would produce it; the contexts of a multiple-choice question are read once for all its choices;
- ``loglikelihood_rolling``: the whole text after the end-of-document token, every token predicted
  once with all the text before it as context (no windows: the state carries it);
- ``generate_until``: greedy (or sampled, ``do_sample``/``temperature``) decoding, one backbone step
  per token, until a stop string, the end-of-document token or ``max_gen_toks``.

Command (needs the ``eval`` extra, ``pip install -e ".[eval]"``)::

    python -m titans_lightning.lm_eval_adapter EXPORT_DIR --tasks piqa,hellaswag --output results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

import torch
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from titans_lightning.export import load_tokenizer
from titans_lightning.heads.lm import sample_next
from titans_lightning.pretrained import load_pretrained
from titans_lightning.streaming import continuation_logprobs, read_prompt


@register_model("titans")
class TitansLM(LM):
    """An exported Titans language model, for ``lm_eval``.

    Args:
        pretrained: the folder ``titans export`` wrote (weights, config, tokenizer).
        device: ``cpu``, ``cuda``, ``cuda:1`` ...
        chunk: tokens per backbone call when reading an input (memory grows with it, not with inputs).
        max_gen_toks: default limit of ``generate_until`` when a task gives none.
        batch_size, max_batch_size: accepted as ``lm_eval`` passes them; requests run one at a time.
    """

    def __init__(self, pretrained: str, device: str = "cpu", chunk: int = 2048, max_gen_toks: int = 256,
                 batch_size: Any = 1, max_batch_size: Optional[int] = None) -> None:
        super().__init__()
        if chunk < 1:
            raise ValueError(f"TitansLM: chunk must be >= 1, got {chunk}")
        self.model = load_pretrained(pretrained, device)
        if not hasattr(self.model.head, "logits"):
            raise ValueError(f"TitansLM: {pretrained!r} is not a language model (head {self.model.config['head']})")
        self.tokenizer = load_tokenizer(pretrained)
        self._device = torch.device(device)
        self.chunk, self.max_gen_toks = int(chunk), int(max_gen_toks)

    # ---- text <-> tokens ----------------------------------------------------------------------

    def tensor(self, ids: list[int]) -> torch.Tensor:
        """(1, N) int64 on the model's device."""
        return torch.tensor([ids], dtype=torch.long, device=self._device)

    def encode(self, text: str) -> list[int]:
        return [int(i) for i in self.tokenizer.encode(text)] if text else []

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context tokens after the end-of-document token, continuation tokens)."""
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole, head = self.encode(context + continuation), self.encode(context)
        return [self.tokenizer.eod_id, *head], whole[len(head):]

    # ---- the three request types --------------------------------------------------------------

    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """``(sum of log p(continuation | context), greedy)`` per ``(context, continuation)`` request."""
        results, read = [], (None, None)
        for request in tqdm(requests, desc="loglikelihood", disable=disable_tqdm or self.rank != 0):
            context, continuation = self.encode_pair(*request.args)
            if not continuation:
                results.append((0.0, True))
                continue
            if read[0] != context:  # the choices of one question share their context: read it once
                read = (context, read_prompt(self.model.head, self.model.backbone, self.tensor(context), self.chunk))
            logprobs, greedy = continuation_logprobs(self.model.head, self.model.backbone, *read[1],
                                                     self.tensor(continuation), self.chunk)
            results.append((float(logprobs.double().sum()), bool(greedy.all())))
            self.cache_hook.add_partial("loglikelihood", request.args, results[-1])
        return results

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        """Summed log-probability of each whole text, every token predicted once (perplexity)."""
        results = []
        for request in tqdm(requests, desc="loglikelihood_rolling", disable=disable_tqdm or self.rank != 0):
            tokens = self.encode(request.args[0])
            total = 0.0
            if tokens:
                read = read_prompt(self.model.head, self.model.backbone, self.tensor([self.tokenizer.eod_id]),
                                   self.chunk)
                logprobs, _ = continuation_logprobs(self.model.head, self.model.backbone, *read,
                                                    self.tensor(tokens), self.chunk)
                total = float(logprobs.double().sum())
            results.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return results

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        """The continuation of each context, cut before the first stop string (``until``)."""
        results = []
        for request in tqdm(requests, desc="generate_until", disable=disable_tqdm or self.rank != 0):
            context, kwargs = request.args
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            temperature = float(kwargs.get("temperature", 0.0)) if kwargs.get("do_sample") else 0.0
            text = self.generate(context, until, int(kwargs.get("max_gen_toks", self.max_gen_toks)), temperature)
            results.append(text)
            self.cache_hook.add_partial("generate_until", request.args, text)
        return results

    @torch.no_grad()
    def generate(self, context: str, until: list[str], max_tokens: int, temperature: float = 0.0) -> str:
        """Decode after ``context`` through the streaming state, one backbone step per new token."""
        head, backbone = self.model.head, self.model.backbone
        hidden, state = read_prompt(head, backbone, self.tensor([self.tokenizer.eod_id, *self.encode(context)]),
                                    self.chunk)
        ids: list[int] = []
        for _ in range(max_tokens):
            token = sample_next(head.logits(hidden), temperature)  # (1,)
            if int(token) == self.tokenizer.eod_id:
                break
            ids.append(int(token))
            text = self.tokenizer.decode(ids)
            if any(stop in text for stop in until):
                break
            out, state = backbone(head.embed(token[:, None]), state)
            hidden = out[:, -1]
        return cut_at_stops(self.tokenizer.decode(ids), until)


def cut_at_stops(text: str, until: list[str]) -> str:
    """``text`` up to (not including) the earliest of the stop strings ``until``."""
    cuts = [text.find(stop) for stop in until if stop and stop in text]
    return text[:min(cuts)] if cuts else text


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m titans_lightning.lm_eval_adapter",
                                     description="Score a `titans export` folder with lm-evaluation-harness.")
    parser.add_argument("pretrained", help="the folder `titans export` wrote")
    parser.add_argument("--tasks", required=True, help="comma-separated lm_eval task or group names")
    parser.add_argument("--num_fewshot", type=int, default=None, help="examples in each prompt (default: the task's)")
    parser.add_argument("--limit", type=float, default=None, help="documents per task (testing only)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    parser.add_argument("--chunk", type=int, default=2048, help="tokens per backbone call")
    parser.add_argument("--include_path", default=None, help="a folder of your own task YAML files")
    parser.add_argument("--only_include_path", action="store_true",
                        help="index only --include_path, not lm_eval's own tasks (faster)")
    parser.add_argument("--output", type=Path, default=None, help="write the results (JSON) here")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    """Run ``lm_eval.simple_evaluate`` on the export; print the table, return (and write) the results."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import make_table

    args = parse_args(argv)
    manager = TaskManager(include_path=args.include_path, include_defaults=not args.only_include_path)
    results = simple_evaluate(model=TitansLM(args.pretrained, args.device, args.chunk),
                              tasks=args.tasks.split(","), num_fewshot=args.num_fewshot, limit=args.limit,
                              task_manager=manager, log_samples=False)
    print(make_table(results))
    summary = {"pretrained": args.pretrained, "results": results["results"], "n-shot": results.get("n-shot")}
    if args.output is not None:
        args.output.write_text(json.dumps(summary, indent=1, default=str))
    return summary


if __name__ == "__main__":
    main()

"""The lm-evaluation-harness adapter on an exported debug model, offline: its scores equal the
model's own log-probabilities of a whole forward (while it reads in pieces through the streaming
state), greedy generation equals decoding by recomputation, and a local multiple-choice task runs
end to end through ``lm_eval``'s own evaluator."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from lm_eval.api.instance import Instance

from titans_lightning.heads.lm import generate_by_recomputation
from titans_lightning.lm_eval_adapter import TitansLM, main

EOD = 256  # the byte tokenizer's end-of-document token
PAIRS = [("ROMEO:", " O, she doth teach the torches"), ("", "To be, or not to be"),
         ("Whether 'tis nobler", " in the mind — to suffer"), ("JULIET:", "\n")]


@pytest.fixture(scope="module")
def lm(lm_export: Path) -> TitansLM:
    return TitansLM(str(lm_export), chunk=3)  # pieces of 3 tokens: every input crosses piece boundaries


def whole_forward_logprobs(lm: TitansLM, context: str, continuation: str) -> tuple[float, bool]:
    """The reference: ``[EOD] + context + continuation`` in one call; summed log-probability of the
    continuation's bytes and whether each is the argmax."""
    prefix, scored = [EOD, *context.encode()], list(continuation.encode())
    tokens = torch.tensor([prefix + scored])
    with torch.no_grad():
        logits, _ = lm.model.logits(tokens[:, :-1])
    logprobs = logits[0, len(prefix) - 1:].float().log_softmax(-1)
    targets = torch.tensor(scored)
    return float(logprobs.gather(-1, targets[:, None]).double().sum()), bool((logprobs.argmax(-1) == targets).all())


def requests(kind: str, arguments: list[tuple]) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=args, idx=i) for i, args in enumerate(arguments)]


def test_loglikelihood_equals_the_model_summed_logprobs(lm: TitansLM):
    scores = lm.loglikelihood(requests("loglikelihood", PAIRS), disable_tqdm=True)
    for (context, continuation), (logprob, greedy) in zip(PAIRS, scores):
        expected, expected_greedy = whole_forward_logprobs(lm, context, continuation)
        assert logprob == pytest.approx(expected, rel=1e-4, abs=1e-4) and greedy == expected_greedy
    assert all(logprob < 0 for logprob, _ in scores)


def test_loglikelihood_rolling_scores_every_token_once(lm: TitansLM):
    texts = ["To be, or not to be: that is the question.", "Ay — there's the rub."]
    scores = lm.loglikelihood_rolling(requests("loglikelihood_rolling", [(t,) for t in texts]), disable_tqdm=True)
    for text, score in zip(texts, scores):
        assert score == pytest.approx(whole_forward_logprobs(lm, "", text)[0], rel=1e-4)


@pytest.fixture(scope="module")
def untied_lm(lm_export: Path, tmp_path_factory: pytest.TempPathFactory) -> TitansLM:
    """The export with an untied output layer at random weights: its greedy text varies (the
    2-step model, tied, repeats one byte), so stop strings are met mid-way."""
    from safetensors.torch import save_model

    from titans_lightning.pretrained import build_model, read_config

    folder = tmp_path_factory.mktemp("untied")
    for name in ("config.json", "tokenizer.json"):
        shutil.copyfile(lm_export / name, folder / name)
    config = read_config(folder)
    config["head"]["args"]["tie_weights"] = False
    (folder / "config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    save_model(build_model(config), str(folder / "model.safetensors"))
    return TitansLM(str(folder), chunk=3)


def test_generate_until_equals_greedy_decoding_by_recomputation(untied_lm: TitansLM):
    context, steps = "ROMEO:", 16
    prompt = torch.tensor([[EOD, *context.encode()]])
    head, backbone = untied_lm.model.head, untied_lm.model.backbone
    ids = generate_by_recomputation(head, backbone, prompt, steps, temperature=0.0)[0, prompt.shape[1]:].tolist()
    reference = untied_lm.tokenizer.decode(ids[:ids.index(EOD)] if EOD in ids else ids)
    stop = next(c for c in reference[3:] if c.isascii() and c.isalnum())  # met after a few tokens
    asked = [(context, {"until": [stop], "max_gen_toks": steps}), (context, {"until": [], "max_gen_toks": steps})]
    cut, whole = untied_lm.generate_until(requests("generate_until", asked), disable_tqdm=True)
    assert whole == reference and cut == reference.split(stop)[0] and 3 <= len(cut) < len(reference)


def test_a_local_multiple_choice_task_runs_end_to_end(lm: TitansLM, lm_export: Path, tmp_path: Path):
    docs = [{"question": "ROMEO:", "choices": [" O, she doth teach", " qx zv", " 12345"], "label": 0},
            {"question": "To be, or not", "choices": [" to be", "zzzz"], "label": 1},
            {"question": "JULIET:", "choices": ["\nWhat", " ~~~~"], "label": 0},
            {"question": "The king", "choices": [" is dead", " eats", " --"], "label": 2}]
    (tmp_path / "tiny.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    (tmp_path / "tiny.yaml").write_text(
        "task: titans_tiny_mc\ndataset_path: json\ndataset_kwargs:\n"
        f"  data_files:\n    test: {tmp_path / 'tiny.jsonl'}\n  cache_dir: {tmp_path / 'hf'}\n"
        "test_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: "{{label}}"\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")

    summary = main([str(lm_export), "--tasks", "titans_tiny_mc", "--include_path", str(tmp_path),
                    "--only_include_path", "--output", str(tmp_path / "results.json")])

    pairs = [(d["question"], choice) for d in docs for choice in d["choices"]]
    scores = iter(lm.loglikelihood(requests("loglikelihood", pairs), disable_tqdm=True))
    right = 0
    for doc in docs:
        per_choice = [next(scores)[0] for _ in doc["choices"]]
        right += per_choice.index(max(per_choice)) == doc["label"]
    expected = right / len(docs)
    assert summary["results"]["titans_tiny_mc"]["acc,none"] == pytest.approx(expected)
    assert json.loads((tmp_path / "results.json").read_text())["results"]["titans_tiny_mc"]["acc,none"] == \
        pytest.approx(expected)

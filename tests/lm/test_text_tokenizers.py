"""A user's Hugging Face ``tokenizer.json`` through ``--data.tokenizer``: its EOS token ends
documents (or an added one), no BOS per document, byte counts, the vocabulary linked to the model,
the run's saved tokenizer loads back the same; a file that is not a tokenizer is a clear error.
Every tokenizer here is trained in the test (nothing downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from datamodules.text import TextDataModule
from datamodules.text.tokenizer import EOD_TOKEN, HFTokenizer
from external_domain.runs import QUIET, REPO, newest_version
from titans_lightning.cli import main

from .conftest import document

SPLITS = ("train", "val", "test")
TRAINING_TEXT = [document(k) + "Ünïcödé café, words to merge and merge again. " * 3 for k in range(20)]


def data(path, tmp_path: Path, **kwargs) -> TextDataModule:
    kwargs = {"seq_len": 16, "batch_size": 2, "cache_dir": str(tmp_path / "cache"), **kwargs}
    return TextDataModule(path=str(path), **kwargs)


def gpt_style(folder: Path) -> Path:
    """A byte-level BPE with ``<s>`` and ``</s>`` whose post-processor adds ``<s>`` (as Llama's)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(TRAINING_TEXT, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    folder.mkdir(exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"


def sentencepiece_style(folder: Path) -> Path:
    """A BPE over ``▁``-marked words with only a padding token: no EOS."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
    tokenizer.decoder = decoders.Metaspace(prepend_scheme="never")
    tokenizer.train_from_iterator(TRAINING_TEXT, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<unk>"], show_progress=False))
    folder.mkdir(exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"


def test_a_tokenizer_json_with_eos_ends_documents_with_it(make_corpus, tmp_path, caplog):
    file = gpt_style(tmp_path / "gpt")
    eos = Tokenizer.from_file(str(file)).token_to_id("</s>")
    dm = data(make_corpus(12), tmp_path, tokenizer=str(file.parent))  # a folder holding tokenizer.json
    assert dm.data_sizes == {"vocab_size": Tokenizer.from_file(str(file)).get_vocab_size()}
    with caplog.at_level("INFO"):
        dm.setup("fit")
    assert f"end of document = its special token '</s>' (id {eos})" in caplog.text
    for split in SPLITS:
        tokens = dm.cache.tokens(split)
        assert tokens[0] == eos and (tokens == eos).sum() == dm.cache.meta["splits"][split]["documents"]
        assert 0 not in tokens  # no <s> per document: the post-processor is not applied
        names = dm.cache.documents(split)
        assert dm.decode(tokens.tolist()) == "".join(document(int(n[3:5])) for n in names)
        assert dm.tokenizer.token_bytes()[tokens.astype(np.int64)].sum() == sum(
            len(document(int(n[3:5])).encode()) for n in names)


def test_a_tokenizer_json_without_eos_gets_one_added_and_saved(make_corpus, tmp_path, caplog):
    file = sentencepiece_style(tmp_path / "sp")
    base = Tokenizer.from_file(str(file)).get_vocab_size()
    dm = data(make_corpus(12), tmp_path, tokenizer=str(file))
    assert dm.data_sizes == {"vocab_size": base + 1}
    with caplog.at_level("INFO"):
        dm.setup("fit")
    assert "has no EOS token" in caplog.text and f"the added '{EOD_TOKEN}' (id {base}" in caplog.text
    assert dm.tokenizer.eod_id == base and dm.cache.tokens("train")[0] == base
    dm.save_artifacts(str(tmp_path))
    again = TextDataModule.load_tokenizer(str(tmp_path / "tokenizer.json"))
    assert again.eod_id == base and again.vocab_size == base + 1
    text = "Line 3 of a small play, spoken twice."
    assert again.decode(again.encode(text)) == text
    assert again.token_bytes()[again.encode(text).astype(np.int64)].sum() == len(text)


@pytest.mark.parametrize("content, message", [
    pytest.param('{"vocabulary": [1, 2]}', r"not_a_tokenizer\.json \(--data.tokenizer\) is not a Hugging Face "
                 r"tokenizer\.json", id="other-json"),
    pytest.param("plain words", r"is not a Hugging Face tokenizer\.json", id="text"),
])
def test_a_file_that_is_not_a_tokenizer_raises(content, message, tmp_path):
    (tmp_path / "not_a_tokenizer.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        HFTokenizer.from_file(str(tmp_path / "not_a_tokenizer.json"))
    with pytest.raises(ValueError, match=message):  # at construction, before any data is read
        data(tmp_path, tmp_path, tokenizer=str(tmp_path / "not_a_tokenizer.json"))


def test_a_folder_without_tokenizer_json_raises_at_construction(tmp_path):
    with pytest.raises(ValueError, match=r"--data.tokenizer '.*': no such file; expected 'byte', 'bpe', or a path"):
        data(tmp_path, tmp_path, tokenizer=str(tmp_path))


def test_jsonl_and_a_tokenizer_json_train_through_the_cli(tmp_path):
    """``--data.path`` (JSON lines) and ``--data.tokenizer`` (a file) alone: the vocabulary of the
    file, with its added end-of-document token, reaches the model by the data_sizes link."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": document(k)}) + "\n" for k in range(8)), encoding="utf-8")
    file = sentencepiece_style(tmp_path / "sp")
    main(["fit", "-c", str(REPO / "recipes" / "lm" / "debug.yaml"), "--trainer.default_root_dir", str(tmp_path),
          "--data.cache_dir", str(tmp_path / "cache"), *QUIET, "--data.path", str(corpus),
          "--data.tokenizer", str(file), "--data.seq_len", "16", "--trainer.max_steps", "2",
          "--trainer.val_check_interval", "2"])
    run = newest_version(tmp_path / "csv")
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    vocab = Tokenizer.from_file(str(file)).get_vocab_size() + 1
    assert checkpoint["state_dict"]["head.embedding.weight"].shape == (vocab, 32)
    assert Tokenizer.from_file(str(run / "tokenizer.json")).token_to_id(EOD_TOKEN) == vocab - 1

"""``titans predict`` for DNA: the sequences to predict (FASTA, gzipped, CSV), the classifier's
probabilities in file order with both strands averaged, bits per nucleotide per sequence of a
pretraining model, and the tables the writer makes of them."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest
import torch

from datamodules.dna import GenomicsClassificationDataModule, GenomicsPretrainDataModule
from datamodules.dna.predict import read_predict_source
from datamodules.dna.tokenizer import NucleotideTokenizer, reverse_complement_tokens
from titans_lightning.backbone import TitansConfig
from titans_lightning.tasks.dna import DNAClassificationTask, DNAPretrainTask, bits_frame, class_frame

TOKENIZER = NucleotideTokenizer()
SEQUENCES = {"first": "ACGTTGCAAC", "second": "GGATCCAATTGCAGTCAGTTACA", "third": "TTA"}


def write_fasta(path: Path, sequences: dict[str, str]) -> str:
    text = "".join(f">{name} description\n{seq}\n" for name, seq in sequences.items()).encode()
    path.write_bytes(gzip.compress(text) if path.suffix == ".gz" else text)
    return str(path)


def built(task_class, sizes: dict[str, int]):
    torch.manual_seed(0)
    task = task_class(TitansConfig(variant="lmm", size="debug"), data_sizes=sizes)
    task.configure_model()
    return task.eval()


def predict(task, data) -> list[dict[str, torch.Tensor]]:
    data.setup("predict")
    with torch.no_grad():
        return [task.predict_step(batch, i) for i, batch in enumerate(data.predict_dataloader())]


def test_predict_sources_name_their_sequences(tmp_path):
    fasta = read_predict_source(write_fasta(tmp_path / "p.fa.gz", SEQUENCES))
    assert fasta.ids == list(SEQUENCES)
    assert [TOKENIZER.decode(s) for s in fasta.sequences] == list(SEQUENCES.values())
    (tmp_path / "p.csv").write_text("name,seq,other\n" + "".join(f"{k},{v},x\n" for k, v in SEQUENCES.items()))
    named = read_predict_source(tmp_path / "p.csv", "seq", "name")
    assert named.ids == list(SEQUENCES) and TOKENIZER.decode(named.sequences[1]) == SEQUENCES["second"]
    assert read_predict_source(tmp_path / "p.csv", "seq").ids == ["1", "2", "3"]
    with pytest.raises(ValueError, match=r"p\.csv: no column 'id' \(id_column\); the header has"):
        read_predict_source(tmp_path / "p.csv", "seq", "id")


def test_classifier_predictions_average_both_strands_in_file_order(tmp_path):
    path = write_fasta(tmp_path / "p.fa", SEQUENCES)
    data = GenomicsClassificationDataModule(predict_path=path, rc_average=True, batch_size=2)
    task = built(DNAClassificationTask, data.data_sizes)
    outputs = predict(task, data)
    assert all("rc_tokens" in batch for batch in data.predict_dataloader())
    frame = class_frame(outputs, data.predict_ids, data.label_names)
    assert frame.columns == ["id", "predicted", "prob_EI", "prob_IE", "prob_N"]
    assert frame["id"].to_list() == list(SEQUENCES)
    for row, text in zip(frame.iter_rows(named=True), SEQUENCES.values()):
        tokens = torch.cat([TOKENIZER.encode(text), torch.tensor([1])]).unsqueeze(0)  # bases then CLS
        rc = torch.cat([reverse_complement_tokens(TOKENIZER.encode(text)), torch.tensor([1])]).unsqueeze(0)
        with torch.no_grad():
            one = (task.class_logits(tokens, tokens > 0).softmax(-1) + task.class_logits(rc, rc > 0).softmax(-1)) / 2
        written = torch.tensor([row[f"prob_{name}"] for name in data.label_names])
        assert torch.allclose(written, one[0], atol=1e-5)
        assert row["predicted"] == data.label_names[int(written.argmax())]


def test_pretrain_predictions_are_bits_per_nucleotide_of_each_sequence(tmp_path):
    sequences = {"long": SEQUENCES["second"] * 2, "short": SEQUENCES["first"], "one": "G"}
    data = GenomicsPretrainDataModule(predict_path=write_fasta(tmp_path / "p.fa", sequences), seq_len=8, batch_size=3)
    task = built(DNAPretrainTask, data.data_sizes)
    frame = bits_frame(predict(task, data), data.predict_ids)
    assert frame["id"].to_list() == list(sequences)
    assert frame["bases"].to_list() == [len(s) - 1 for s in sequences.values()]  # every base but the first, once
    assert frame["bpn"][2] is None
    for name, text in list(sequences.items())[:2]:
        tokens = TOKENIZER.encode(text)
        # windows of 9 tokens overlapping by one: each scores the next 8 bases
        windows = [tokens[s:s + 9] for s in range(0, len(tokens) - 1, 8)]
        with torch.no_grad():
            bits = sum(float(task.compute_loss({"tokens": w[None], "mask": w[None] > 0})[1].sum()) for w in windows)
        assert math.isclose(frame.filter(id=name)["bits"][0], bits / math.log(2), rel_tol=1e-5)
        assert math.isclose(frame.filter(id=name)["bpn"][0], bits / math.log(2) / (len(text) - 1), rel_tol=1e-5)


def test_predict_without_a_predict_path_says_how_to_give_one():
    data = GenomicsClassificationDataModule()
    with pytest.raises(ValueError, match=r"nothing to predict; give --data\.predict_path \(a FASTA file, plain or "
                                         r"gzipped, or a CSV with a 'sequence' column\)"):
        data.setup("predict")

"""DNA heads and tasks: pooling, bits per nucleotide, the strand average, loading a pretrained backbone."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from titans_lightning.backbone import TitansConfig
from titans_lightning.heads.dna import pool
from titans_lightning.tasks.dna import DNAClassificationTask, DNAPretrainTask

SIZES = {"vocab_size": 7, "num_classes": 3}


def config(**overrides) -> TitansConfig:
    return TitansConfig(**{"variant": "lmm", "size": "debug", **overrides})


def built(task_class, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    task = task_class(kwargs.pop("backbone", config()), data_sizes=SIZES, **kwargs)
    task.configure_model()
    return task


HIDDEN = torch.arange(2 * 4 * 3, dtype=torch.float).reshape(2, 4, 3)
MASK = torch.tensor([[True, True, True, False], [True, True, False, False]])
POOL_CASES = [
    pytest.param("last", [HIDDEN[0, 2], HIDDEN[1, 1]], id="last-real-token"),
    pytest.param("mean", [HIDDEN[0, :3].mean(0), HIDDEN[1, :2].mean(0)], id="mean-over-real"),
    pytest.param("max", [HIDDEN[0, :3].amax(0), HIDDEN[1, :2].amax(0)], id="max-over-real"),
]


@pytest.mark.parametrize("mode, expected", POOL_CASES)
def test_pooling_ignores_padding(mode, expected):
    assert torch.equal(pool(HIDDEN, MASK, mode), torch.stack(expected))


def test_positions_tell_the_backbone_where_a_token_is():
    plain, placed = built(DNAClassificationTask), built(DNAClassificationTask, positions=6)
    tokens = torch.tensor([[2, 3, 4, 5, 1]])
    assert torch.equal(placed.head.embed.table.weight, plain.head.embed.table.weight)
    assert torch.allclose(placed.head.inputs(tokens) - plain.head.inputs(tokens), placed.head.positions[:5], atol=1e-6)
    with pytest.raises(ValueError, match=r"a batch of 7 tokens \(CLS included\) exceeds the 6 learned positions"):
        placed.head.inputs(torch.ones(1, 7, dtype=torch.long))


def test_heads_do_not_import_lightning():
    check = ("import sys, titans_lightning.heads.dna; "
             "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'torchmetrics', 'datamodules')]; "
             "sys.exit(bool(bad))")
    assert subprocess.run([sys.executable, "-c", check], timeout=120).returncode == 0


def test_pretrain_loss_is_bits_per_nucleotide_over_real_bases_only():
    task = built(DNAPretrainTask).eval()
    window = torch.tensor([[2, 3, 4, 5, 2, 2, 6, 3, 4]])
    full = {"tokens": window, "mask": torch.ones_like(window, dtype=torch.bool)}
    padded_window = torch.cat([window, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    padded = {"tokens": padded_window, "mask": padded_window != 0}
    with torch.no_grad():
        loss, nats = task.compute_loss(full)
        loss_padded, nats_padded = task.compute_loss(padded)
    assert nats.shape == (8,) and torch.allclose(loss, loss_padded, atol=1e-6)
    assert torch.allclose(nats, nats_padded, atol=1e-6)
    metrics = task.metrics["val"]
    task.update_metrics(metrics, nats, full)
    assert math.isclose(float(metrics.compute()["val/bpn"]), float(loss) / math.log(2), rel_tol=1e-5)


def test_reverse_complement_average_is_the_mean_of_both_strands():
    task = built(DNAClassificationTask).eval()
    tokens = torch.tensor([[2, 3, 3, 5, 1], [4, 6, 2, 2, 1]])
    rc = torch.tensor([[2, 4, 4, 5, 1], [5, 5, 6, 3, 1]])
    mask = torch.ones_like(tokens, dtype=torch.bool)
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        _, forward = task.compute_loss({"tokens": tokens, "mask": mask, "labels": labels})
        _, backward = task.compute_loss({"tokens": rc, "mask": mask, "labels": labels})
        loss, both = task.compute_loss({"tokens": tokens, "mask": mask, "labels": labels,
                                        "rc_tokens": rc, "rc_mask": mask})
    assert torch.allclose(both, (forward + backward) / 2)
    assert torch.allclose(loss, torch.nn.functional.nll_loss(both.log(), labels))


def save_checkpoint(task, path) -> str:
    """What Lightning writes, as far as loading reads it: the state dict and the hyperparameters."""
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}, path)
    return str(path)


@pytest.mark.parametrize("load_embedding", [pytest.param(True, id="backbone-and-embedding"),
                                            pytest.param(False, id="backbone-only")])
def test_classifier_starts_from_a_pretrained_backbone_with_a_fresh_head(tmp_path, load_embedding):
    pretrained = built(DNAPretrainTask, seed=1)
    with torch.no_grad():  # make the pretrained weights unmistakable
        for p in pretrained.parameters():
            p.add_(0.5)
    path = save_checkpoint(pretrained, tmp_path / "pretrain.ckpt")
    task = built(DNAClassificationTask, seed=2, pretrained=path, load_embedding=load_embedding)
    scratch = built(DNAClassificationTask, seed=2)
    for (name, p), q in zip(task.backbone.state_dict().items(), pretrained.backbone.state_dict().values()):
        assert torch.equal(p, q), name
    assert torch.equal(task.head.embed.table.weight, pretrained.head.embed.table.weight) == load_embedding
    if not load_embedding:
        assert torch.equal(task.head.embed.table.weight, scratch.head.embed.table.weight)
    assert torch.equal(task.head.classifier.weight, scratch.head.classifier.weight)  # fresh, as from scratch


def test_pretrained_backbone_of_another_shape_is_refused(tmp_path):
    path = save_checkpoint(built(DNAPretrainTask, backbone=config(depth=3)), tmp_path / "deep.ckpt")
    with pytest.raises(ValueError,
                       match=r"deep\.ckpt: the checkpoint.s backbone differs .*depth: checkpoint 3 vs model 2"):
        built(DNAClassificationTask, pretrained=path)


def test_checkpoint_without_a_backbone_is_refused(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, path)
    with pytest.raises(ValueError, match=r"other\.ckpt: no 'backbone\.\*' weights"):
        built(DNAClassificationTask, pretrained=str(path))

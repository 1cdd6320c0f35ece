"""The small shared callbacks that need no training run."""

import pytest
import torch

from titans_lightning.callbacks import MatmulPrecision


@pytest.mark.parametrize("before, precision", [("highest", "high"), ("high", "medium"), ("medium", "highest")])
def test_matmul_precision_sets_the_float32_matmul_precision(before, precision):
    saved = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision(before)
        MatmulPrecision(precision).setup(trainer=None, pl_module=None, stage="fit")
        assert torch.get_float32_matmul_precision() == precision
    finally:
        torch.set_float32_matmul_precision(saved)


def test_matmul_precision_defaults_to_tf32():
    assert MatmulPrecision().precision == "high"

"""Choosing the memory's chunk step: `backend="auto" | "torch" | "triton"` (no kernel runs here).

The kernels themselves are tested in `test_triton_step.py` (under Triton's interpreter).
"""

import subprocess
import sys

import pytest
import torch

from titans_lightning.backbone import TitansBackbone, TitansConfig
from titans_lightning.memory import NeuralMemory, neural_memory
from titans_lightning.memory.chunk import chunk_step
from titans_lightning.memory.triton_step import select_step, triton_available, triton_chunk_step

from .conftest import make_problem

CPU = torch.device("cpu")


def test_auto_on_cpu_is_the_torch_step():
    assert select_step("auto", chunk_step, CPU, 2, "gelu", False, torch.float32) is chunk_step


def test_auto_keeps_a_step_chosen_on_purpose():
    def mine(*args):
        return chunk_step(*args)

    assert select_step("auto", mine, CPU, 2, "gelu", False, torch.float32) is mine
    assert select_step("torch", mine, CPU, 2, "gelu", False, torch.float32) is mine


@pytest.mark.parametrize("depth, activation, per_channel, dtype, message", [
    pytest.param(3, "gelu", False, torch.float32, "memory depth 3", id="depth-3"),
    pytest.param(1, "gelu", False, torch.float32, "memory depth 1", id="matrix-memory"),
    pytest.param(2, "silu", False, torch.float32, "activation 'silu'", id="silu"),
    pytest.param(2, "gelu", True, torch.float32, "per-channel decay", id="per-channel"),
    pytest.param(2, "gelu", False, torch.float64, "compute dtype torch.float64", id="float64"),
])
def test_triton_on_an_unsupported_config_names_it(depth, activation, per_channel, dtype, message):
    with pytest.raises(ValueError, match=message):
        select_step("triton", chunk_step, CPU, depth, activation, per_channel, dtype)


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        select_step("triton", chunk_step, CPU, 2, "gelu", False, torch.float32)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend must be one of"):
        neural_memory(**make_problem(tokens=3), backend="cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        NeuralMemory(8, heads=2, backend="fast")


def test_neural_memory_checks_the_backend_on_its_inputs():
    """float64 inputs compute in float64: the Triton step refuses them; auto runs torch."""
    p = make_problem(tokens=5)
    with pytest.raises(ValueError, match="float64"):
        neural_memory(**p, backend="triton")
    torch.testing.assert_close(neural_memory(**p, backend="auto")[0], neural_memory(**p, backend="torch")[0])


def test_config_memory_backend_reaches_every_memory():
    with pytest.raises(ValueError, match="memory_backend"):
        TitansConfig.from_name("debug", memory_backend="cuda")
    for variant in ("mac", "mag", "mal", "lmm"):
        backbone = TitansBackbone(TitansConfig.from_name("debug", variant=variant, memory_backend="torch"))
        memories = [m for m in backbone.modules() if isinstance(m, NeuralMemory)]
        assert memories and all(m.backend == "torch" for m in memories), variant
    assert TitansConfig.from_name("debug").memory_backend == "auto"


def test_importing_the_package_needs_no_triton():
    """With triton unimportable the package imports, auto runs torch and "triton" says why not
    (with the interpreter asked for: CPU tensors are refused first otherwise)."""
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch, titans_lightning, titans_lightning.backbone, titans_lightning.tasks\n"
        "from titans_lightning.memory import NeuralMemory\n"
        "layer = NeuralMemory(8, heads=2, chunk_size=4)\n"
        "y, _ = layer(torch.randn(1, 6, 8)); y.sum().backward()\n"
        "layer.backend = 'triton'\n"
        "import os; os.environ['TRITON_INTERPRET'] = '1'\n"
        "try:\n    layer(torch.randn(1, 6, 8))\nexcept ValueError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "needs the triton package" in out.stdout


def test_triton_step_is_selected_when_available(monkeypatch):
    if not triton_available():
        pytest.skip("triton is not installed")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert select_step("triton", chunk_step, CPU, 2, "gelu", False, torch.float32) is triton_chunk_step

"""The neural long-term memory (docs/method.md section 1): fast op, slow reference, layer."""

from .functional import neural_memory
from .layer import MemoryState, NeuralMemory
from .mlp import mlp_forward
from .reference import neural_memory_reference
from .state import FastWeightState

__all__ = [
    "neural_memory",
    "neural_memory_reference",
    "mlp_forward",
    "FastWeightState",
    "MemoryState",
    "NeuralMemory",
]

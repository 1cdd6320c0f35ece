"""The Titans backbone: config, attention, blocks (MAC/MAG/MAL/LMM/Transformer/SWA), streaming state."""

from .backbone import TitansBackbone, TitansState
from .blocks import TitansBlock
from .config import TitansConfig

__all__ = ["TitansBackbone", "TitansBlock", "TitansConfig", "TitansState"]

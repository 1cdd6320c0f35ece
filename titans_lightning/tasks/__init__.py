"""LightningModules: the base task every domain subclasses, and its optimisation defaults."""

from .base import TitansTask
from .dna import DNAClassificationTask, DNAPretrainTask
from .forecasting import DLinearTask, ForecastFigure, ForecastingTask, ForecastWriter
from .lm import LanguageModelingTask
from .recsys import NextItemTask, PopularityTask, RecommendationWriter
from .schedules import AdamW, WarmupCosine, warmup_cosine_factor

__all__ = ["TitansTask", "AdamW", "WarmupCosine", "warmup_cosine_factor"]

"""LightningModules: the task harness (``Task``), the Titans task on it that every domain subclasses
(``TitansTask``), and the optimisation defaults."""

from .base import Task, TitansTask
from .dna import DNAClassificationTask, DNAPretrainTask
from .forecast_baselines import SeasonalNaiveTask
from .forecasting import DLinearTask, ForecastFigure, ForecastingTask, ForecastWriter
from .lm import LanguageModelingTask
from .recsys import NextItemTask, PopularityTask, RecommendationWriter
from .schedules import AdamW, WarmupCosine, warmup_cosine_factor

__all__ = [
    "Task",
    "TitansTask",
    "AdamW",
    "WarmupCosine",
    "warmup_cosine_factor",
    "DNAClassificationTask",
    "DNAPretrainTask",
    "DLinearTask",
    "ForecastFigure",
    "ForecastingTask",
    "ForecastWriter",
    "LanguageModelingTask",
    "NextItemTask",
    "PopularityTask",
    "RecommendationWriter",
    "SeasonalNaiveTask",
]

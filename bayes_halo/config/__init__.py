"""A run's settings: one dataclass per concern (:mod:`.sections`), each field declared once (:mod:`.fields`)."""
from .sections import (SECTIONS, DataConfig, ModelConfig, PosteriorConfig, PriorConfig, PruneConfig, RunConfig,
                       TrainConfig)

__all__ = ["SECTIONS", "DataConfig", "ModelConfig", "PosteriorConfig", "PriorConfig", "PruneConfig", "RunConfig",
           "TrainConfig"]

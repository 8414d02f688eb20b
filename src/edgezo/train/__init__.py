"""Training: the fit loop, checkpoints, evaluation, schedules and logs (see :mod:`.loop`)."""

from .loop import (
    CHECKPOINT_FORMAT,
    Data,
    EpochSampler,
    FitResult,
    GridResult,
    LossFn,
    evaluate,
    fit,
    flat_weights,
    grid_search,
    warmup_cosine,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "Data",
    "EpochSampler",
    "FitResult",
    "GridResult",
    "LossFn",
    "evaluate",
    "fit",
    "flat_weights",
    "grid_search",
    "warmup_cosine",
]

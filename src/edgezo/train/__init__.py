"""Training: one loop for backprop and every ZO method, with logs, evaluation and resume.

One concept per module:

* :mod:`.loop`: :func:`fit`, the training loop (its docstring explains the whole run);
* :mod:`.sampler`: :class:`EpochSampler`, the batch order;
* :mod:`.evaluation`: :func:`evaluate`, mean loss and accuracy;
* :mod:`.schedules`: :func:`warmup_cosine`;
* :mod:`.search`: :func:`grid_search`, learning-rate (hyperparameter) selection;
* :mod:`.results`: :class:`FitResult`, the loop's state, :func:`flat_weights`;
* :mod:`.checkpoints`: atomic checkpoints that resume bit-exactly;
* :mod:`.rng`: the run's seeded generators; :mod:`.interrupt`: Ctrl-C after a step;
* :mod:`.log`: the JSONL log.
"""

from .checkpoints import CHECKPOINT_FORMAT
from .evaluation import Data, LossFn, evaluate
from .loop import fit
from .results import FitResult, flat_weights
from .sampler import EpochSampler
from .schedules import warmup_cosine
from .search import GridResult, grid_search

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

"""The papers' configurations by name. Presets only compose parts; no algorithm lives here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .directions import Gaussian, Pool
from .optim import ZO


def mezo(
    params: Iterable[Any],
    lr: float = 1e-6,
    eps: float = 1e-3,
    seed: int | None = None,
    **kwargs: Any,
) -> ZO:
    """MeZO (Malladi et al. 2023, arXiv 2305.17333): ZO-SGD, Gaussian z, central, one query.

    Defaults are MeZO's for language models (lr 1e-6, eps 1e-3); small vision
    models usually want a larger lr (1e-4 to 1e-2).
    """
    return ZO(params, lr=lr, eps=eps, directions=Gaussian(seed), estimator="central", **kwargs)


def pezo(
    params: Iterable[Any],
    lr: float = 1e-6,
    eps: float = 1e-3,
    seed: int | None = None,
    pool_size: int = 2**20,
    **kwargs: Any,
) -> ZO:
    """PeZO (Tan et al. 2025, arXiv 2504.20314), pre-generation: MeZO with a reused uniform pool.

    The pool holds ``pool_size`` uniform numbers scaled to unit second moment
    (see :class:`~edgezo.directions.Pool`); no random number is generated per step.
    """
    return ZO(
        params, lr=lr, eps=eps, directions=Pool(pool_size, seed), estimator="central", **kwargs
    )

"""The papers' configurations by name. Presets only compose parts; no algorithm lives here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .directions import Directions, Gaussian, Pool, RNGArray
from .directions.pool import DEFAULT_SIZE
from .formats import FixedPointFormat
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
    models usually want a larger lr (1e-4 to 1e-2). Other keyword arguments go
    to :class:`~edgezo.ZO`.
    """
    return ZO(params, lr=lr, eps=eps, directions=Gaussian(seed), estimator="central", **kwargs)


def pezo(
    params: Iterable[Any],
    lr: float = 1e-6,
    eps: float = 1e-3,
    seed: int | None = None,
    reuse: str = "pool",
    pool_size: int = DEFAULT_SIZE,
    rngs: int = 16,
    **kwargs: Any,
) -> ZO:
    """PeZO (Tan et al. 2025, arXiv 2504.20314): MeZO with hardware-cheap uniform perturbations.

    ``reuse="pool"`` (pre-generation): ``pool_size`` uniform numbers (default
    1,048,573, a prime near ``2**20``: every window of the pool is used), scaled to
    unit second moment, read cyclically (:class:`~edgezo.directions.Pool`); no
    random number is generated per step. ``reuse="array"`` (on-the-fly): ``rngs``
    32-bit LFSRs giving 8 bits each per cycle, rotated every cycle
    (:class:`~edgezo.directions.RNGArray`).
    """
    directions: Directions
    if reuse == "pool":
        directions = Pool(pool_size, seed)
    elif reuse == "array":
        directions = RNGArray(n=rngs, rng="lfsr", bits=8, seed=0 if seed is None else seed)
    else:
        raise ValueError(
            f"Invalid reuse {reuse!r}; PeZO reuses random numbers by 'pool' or 'array'"
        )
    return ZO(params, lr=lr, eps=eps, directions=directions, estimator="central", **kwargs)


def qzo_ff(
    params: Iterable[Any],
    lr: float = 1e-4,
    eps: float = 1e-3,
    seed: int | None = None,
    queries: int = 3,
    z_bits: int = 8,
    z_max: float = 3.5,
    force: bool = False,
    **kwargs: Any,
) -> ZO:
    """QZO-FF (Feng et al. 2024, arXiv 2411.04036): sign-m-SPSA with m = 3, 8-bit ``z``.

    Give it the parameters of a model quantized by
    :func:`edgezo.fixedpoint.quantize_model` (16-bit weights, 8-bit activations:
    "16w8a") and it trains with integer arithmetic only; given float parameters
    it is the same estimator in floating point. ``z`` is Gaussian, clipped to
    ``z_max = 3.5`` and quantized to 8 bits on the fixed-point path.
    ``z_bits``, ``z_max`` and ``force`` configure that path
    (:class:`~edgezo.formats.FixedPointFormat`; ``force=True`` trains even a
    configuration whose update rounds to zero, such as 8-bit weights).
    """
    return ZO(
        params,
        lr=lr,
        eps=eps,
        directions=Gaussian(seed),
        estimator="sign",
        queries=queries,
        formats=FixedPointFormat(z_bits=z_bits, z_max=z_max, force=force),
        **kwargs,
    )

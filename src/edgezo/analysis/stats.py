"""Intervals over seeds and test examples, and the equivalence decision of a "within X" claim.

A study cell is run with several seeds (its data order, perturbations and, where
cheap, pretraining change with the seed). Its accuracy is reported as a mean and
a 95% interval, and every claim "``method`` at most X points below
``reference``" is decided on the interval of the difference, never on one number:

* :func:`t_interval`: Student's t interval of the mean of per-seed values
  (:func:`accuracy_interval`: of accuracies, cut to [0, 1])
  (``mean ± t(0.975, n - 1) · s / √n``), the default when only per-seed
  accuracies are known; for a difference of two methods it is taken over the
  per-seed differences (the methods share the seed's data order: paired).
* :func:`bootstrap_interval`: a paired percentile bootstrap over seeds x test
  examples, when each run stored which test examples it got right
  (:func:`pack_correct`): seeds and examples are resampled with replacement, the
  same draws for both methods, so the example-to-example noise of a small test
  set is in the interval too (a t interval over 3 seeds does not see it).
* :func:`decide`: the equivalence decision on an interval of ``method -
  reference`` (points): *reproduced* when the whole interval lies at or above
  ``-X`` (the shortfall is at most X with 95% confidence), *not reproduced* when
  the whole interval lies below ``-X``, *inconclusive* when it straddles ``-X``.
  A "no loss" claim is the same with its margin (PeZO's: 1 point).

Every :class:`Interval` says how it was made (:attr:`Interval.method`), and the
report prints it. One run with no per-example data has no interval: its
"interval" is the point itself, labelled :data:`POINT`, and a decision on it is
a decision on one number (old single-seed results still read).

t quantiles come from scipy (``edgezo[studies]``).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..extras import require

T_SEEDS = "t-interval over seeds"
BOOTSTRAP = "paired bootstrap over seeds x test examples"
POINT = "one run: no interval"
PROPORTIONS = "normal interval of two proportions, one run each"

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"

LEVEL = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A mean and its interval (same units as the data), over ``n`` runs, made by ``method``."""

    mean: float
    low: float
    high: float
    n: int
    method: str

    def text(self, scale: float = 100.0, digits: int = 2) -> str:
        """``"61.60 [60.12, 63.08]"`` (values times ``scale``); the mean alone for :data:`POINT`."""
        mean = f"{scale * self.mean:.{digits}f}"
        if self.method == POINT:
            return mean
        return f"{mean} [{scale * self.low:.{digits}f}, {scale * self.high:.{digits}f}]"

    def shifted(self, by: float) -> Interval:
        """The same interval moved by ``by`` (e.g. minus a threshold, to decide against it)."""
        return Interval(self.mean + by, self.low + by, self.high + by, self.n, self.method)

    def scaled(self, by: float) -> Interval:
        """The same interval, every value times ``by`` (> 0; e.g. 100: fractions to points)."""
        if by <= 0:
            raise ValueError(f"scale by a positive factor, got {by}")
        return Interval(by * self.mean, by * self.low, by * self.high, self.n, self.method)


def t_quantile(df: int, level: float = LEVEL) -> float:
    """The two-sided ``level`` quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"a t interval needs at least 2 values (df >= 1), got df={df}")
    stats = require("scipy.stats", "studies", needed_by="edgezo.analysis.stats (t intervals)")
    return float(stats.t.ppf(0.5 + level / 2, df))


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Student's t interval of the mean of ``values`` (one per seed); a single value is a
    :data:`POINT` (no interval). Non-finite values are refused: a diverged run must be
    reported as such, not averaged."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"t_interval needs a non-empty list of numbers, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"t_interval got non-finite values {x.tolist()}: drop or report them")
    mean = float(x.mean())
    if len(x) == 1:
        return Interval(mean, mean, mean, 1, POINT)
    half = t_quantile(len(x) - 1, level) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return Interval(mean, mean - half, mean + half, len(x), T_SEEDS)


def accuracy_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """:func:`t_interval` of accuracies (fractions), cut to [0, 1]: the mean accuracy lies
    there, so the cut interval covers it as often as the whole one, and no table shows a
    bound above 100%."""
    whole = t_interval(values, level)
    return Interval(whole.mean, max(whole.low, 0.0), min(whole.high, 1.0), whole.n, whole.method)


def bootstrap_interval(
    correct: np.ndarray,
    reference: np.ndarray | None = None,
    *,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of the mean of ``correct`` (seeds x examples, 0/1 or
    per-example scores), or of ``mean(correct) - mean(reference)`` (paired: the same seed
    and example draws for both) when ``reference`` is given.

    Each resample draws ``seeds`` seeds and ``examples`` examples with replacement and
    averages the chosen rows over the chosen columns (every seed was tested on the same
    examples). ``seed`` makes the interval reproducible.
    """
    a = np.atleast_2d(np.asarray(correct, dtype=np.float64))
    if reference is not None:
        b = np.atleast_2d(np.asarray(reference, dtype=np.float64))
        if b.shape != a.shape:
            raise ValueError(
                f"paired bootstrap needs the same seeds x examples for both, got {a.shape} "
                f"and {b.shape}"
            )
        a = a - b
    seeds, examples = a.shape
    if a.size == 0:
        raise ValueError("bootstrap_interval needs at least one seed and one example")
    rng = np.random.default_rng(seed)
    pick_seeds = rng.integers(0, seeds, size=(resamples, seeds))
    pick_examples = rng.integers(0, examples, size=(resamples, examples))
    row_means = a[:, pick_examples].mean(axis=2).T  # (resamples, seeds): each seed's row mean
    stats = np.take_along_axis(row_means, pick_seeds, axis=1).mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(stats, [tail, 100 - tail])
    return Interval(float(a.mean()), float(low), float(high), seeds, BOOTSTRAP)


def proportion_difference(p_a: float, p_b: float, n: int, level: float = LEVEL) -> Interval:
    """``p_a - p_b`` of two rates, each measured once on ``n`` examples, with the normal
    (Wald) interval of a difference of independent proportions. Two runs tested on the same
    examples are positively correlated, so this interval is wider than a paired one would be:
    what a single run of each can say when per-example results are not kept."""
    if n < 2:
        raise ValueError(f"a proportion interval needs at least 2 examples, got n={n}")
    stats = require("scipy.stats", "studies", needed_by="edgezo.analysis.stats (intervals)")
    z = float(stats.norm.ppf(0.5 + level / 2))
    half = z * math.sqrt((p_a * (1 - p_a) + p_b * (1 - p_b)) / n)
    diff = p_a - p_b
    return Interval(diff, diff - half, diff + half, n, PROPORTIONS)


def decide(difference: Interval, points: float) -> str:
    """The equivalence decision on ``difference`` = method - reference (in points): "at most
    ``points`` below" is :data:`REPRODUCED` when the whole interval is at or above ``-points``,
    :data:`NOT_REPRODUCED` when it is wholly below, :data:`INCONCLUSIVE` otherwise."""
    if points < 0:
        raise ValueError(f"points is a margin (>= 0), got {points}")
    bar = -points - 1e-9
    if difference.low >= bar:
        return REPRODUCED
    if difference.high < bar:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def direction(difference: Interval) -> int:
    """+1 when ``difference`` is above zero beyond its interval, -1 when below, 0 when its
    interval holds zero or it has no interval (one value)."""
    if difference.n < 2:
        return 0
    return 1 if difference.low > 0 else -1 if difference.high < 0 else 0


def beats(difference: Interval) -> bool:
    """Whether ``difference`` (a - b) is above zero beyond its interval (a point: above zero)."""
    return difference.low > 1e-12


# -- per-example correctness, stored compactly in a results file ------------------------------
def pack_correct(correct: Sequence[bool] | np.ndarray) -> str:
    """Which test examples a run got right, as base64 of the packed bits (2,000 examples: 336
    characters); :func:`unpack_correct` reads it back."""
    bits = np.asarray(correct, dtype=bool)
    if bits.ndim != 1:
        raise ValueError(f"pack_correct takes one run's flags (1-D), got shape {bits.shape}")
    return base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")


def unpack_correct(text: str, n: int) -> np.ndarray:
    """The ``n`` flags that :func:`pack_correct` wrote, as a bool array."""
    raw = np.frombuffer(base64.b64decode(text.encode("ascii")), dtype=np.uint8)
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"packed flags hold {8 * len(raw)} bits, not the {n} examples expected")
    return np.unpackbits(raw)[:n].astype(bool)

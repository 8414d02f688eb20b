"""Few-shot episodes: N-way K-shot tasks with Q queries per class, on disjoint class splits.

A few-shot study (Snell et al. 2017, ProtoNets; the paper's 5-way 5-shot
vision and 5-way 1-shot audio tasks) pretrains on some classes and tests on
others: :func:`split_classes` makes the disjoint class lists, and
:class:`EpisodeSampler` draws tasks from a labelled set. Episode ``i`` is a
pure function of ``(seed, i)`` (its own ``numpy`` generator, seeded by
``SeedSequence([seed, i])``), so episodes can be drawn in any order, in
parallel, or skipped, and still be the same.

>>> import torch
>>> labels = torch.arange(10).repeat(30)             # 10 classes, 30 examples each
>>> train, test = split_classes(range(10), (5, 5), seed=0)
>>> sampler = EpisodeSampler(labels, ways=5, shots=1, queries=3, classes=test, seed=0)
>>> episode = sampler.episode(0)
>>> sorted(episode.classes) == test, tuple(episode.support.shape), tuple(episode.query.shape)
(True, (5,), (15,))
>>> episode.query_labels.tolist()[:6]
[0, 0, 0, 1, 1, 1]
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def split_classes(
    classes: Sequence[int], sizes: Sequence[float] | Sequence[int], seed: int = 0
) -> tuple[list[int], ...]:
    """Shuffle ``classes`` with ``seed`` and cut them into disjoint, sorted lists.

    Args:
        classes: the class ids to split (distinct).
        sizes: either counts (ints, summing to at most ``len(classes)``; leftover
            classes are unused) or fractions (floats summing to 1, turned into
            counts by largest remainders). Every part must get at least one class.
        seed: seed of the shuffle.

    Example:
        >>> split_classes(range(10), (0.6, 0.2, 0.2), seed=0)
        ([2, 3, 4, 5, 6, 7], [0, 9], [1, 8])
    """
    classes = [int(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct, got {classes}")
    counts = _counts(sizes, len(classes))
    order = np.random.default_rng(seed).permutation(len(classes))
    shuffled = [classes[i] for i in order]
    bounds = np.cumsum([0, *counts])
    return tuple(sorted(shuffled[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True))


def _counts(sizes: Sequence[float] | Sequence[int], total: int) -> list[int]:
    """Class counts from counts or fractions (see :func:`split_classes`)."""
    sizes = list(sizes)
    if not sizes:
        raise ValueError("sizes must name at least one part, e.g. (0.8, 0.2) or (60, 20)")
    if all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in sizes):
        counts = [int(s) for s in sizes]
        if sum(counts) > total:
            raise ValueError(f"counts {counts} ask for {sum(counts)} classes; only {total} given")
    else:
        if any(s < 0 for s in sizes) or not math.isclose(sum(sizes), 1.0, abs_tol=1e-9):
            raise ValueError(
                f"fractions must be >= 0 and sum to 1, got {sizes} (sum {sum(sizes)}); "
                "or pass whole-number counts"
            )
        exact = [s * total for s in sizes]
        counts = [math.floor(e) for e in exact]
        by_remainder = sorted(range(len(sizes)), key=lambda i: exact[i] - counts[i], reverse=True)
        for i in by_remainder[: total - sum(counts)]:
            counts[i] += 1
    if min(counts) < 1:
        raise ValueError(
            f"sizes {sizes} give a part with no class (counts {counts} of {total} classes); "
            "give every part at least one class"
        )
    return counts


@dataclass(frozen=True)
class Episode:
    """One N-way task: indices into the sampler's labels, and labels remapped to ``0..ways-1``.

    ``classes[k]`` is the original class of episode label ``k``; support and
    query are class-major (the first ``shots`` support indices are class 0, ...).
    """

    classes: list[int]
    support: Tensor  # int64 (ways * shots,)
    query: Tensor  # int64 (ways * queries,)
    support_labels: Tensor  # int64 (ways * shots,), values 0..ways-1
    query_labels: Tensor  # int64 (ways * queries,)


class EpisodeSampler:
    """Draws N-way K-shot episodes with Q queries per class from ``labels``.

    Args:
        labels: int (N,) labels of the whole set the indices point into.
        ways: classes per episode (N).
        shots: support examples per class (K).
        queries: query examples per class (Q), disjoint from the support.
        classes: the classes episodes may use (e.g. a test split of
            :func:`split_classes`); default every class in ``labels``.
        seed: with the episode number, determines the episode.

    Raises:
        ValueError: bad counts, or a class with fewer than ``shots + queries``
            examples (the message names the classes and their counts).
    """

    def __init__(
        self,
        labels: Tensor,
        ways: int = 5,
        shots: int = 5,
        queries: int = 15,
        classes: Sequence[int] | None = None,
        seed: int = 0,
    ) -> None:
        labels = torch.as_tensor(labels)
        if labels.ndim != 1 or labels.is_floating_point() or labels.is_complex():
            raise ValueError(
                f"labels must be a 1-D integer tensor, got {labels.dtype} {tuple(labels.shape)}"
            )
        if shots < 1 or queries < 1:
            raise ValueError(
                f"shots and queries must be >= 1, got shots={shots}, queries={queries}"
            )
        labels_np = labels.cpu().numpy()
        classes = sorted(set(labels_np.tolist())) if classes is None else [int(c) for c in classes]
        if len(set(classes)) != len(classes):
            raise ValueError(f"classes must be distinct, got {classes}")
        if not 2 <= ways <= len(classes):
            raise ValueError(f"ways must be between 2 and the {len(classes)} classes, got {ways}")
        self.members = {c: np.flatnonzero(labels_np == c) for c in classes}
        short = {c: len(m) for c, m in self.members.items() if len(m) < shots + queries}
        if short:
            raise ValueError(
                f"classes {short} (class: examples) have fewer than shots + queries = "
                f"{shots + queries} examples; lower shots or queries, or leave those classes out"
            )
        self.classes = classes
        self.ways, self.shots, self.queries, self.seed = ways, shots, queries, seed

    def episode(self, i: int) -> Episode:
        """Episode number ``i`` (>= 0): a pure function of ``(seed, i)``."""
        if i < 0:
            raise ValueError(f"episode numbers start at 0, got {i}")
        rng = np.random.default_rng([self.seed, i])
        chosen = [self.classes[k] for k in rng.choice(len(self.classes), self.ways, replace=False)]
        support, query = [], []
        for c in chosen:
            picked = rng.choice(self.members[c], self.shots + self.queries, replace=False)
            support.append(picked[: self.shots])
            query.append(picked[self.shots :])
        episode_labels = torch.arange(self.ways)
        return Episode(
            classes=chosen,
            support=torch.from_numpy(np.concatenate(support)).long(),
            query=torch.from_numpy(np.concatenate(query)).long(),
            support_labels=episode_labels.repeat_interleave(self.shots),
            query_labels=episode_labels.repeat_interleave(self.queries),
        )

    def take(self, n: int, start: int = 0) -> Iterator[Episode]:
        """Episodes ``start``, ..., ``start + n - 1``, one at a time."""
        return (self.episode(i) for i in range(start, start + n))

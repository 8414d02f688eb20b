"""edgezo.data.episodes: class splits and N-way K-shot episodes, checked against their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgezo.data.episodes import Episode, EpisodeSampler, split_classes


# -- split_classes -----------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(2, 60), seed=st.integers(0, 2**32))
def test_count_split_is_disjoint_sized_and_reproducible(data, n, seed):
    parts = data.draw(st.integers(1, min(n, 5)))
    counts = data.draw(
        st.lists(st.integers(1, n), min_size=parts, max_size=parts).filter(lambda c: sum(c) <= n)
    )
    classes = data.draw(st.permutations(range(100, 100 + n)))
    split = split_classes(classes, counts, seed=seed)
    assert [len(part) for part in split] == counts
    flat = [c for part in split for c in part]
    assert len(set(flat)) == len(flat) and set(flat) <= set(classes)
    assert all(part == sorted(part) for part in split)
    assert split == split_classes(classes, counts, seed=seed)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(3, 60), seed=st.integers(0, 2**32))
def test_fraction_split_rounds_each_part_to_within_one_class(data, n, seed):
    weights = data.draw(st.lists(st.integers(1, 10), min_size=2, max_size=3))
    fractions = [w / sum(weights) for w in weights]
    assume(all(f * n >= 1 for f in fractions))  # else a part may get no class (tested below)
    split = split_classes(range(n), fractions, seed=seed)
    assert sum(len(part) for part in split) == n
    assert all(abs(len(part) - f * n) < 1 for part, f in zip(split, fractions, strict=True))
    assert sorted(c for part in split for c in part) == list(range(n))


def test_split_depends_on_the_seed_and_is_a_uniform_shuffle():
    splits = [split_classes(range(10), (5, 5), seed=s)[0] for s in range(2000)]
    assert len({tuple(s) for s in splits}) > 200
    # every class lands in the first half with probability 1/2: binomial(2000, 1/2), sd 22
    hits = np.bincount([c for s in splits for c in s], minlength=10)
    assert np.all(np.abs(hits - 1000) < 5 * math.sqrt(2000 * 0.25))


@pytest.mark.parametrize(
    ("sizes", "match"),
    [
        ((6, 5), r"counts \[6, 5\] ask for 11 classes; only 10 given"),
        ((0.5, 0.4), r"fractions must be >= 0 and sum to 1"),
        ((5, 0), r"give a part with no class"),
        ((0.99, 0.01), r"give a part with no class \(counts \[10, 0\] of 10 classes\)"),
        ((), r"sizes must name at least one part"),
    ],
)
def test_bad_split_sizes_are_rejected(sizes, match):
    with pytest.raises(ValueError, match=match):
        split_classes(range(10), sizes)


def test_duplicate_classes_are_rejected():
    with pytest.raises(ValueError, match="classes must be distinct"):
        split_classes([1, 2, 2, 3], (2, 1))


# -- EpisodeSampler ----------------------------------------------------------------
@st.composite
def labelled_sets(draw):
    """Labels of a set with 2..12 classes (ids spread out), each with enough examples."""
    ways = draw(st.integers(2, 6))
    shots, queries = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    n_classes = draw(st.integers(ways, 12))
    sizes = draw(
        st.lists(
            st.integers(shots + queries, shots + queries + 8),
            min_size=n_classes,
            max_size=n_classes,
        )
    )
    ids = draw(st.lists(st.integers(0, 999), min_size=n_classes, max_size=n_classes, unique=True))
    labels = np.repeat(ids, sizes)
    np.random.default_rng(draw(st.integers(0, 2**32))).shuffle(labels)
    return torch.from_numpy(labels), ways, shots, queries


def check_episode(episode: Episode, labels: torch.Tensor, ways: int, shots: int, queries: int):
    assert episode.support.shape == (ways * shots,) and episode.support.dtype == torch.int64
    assert episode.query.shape == (ways * queries,) and episode.query.dtype == torch.int64
    assert len(set(episode.classes)) == ways
    indices = torch.cat([episode.support, episode.query]).tolist()
    assert len(set(indices)) == len(indices)  # support and query disjoint, no repeats
    classes = torch.tensor(episode.classes)
    assert torch.equal(labels[episode.support], classes[episode.support_labels])
    assert torch.equal(labels[episode.query], classes[episode.query_labels])
    assert episode.support_labels.tolist() == [k for k in range(ways) for _ in range(shots)]
    assert episode.query_labels.tolist() == [k for k in range(ways) for _ in range(queries)]


@settings(max_examples=40, deadline=None)
@given(labelled=labelled_sets(), seed=st.integers(0, 2**32), i=st.integers(0, 10**6))
def test_episodes_have_the_right_counts_and_disjoint_support_and_query(labelled, seed, i):
    labels, ways, shots, queries = labelled
    sampler = EpisodeSampler(labels, ways, shots, queries, seed=seed)
    check_episode(sampler.episode(i), labels, ways, shots, queries)


@settings(max_examples=20, deadline=None)
@given(labelled=labelled_sets(), seed=st.integers(0, 2**32))
def test_episode_depends_only_on_seed_and_number(labelled, seed):
    labels, ways, shots, queries = labelled
    forward = list(EpisodeSampler(labels, ways, shots, queries, seed=seed).take(6))
    backward = EpisodeSampler(labels, ways, shots, queries, seed=seed)
    for i in reversed(range(6)):
        again = backward.episode(i)
        assert again.classes == forward[i].classes
        assert torch.equal(again.support, forward[i].support)
        assert torch.equal(again.query, forward[i].query)
    assert [e.classes for e in backward.take(3, start=2)] == [e.classes for e in forward[2:5]]


def test_episodes_vary_and_use_classes_and_examples_uniformly():
    labels = torch.arange(10).repeat_interleave(20)  # 10 classes x 20 examples
    sampler = EpisodeSampler(labels, ways=5, shots=2, queries=3, seed=7)
    episodes = list(sampler.take(2000))
    assert len({tuple(e.classes) for e in episodes}) > 1000
    # each class is in an episode with probability 5/10: binomial(2000, 1/2), sd 22
    class_hits = np.bincount([c for e in episodes for c in e.classes], minlength=10)
    assert np.all(np.abs(class_hits - 1000) < 5 * math.sqrt(2000 * 0.25))
    # a chosen class uses 5 of its 20 examples: each example drawn with probability 1/4
    example_hits = np.bincount(
        torch.cat([torch.cat([e.support, e.query]) for e in episodes]).numpy(), minlength=200
    )
    expected = 1000 * 5 / 20  # (times its class is chosen) x 1/4, per example
    assert np.all(np.abs(example_hits - expected) < 5 * math.sqrt(1000 * 0.25 * 0.75))
    other_seed = EpisodeSampler(labels, ways=5, shots=2, queries=3, seed=8)
    assert other_seed.episode(0).support.tolist() != episodes[0].support.tolist()


def test_episodes_only_use_the_given_classes():
    labels = torch.arange(20).repeat(25)
    train, test = split_classes(range(20), (0.75, 0.25), seed=1)
    sampler = EpisodeSampler(labels, ways=5, shots=5, queries=15, classes=test, seed=0)
    seen = {c for e in sampler.take(50) for c in e.classes}
    assert seen == set(test) and seen.isdisjoint(train)
    check_episode(sampler.episode(3), labels, 5, 5, 15)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"shots": 9, "queries": 2},
            r"classes \{1: 10\} \(class: examples\) have fewer than shots \+ queries = 11",
        ),
        ({"classes": [0, 7]}, r"classes \{7: 0\} \(class: examples\) have fewer than"),
        ({"ways": 4}, r"ways must be between 2 and the 3 classes, got 4"),
        ({"ways": 1}, r"ways must be between 2 and the 3 classes, got 1"),
        ({"shots": 0}, r"shots and queries must be >= 1, got shots=0"),
        ({"classes": [0, 0, 1]}, r"classes must be distinct"),
    ],
)
def test_bad_sampler_settings_get_clear_errors(kwargs, match):
    labels = torch.tensor([0] * 12 + [1] * 10 + [2] * 15)
    arguments = {"ways": 2, "shots": 2, "queries": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        EpisodeSampler(labels, **arguments)


def test_bad_labels_and_episode_numbers_are_rejected():
    with pytest.raises(ValueError, match="labels must be a 1-D integer tensor"):
        EpisodeSampler(torch.zeros(10), ways=2)
    sampler = EpisodeSampler(torch.arange(2).repeat(20), ways=2, shots=1, queries=1)
    with pytest.raises(ValueError, match="episode numbers start at 0, got -1"):
        sampler.episode(-1)

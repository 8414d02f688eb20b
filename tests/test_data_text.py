"""edgezo.data.text: the synthetic sentence-topic task."""

from __future__ import annotations

import re
import string
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo.data.text import (
    NAMES,
    TEST_TEMPLATES,
    TOPIC_WORDS,
    TOPICS,
    TRAIN_TEMPLATES,
    topic_sentences,
)

WORD_TOPIC = {word: topic for topic, words in TOPIC_WORDS.items() for word in words}


def template_regex(template: str) -> re.Pattern[str]:
    """A template as a regex whose slots match one word (a name or a topic word)."""
    pattern = re.escape(template)
    for slot in ("a", "b", "other", "who"):
        pattern = pattern.replace(re.escape("{" + slot + "}"), r"(\w+)")
    return re.compile(pattern + r"\Z")


def topic_word_counts(sentence: str) -> Counter[str]:
    """How many words of each topic the sentence contains (an independent reading of it)."""
    words = (w.strip(string.punctuation) for w in sentence.split())
    return Counter(WORD_TOPIC[w] for w in words if w in WORD_TOPIC)


def test_vocabulary_is_disjoint_and_single_words():
    words = [w for ws in TOPIC_WORDS.values() for w in ws]
    assert len(words) == len(set(words))
    assert set(TOPIC_WORDS) == set(TOPICS)
    assert all(re.fullmatch(r"[a-z]+", w) for w in words)
    assert not set(NAMES) & set(words)
    assert not set(TRAIN_TEMPLATES) & set(TEST_TEMPLATES)


@settings(max_examples=25, deadline=None)
@given(
    split=st.sampled_from(["train", "test"]), size=st.integers(1, 60), seed=st.integers(0, 2**40)
)
def test_deterministic_balanced_and_labelled_by_its_words(split, size, seed):
    texts, labels = topic_sentences(split, size=size, seed=seed)
    assert (texts, labels) == topic_sentences(split, size=size, seed=seed)
    assert len(texts) == len(labels) == size
    counts = Counter(labels)
    assert max(counts.values()) - min(counts.get(k, 0) for k in range(len(TOPICS))) <= 1
    for text, label in zip(texts, labels, strict=True):
        per_topic = topic_word_counts(text)
        assert per_topic[TOPICS[label]] == 2
        assert all(n <= 1 for topic, n in per_topic.items() if topic != TOPICS[label])


def test_splits_use_their_own_templates_and_share_no_sentence():
    train, _ = topic_sentences("train", size=400, seed=0)
    test, _ = topic_sentences("test", size=200, seed=0)
    own = {"train": [template_regex(t) for t in TRAIN_TEMPLATES],
           "test": [template_regex(t) for t in TEST_TEMPLATES]}  # fmt: skip
    for split, texts, other in (("train", train, "test"), ("test", test, "train")):
        assert all(sum(bool(r.match(t)) for r in own[split]) == 1 for t in texts)
        assert not any(r.match(t) for r in own[other] for t in texts)
    assert not set(train) & set(test)
    for template in TRAIN_TEMPLATES + TEST_TEMPLATES:  # every template is used
        assert any(template_regex(template).match(s) for s in train + test)
    # both splits have distractor sentences (a word of another topic)
    assert any("{other}" in t for t in TRAIN_TEMPLATES) and any(
        "{other}" in t for t in TEST_TEMPLATES
    )


def test_seeds_give_different_sentences():
    a, _ = topic_sentences("train", size=50, seed=0)
    b, _ = topic_sentences("train", size=50, seed=1)
    assert sum(x == y for x, y in zip(a, b, strict=True)) < 5


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"split": "validation"},
            ValueError,
            r"Invalid split 'validation'; choose one of \['test', 'train'\]",
        ),
        ({"size": 0}, ValueError, r"Invalid size 0; ask for an integer number of sentences >= 1"),
        ({"seed": 1.5}, TypeError, r"seed must be an integer, got float"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        topic_sentences(**kwargs)

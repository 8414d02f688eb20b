"""A small synthetic sentence-topic task, generated offline (no text dataset ships offline).

Real news-topic sets (AG News, 20 Newsgroups) and sentiment sets (SST-2, IMDB)
cannot be had without a download (DATA.md), so this module *writes* a
stand-in: short English sentences about one of four topics (:data:`TOPICS`),
made by filling hand-written templates with topic words. It is synthetic and
easy for a pretrained sentence encoder; it exists to test and demonstrate
fine-tuning a language model end to end, not to measure language understanding.

How a sentence is made (a pure function of ``split``, ``seed`` and its index):

* its label ``k`` (the classes are balanced: ``size // 4`` or one more each);
* a template from the split's own list: the train and test templates are
  disjoint sentence frames, so the test set measures transfer to new phrasings,
  not memorized sentences (the topic words are shared: they are the signal);
* two different words of topic ``k`` fill ``{a}`` and ``{b}``; ``{who}`` is a
  first name; in some templates ``{other}`` is a *distractor* word of another
  topic, mentioned in passing ("... mentioned the oven once, but ..."), so
  counting topic words is not quite enough: the label topic has two words,
  any other topic at most one.

>>> texts, labels = topic_sentences("train", size=4, seed=0)
>>> len(texts), sorted(labels)
(4, [0, 1, 2, 3])
>>> topic_sentences("train", size=4, seed=0) == (texts, labels)
True
"""

from __future__ import annotations

import random

#: Class names; a label is an index into this tuple.
TOPICS: tuple[str, ...] = ("sports", "food", "weather", "technology")

#: Topic words (single words, no word in two topics).
TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "sports": (
        "football", "tennis", "goalkeeper", "stadium", "referee", "marathon", "basketball",
        "cricket", "tournament", "striker", "penalty", "coach", "league", "cyclist",
    ),
    "food": (
        "pasta", "soup", "bakery", "chef", "recipe", "oven", "spices", "dessert",
        "sandwich", "noodles", "cheese", "restaurant", "vegetables", "pancakes",
    ),
    "weather": (
        "rain", "thunderstorm", "forecast", "snow", "humidity", "wind", "sunshine",
        "fog", "hailstorm", "drizzle", "heatwave", "clouds", "frost", "temperature",
    ),
    "technology": (
        "laptop", "software", "smartphone", "processor", "internet", "robot", "database",
        "keyboard", "algorithm", "battery", "server", "website", "chip", "network",
    ),
}  # fmt: skip

#: First names for ``{who}`` (topic-neutral).
NAMES: tuple[str, ...] = (
    "Anna", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hiro",
    "Ines", "Jonas", "Kemi", "Lucas", "Maya", "Nils", "Olga", "Pablo",
)  # fmt: skip

#: Sentence frames of the training split.
TRAIN_TEMPLATES: tuple[str, ...] = (
    "{who} spent the whole evening talking about the {a} and the {b}.",
    "The article on page two covers the {a} and the {b}.",
    "I could not stop thinking about the {a} after seeing the {b}.",
    "Yesterday {who} asked me about the {a} and the {b}.",
    "Everyone at the office was discussing the {a} and the {b}.",
    "{who} wrote a long blog post about the {a}, with a section on the {b}.",
    "The radio show this morning was all about the {a} and the {b}.",
    "My neighbour complained about the {a} and then about the {b}.",
    "{who} mentioned the {other} once, but mostly talked about the {a} and the {b}.",
    "Apart from a remark on the {other}, the meeting was about the {a} and the {b}.",
    "We watched a documentary on the {a}; it also explained the {b}.",
    "The newsletter featured the {a} next to a story about the {b}.",
)

#: Sentence frames of the test split (none of them occurs in training).
TEST_TEMPLATES: tuple[str, ...] = (
    "Do you remember what {who} said about the {a} and the {b}?",
    "Nobody expected the {a} to matter so much, least of all the {b}.",
    "Tonight's podcast: the {a}, the {b}, and a few listener questions.",
    "Although the {other} came up briefly, {who} cared about the {a} and the {b}.",
    "In her letter {who} described the {a} in detail and then the {b}.",
    "There is a new book about the {a} that has a chapter on the {b}.",
)

_TEMPLATES = {"train": TRAIN_TEMPLATES, "test": TEST_TEMPLATES}


def topic_sentences(
    split: str = "train", size: int = 256, seed: int = 0
) -> tuple[list[str], list[int]]:
    """``size`` sentences of ``split`` ("train" or "test") and their topic labels (see the module doc).

    Deterministic: the same ``(split, size, seed)`` gives the same lists, on any
    machine (Python's ``random`` seeded from a string). The two splits draw from
    independent streams of the same seed and from disjoint templates.
    """
    if split not in _TEMPLATES:
        raise ValueError(f"Invalid split {split!r}; choose one of {sorted(_TEMPLATES)}")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"Invalid size {size!r}; ask for an integer number of sentences >= 1")
    if not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    rng = random.Random(f"edgezo.data.text/{split}/{seed}")
    labels = [i % len(TOPICS) for i in range(size)]
    rng.shuffle(labels)
    texts = [_sentence(rng, _TEMPLATES[split], label) for label in labels]
    return texts, labels


def _sentence(rng: random.Random, templates: tuple[str, ...], label: int) -> str:
    """One sentence of topic ``label``: a template filled with two of its words (and a distractor)."""
    topic = TOPICS[label]
    a, b = rng.sample(TOPIC_WORDS[topic], 2)
    other_topic = rng.choice([t for t in TOPICS if t != topic])
    return rng.choice(templates).format(
        a=a, b=b, who=rng.choice(NAMES), other=rng.choice(TOPIC_WORDS[other_topic])
    )

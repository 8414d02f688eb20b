"""Offline datasets and domain shifts (see DATA.md for where each dataset comes from).

>>> from edgezo.data import load_mnist
>>> images, labels = load_mnist("test")  # doctest: +SKIP
>>> images.shape, images.dtype, labels.dtype  # doctest: +SKIP
(torch.Size([10000, 28, 28]), torch.uint8, torch.int64)
"""

from .corruptions import (
    CORRUPTIONS,
    RANDOM_CORRUPTIONS,
    SEVERITIES,
    SEVERITY_NAMES,
    SEVERITY_PARAMETERS,
    corrupt,
    gallery,
    load_corrupted,
    rotate,
)
from .digits import load_digits
from .episodes import Episode, EpisodeSampler, split_classes
from .features import log_mel, mel_filterbank, mfcc
from .idx import parse_idx, read_idx
from .images import DATASETS, as_input, image_size, load_images, num_classes
from .keywords import (
    KEYWORDS,
    UNKNOWN_WORDS,
    Augment,
    KeywordConfig,
    KeywordSet,
    SpeechEngineNotFoundError,
    SynthesisError,
    generate_keywords,
    load_keywords,
    speaker_split,
    spectrogram_figure,
)
from .mnist import (
    FASHION_MNIST_CLASSES,
    DatasetNotFoundError,
    clear_cache,
    fashion_mnist_dir,
    load_fashion_mnist,
    load_mnist,
    mnist_path,
)
from .shift import SHIFTS, ink_on_paper, load_shifted_mnist, washed_out
from .text import TOPICS, topic_sentences

__all__ = [
    "Augment",
    "CORRUPTIONS",
    "DATASETS",
    "DatasetNotFoundError",
    "Episode",
    "EpisodeSampler",
    "FASHION_MNIST_CLASSES",
    "KEYWORDS",
    "KeywordConfig",
    "KeywordSet",
    "RANDOM_CORRUPTIONS",
    "SEVERITIES",
    "SEVERITY_NAMES",
    "SEVERITY_PARAMETERS",
    "SHIFTS",
    "SpeechEngineNotFoundError",
    "SynthesisError",
    "TOPICS",
    "UNKNOWN_WORDS",
    "as_input",
    "clear_cache",
    "corrupt",
    "fashion_mnist_dir",
    "gallery",
    "generate_keywords",
    "image_size",
    "ink_on_paper",
    "load_corrupted",
    "load_digits",
    "load_fashion_mnist",
    "load_images",
    "load_keywords",
    "load_mnist",
    "load_shifted_mnist",
    "log_mel",
    "mel_filterbank",
    "mfcc",
    "mnist_path",
    "num_classes",
    "parse_idx",
    "read_idx",
    "rotate",
    "speaker_split",
    "spectrogram_figure",
    "split_classes",
    "topic_sentences",
    "washed_out",
]

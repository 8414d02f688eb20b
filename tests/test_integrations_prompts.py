"""edgezo.integrations.prompts: MeZO-style prompt datasets and the label-word loss.

Datasets are checked token by token against prompts built by hand from the
vocabulary: MiniLM's WordPiece vocabulary for a masked LM, and a small
byte-level BPE (GPT-2's scheme) whose vocabulary and merges this file writes
for a causal LM. The losses are checked against a hand computation (Python's
``math``) from the logits, and against the models' own full-vocabulary loss.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: no hub access, ever

import contextlib
import copy
import io
import math
import re
from pathlib import Path

import pytest
import safetensors.torch
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import pre_tokenizers
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2TokenizerFast,
)
from transformers.utils import logging as hf_logging

from edgezo.integrations.arguments import ZOTrainingArguments
from edgezo.integrations.hf import ZOTrainer, minilm_dir
from edgezo.integrations.prompts import (
    ClassificationLoss,
    LabelWordLoss,
    PromptDataset,
    PromptTask,
    accuracy,
    load_minilm_masked_lm,
    score_label_words_only,
)
from edgezo.presets import mezo

hf_logging.set_verbosity_error()

TASK = PromptTask("{text} It was {label}.", ("terrible", "great"))
WORDS = ["a", "fine", "film", "the", "plot", "is", "dull", "It", "was", "great", "terrible", "."]


@pytest.fixture(scope="module")
def bert_tokenizer():
    return AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)


@pytest.fixture(scope="module")
def gpt_tokenizer():
    """A byte-level BPE tokenizer (GPT-2's scheme) that knows WORDS whole, with and without a space."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    merges = []
    for word in [*("Ġ" + w for w in WORDS), *WORDS]:  # spaced words first: their merges win
        for i in range(2, len(word) + 1):  # left to right: w[:1]+w[1], then w[:2]+w[2], ...
            if word[:i] not in vocab:
                merges.append((word[: i - 1], word[i - 1]))
                vocab[word[:i]] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return GPT2TokenizerFast(vocab=vocab, merges=merges)


def tiny_bert_lm(vocab_size: int) -> BertForMaskedLM:
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)  # fmt: skip
    torch.manual_seed(0)
    return BertForMaskedLM(config).eval()


def tiny_gpt2(vocab_size: int) -> GPT2LMHeadModel:
    config = GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=32)
    torch.manual_seed(0)
    return GPT2LMHeadModel(config).eval()


# -- datasets against prompts built by hand ------------------------------------------------------
def test_masked_lm_prompts_are_the_hand_built_ones(bert_tokenizer):
    vocab = bert_tokenizer.get_vocab()
    data = PromptDataset(bert_tokenizer, TASK, ["a fine film", "the plot is dull"], [1, 0], 12)
    assert not data.causal and data.word_ids == [vocab["terrible"], vocab["great"]]
    rows = [
        ["[CLS]", "a", "fine", "film", "it", "was", "[MASK]", ".", "[SEP]"],
        ["[CLS]", "the", "plot", "is", "dull", "it", "was", "[MASK]", ".", "[SEP]"],
    ]
    for i, (tokens, word) in enumerate(zip(rows, ["great", "terrible"], strict=True)):
        item, n = data[i], len(tokens)
        assert item["input_ids"].tolist() == [vocab[t] for t in tokens] + [vocab["[PAD]"]] * (
            12 - n
        )
        assert item["attention_mask"].tolist() == [1] * n + [0] * (12 - n)
        assert item["token_type_ids"].tolist() == [0] * 12
        position = tokens.index("[MASK]")
        expected = [-100] * 12
        expected[position] = vocab[word]
        assert item["labels"].tolist() == expected and int(data.positions[i]) == position
    assert data.class_labels.tolist() == [1, 0]
    assert data[0:2]["input_ids"].shape == (2, 12)  # a slice is a batch


def test_a_long_text_loses_its_end_not_the_template(bert_tokenizer):
    vocab = bert_tokenizer.get_vocab()
    data = PromptDataset(bert_tokenizer, TASK, ["the plot is dull a fine film"], [0], max_length=9)
    tokens = ["[CLS]", "the", "plot", "is", "it", "was", "[MASK]", ".", "[SEP]"]  # 4 cut
    assert data[0]["input_ids"].tolist() == [vocab[t] for t in tokens]
    with pytest.raises(ValueError, match=r"max_length=5 leaves no room for the text"):
        PromptDataset(bert_tokenizer, TASK, ["a fine film"], [0], max_length=5)


def test_causal_lm_prompts_end_with_the_label_word(gpt_tokenizer):
    vocab = gpt_tokenizer.get_vocab()
    data = PromptDataset(gpt_tokenizer, TASK, ["a fine film", "the plot is dull"], [1, 0], 8)
    assert data.causal and data.word_ids == [vocab["Ġterrible"], vocab["Ġgreat"]]
    rows = [  # the template's "." after {label} is not part of a causal prompt
        ["a", "Ġfine", "Ġfilm", "ĠIt", "Ġwas", "Ġgreat"],
        ["the", "Ġplot", "Ġis", "Ġdull", "ĠIt", "Ġwas", "Ġterrible"],
    ]
    for i, tokens in enumerate(rows):
        item, n = data[i], len(tokens)
        pad = vocab["<|endoftext|>"]  # no pad token: the end-of-text token pads
        assert item["input_ids"].tolist() == [vocab[t] for t in tokens] + [pad] * (8 - n)
        assert item["attention_mask"].tolist() == [1] * n + [0] * (8 - n)
        assert item["labels"].tolist() == [-100] * (n - 1) + [vocab[tokens[-1]]] + [-100] * (8 - n)
    cut = PromptDataset(gpt_tokenizer, TASK, ["the plot is dull"], [1], max_length=5)
    assert cut[0]["input_ids"].tolist() == [
        vocab[t] for t in ["the", "Ġplot", "ĠIt", "Ġwas", "Ġgreat"]
    ]


def test_a_label_word_of_several_tokens_is_refused(bert_tokenizer, gpt_tokenizer):
    several = PromptTask("{text} It was {label}.", ("terrible", "wonderful"))
    with pytest.raises(ValueError, match=r"'wonderful' is not one token .*\['Ġw', 'o', 'n', 'd'"):
        PromptDataset(gpt_tokenizer, several, ["a fine film"], [0])
    bertish = PromptTask("{text} It was {label}.", ("terrible", "greatness"))
    with pytest.raises(ValueError, match=r"'greatness' is not one token .*\['great', '##ness'\]"):
        PromptDataset(bert_tokenizer, bertish, ["a fine film"], [0])


@pytest.mark.parametrize(
    ("template", "words", "message"),
    [
        ("{text} It was.", ("bad", "good"), r"needs one \{text\} and one \{label\}"),
        ("{text} {label} {other}", ("bad", "good"), r"found \['text', 'label', 'other'\]"),
        ("{text} It was {label}.", ("good", "good"), r"one distinct, non-empty word per class"),
        ("{text} It was {label}.", ("good",), r"at least two"),
    ],
)
def test_bad_tasks(template, words, message):
    with pytest.raises(ValueError, match=message):
        PromptTask(template, words)


def test_bad_datasets(bert_tokenizer, gpt_tokenizer):
    with pytest.raises(ValueError, match=r"Invalid label 2: the task has 2 label words"):
        PromptDataset(bert_tokenizer, TASK, ["a", "b"], [0, 2])
    with pytest.raises(ValueError, match=r"2 texts but 1 labels"):
        PromptDataset(bert_tokenizer, TASK, ["a", "b"], [0])
    with pytest.raises(ValueError, match=r"0 texts but 0 labels; .* at least one text"):
        PromptDataset(bert_tokenizer, TASK, [], [])
    with pytest.raises(ValueError, match=r"max_length=3 leaves no room for the text"):
        PromptDataset(gpt_tokenizer, TASK, ["a fine film"], [0], max_length=3)
    first = PromptTask("{label}: {text}", ("terrible", "great"))
    with pytest.raises(ValueError, match=r"puts \{label\} before \{text\}: a causal LM"):
        PromptDataset(gpt_tokenizer, first, ["a fine film"], [0])
    with pytest.raises(ValueError, match=r"causal=False needs a masked LM's tokenizer"):
        PromptDataset(gpt_tokenizer, TASK, ["a fine film"], [0], causal=False)


# -- the losses against a hand computation -------------------------------------------------------
def hand_label_word_loss(logits, labels, word_ids, causal) -> float:
    """Mean over rows of -log softmax(logits at the label position, label words only)[the row's word]."""
    total = 0.0
    for row, lab in zip(logits.tolist(), labels.tolist(), strict=True):
        position = next(i for i, v in enumerate(lab) if v != -100)
        scores = [row[position - causal][w] for w in word_ids]
        top = max(scores)
        log_z = top + math.log(sum(math.exp(s - top) for s in scores))
        total += log_z - scores[word_ids.index(lab[position])]
    return total / len(labels)


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 5), length=st.integers(2, 7), classes=st.integers(2, 4),
    causal=st.booleans(), seed=st.integers(0, 2**31 - 1),
)  # fmt: skip
def test_label_word_loss_equals_the_hand_computation(batch, length, classes, causal, seed):
    g = torch.Generator().manual_seed(seed)
    vocab = 11
    word_ids = torch.randperm(vocab, generator=g)[:classes].tolist()
    logits = 3 * torch.randn(batch, length, vocab, generator=g, dtype=torch.float64)
    labels = torch.full((batch, length), -100)
    for b in range(batch):
        position = int(torch.randint(int(causal), length, (1,), generator=g))
        labels[b, position] = word_ids[int(torch.randint(classes, (1,), generator=g))]
    loss = LabelWordLoss(word_ids, causal=causal)
    assert float(loss(logits, labels)) == pytest.approx(
        hand_label_word_loss(logits, labels, word_ids, int(causal)), rel=1e-6
    )


def test_classification_loss_equals_the_hand_computation():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.3, -0.2]])
    labels = torch.tensor([0, 2])
    hand = [
        math.log(sum(math.exp(v) for v in row)) - row[y]
        for row, y in zip(logits.tolist(), labels.tolist(), strict=True)
    ]
    assert float(ClassificationLoss()(logits, labels)) == pytest.approx(sum(hand) / 2, rel=1e-6)


def test_label_word_loss_needs_one_scored_position_per_row():
    loss = LabelWordLoss([3, 5], causal=False)
    labels = torch.tensor([[-100, 3, -100], [-100, -100, -100]])
    with pytest.raises(ValueError, match=r"exactly one position \(found \[1, 0\]\)"):
        loss(torch.zeros(2, 3, 8), labels)
    with pytest.raises(ValueError, match=r"not one of the label words' ids"):
        loss(torch.zeros(1, 3, 8), torch.tensor([[-100, 4, -100]]))
    with pytest.raises(ValueError, match=r"one distinct id per class"):
        LabelWordLoss([3, 3], causal=False)


@pytest.mark.parametrize("kind", ["masked", "causal"])
def test_losses_on_real_model_outputs(kind, bert_tokenizer, gpt_tokenizer):
    """The label-word loss of a model's logits; the model's own loss is the full-vocabulary one."""
    tokenizer = bert_tokenizer if kind == "masked" else gpt_tokenizer
    model = (tiny_bert_lm if kind == "masked" else tiny_gpt2)(len(tokenizer))
    data = PromptDataset(tokenizer, TASK, ["a fine film", "the plot is dull"], [1, 0], 12)
    batch = data[:]
    labels = batch.pop("labels")
    with torch.no_grad():
        outputs = model(**batch)
        own = model(**batch, labels=labels).loss
    causal = int(kind == "causal")
    loss = LabelWordLoss.for_task(TASK, tokenizer, causal=data.causal)
    hand = hand_label_word_loss(outputs.logits, labels, data.word_ids, causal)
    assert float(loss(outputs, labels)) == pytest.approx(hand, rel=1e-5)
    everything = list(range(len(tokenizer)))  # the full vocabulary as "label words"
    full = hand_label_word_loss(outputs.logits, labels, everything, causal)
    assert float(own) == pytest.approx(full, rel=1e-5)
    predicted = loss.class_logits(outputs, labels).argmax(-1)
    assert accuracy(model, data, loss, batch_size=1) == float(
        (predicted == torch.tensor([1, 0])).float().mean()
    )


@pytest.mark.parametrize("kind", ["masked", "causal"])
def test_scoring_label_words_only_keeps_the_losses_and_the_tie(kind, bert_tokenizer, gpt_tokenizer):
    """The cut output layer gives the full model's label-word logits (hand-indexed), the same
    loss before and after a ZO step on the same seed, and moves with the tied embeddings."""
    tokenizer = bert_tokenizer if kind == "masked" else gpt_tokenizer
    make = tiny_bert_lm if kind == "masked" else tiny_gpt2
    full, cut = make(len(tokenizer)), make(len(tokenizer))
    data = PromptDataset(
        tokenizer, TASK, ["a fine film", "the plot is dull", "dull"], [1, 0, 0], 12
    )
    batch = data[:]
    labels = batch.pop("labels")
    loss = LabelWordLoss.for_task(TASK, tokenizer, causal=data.causal)
    cut_loss = score_label_words_only(cut, loss)
    params = list(cut.parameters())
    assert [p.shape for p in params] == [p.shape for p in full.parameters()]  # nothing new
    with torch.no_grad():
        logits, short = full(**batch).logits, cut(**batch).logits
    assert short.shape == (*logits.shape[:2], 2)
    torch.testing.assert_close(short, logits[..., data.word_ids], rtol=1e-5, atol=1e-6)
    assert float(cut_loss(cut(**batch), labels)) == pytest.approx(
        float(loss(full(**batch), labels)), rel=1e-5
    )
    opts = [mezo(m.parameters(), lr=1e-2, eps=1e-3, seed=3) for m in (full, cut)]
    for opt, model, fn in zip(opts, (full, cut), (loss, cut_loss), strict=True):
        opt.step(lambda m=model, f=fn: f(m(**batch), labels))
    with torch.no_grad():
        stepped = cut(**batch).logits
        torch.testing.assert_close(stepped, full(**batch).logits[..., data.word_ids],
                                   rtol=1e-4, atol=1e-5)  # fmt: skip
    assert accuracy(cut, data, cut_loss) == accuracy(full, data, loss)
    with torch.no_grad():
        cut.get_input_embeddings().weight[data.word_ids[0]] += 1.0  # tied: the score moves
        moved = cut(**batch).logits
    assert not torch.allclose(moved[..., 0], stepped[..., 0])
    torch.testing.assert_close(moved[..., 1], stepped[..., 1])
    no_linear = type("NoLinearHead", (), {"get_output_embeddings": lambda self: None})()
    with pytest.raises(ValueError, match="output layer is an nn.Linear"):
        score_label_words_only(no_linear, loss)


# -- with ZOTrainer and with a bare ZO loop ------------------------------------------------------
class RecordingTrainer(ZOTrainer):
    """Keeps the batches it was given, for a reference loop to replay."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.batches = [*getattr(self, "batches", []), {k: v.clone() for k, v in inputs.items()}]
        return super().training_step(model, inputs, num_items_in_batch)


def test_zo_trainer_with_the_label_word_loss_is_the_bare_zo_loop(gpt_tokenizer, tmp_path):
    """compute_loss_func=LabelWordLoss through ZOTrainer == mezo on the same batches, bit for bit.

    The Trainer pops ``labels`` from the batch before the forward; every forward
    of a ZO step must still see them.
    """
    texts = ["a fine film", "the plot is dull", "a dull film", "the film is fine"]
    data = PromptDataset(gpt_tokenizer, TASK, texts, [1, 0, 0, 1], 10)
    model = tiny_gpt2(len(gpt_tokenizer))
    reference = copy.deepcopy(model)
    loss = LabelWordLoss.for_task(TASK, gpt_tokenizer, causal=True)
    args = ZOTrainingArguments(
        str(tmp_path), learning_rate=1e-2, zo_eps=1e-3, max_steps=4, per_device_train_batch_size=2,
        lr_scheduler_type="constant", weight_decay=0.0, use_cpu=True, report_to=[],
        logging_steps=1, save_strategy="no", disable_tqdm=True, seed=5,
    )  # fmt: skip
    trainer = RecordingTrainer(model, args, train_dataset=data, compute_loss_func=loss)
    trainer.train()
    logged = [e["loss"] for e in trainer.state.log_history if "loss" in e]

    params = dict(reference.named_parameters())
    name_of = {p: n for n, p in model.named_parameters()}
    groups = [
        {"params": [params[name_of[p]] for p in g["params"]]} for g in trainer.zo.param_groups
    ]
    opt = mezo(groups, lr=1e-2, eps=1e-3, seed=5)
    expected = []
    for batch in trainer.batches:
        labels = batch.pop("labels")
        expected.append(opt.step(lambda b=batch, y=labels: loss(reference(**b), y)).item())
    assert trainer.zo.eps == 1e-3 and len(expected) == 4
    assert all(
        torch.equal(p, q) for p, q in zip(model.parameters(), reference.parameters(), strict=True)
    )
    assert logged == expected
    assert any(
        not torch.equal(p, q)
        for p, q in zip(model.parameters(), tiny_gpt2(len(gpt_tokenizer)).parameters(), strict=True)
    )


def test_trainer_evaluation_keeps_class_logits_and_reports_accuracy(gpt_tokenizer, tmp_path):
    """preprocess_logits_for_metrics + compute_metrics: the Trainer's accuracy is accuracy()'s."""
    texts = ["a fine film", "the plot is dull", "a dull film", "the film is fine", "the plot"]
    data = PromptDataset(gpt_tokenizer, TASK, texts, [1, 0, 0, 1, 1], 10)
    model = tiny_gpt2(len(gpt_tokenizer))
    loss = LabelWordLoss.for_task(TASK, gpt_tokenizer, causal=True)
    args = ZOTrainingArguments(str(tmp_path), learning_rate=1e-3, per_device_eval_batch_size=2,
                               use_cpu=True, report_to=[], disable_tqdm=True)  # fmt: skip
    kept = []

    def preprocess(logits, labels):
        class_logits = loss.preprocess_logits_for_metrics(logits, labels)
        kept.append(tuple(class_logits.shape))
        return class_logits

    trainer = ZOTrainer(model, args, eval_dataset=data, compute_loss_func=loss,
                        preprocess_logits_for_metrics=preprocess,
                        compute_metrics=loss.compute_metrics)  # fmt: skip
    metrics = trainer.evaluate()
    assert kept == [(2, 2), (2, 2), (1, 2)]  # (batch, classes), not (batch, length, vocabulary)
    assert metrics["eval_accuracy"] == pytest.approx(accuracy(model, data, loss))
    batch = data[:]
    labels = batch.pop("labels")
    with torch.no_grad():
        assert metrics["eval_loss"] == pytest.approx(float(loss(model(**batch), labels)), rel=1e-5)


def test_the_head_variant_scores_class_logits(bert_tokenizer):
    """ClassificationLoss + accuracy() on a sequence classifier: its logits' argmax vs the labels."""
    from transformers import BertForSequenceClassification

    from edgezo.integrations.hf import EncodedText

    config = BertConfig(vocab_size=len(bert_tokenizer), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, num_labels=3)  # fmt: skip
    torch.manual_seed(1)
    model = BertForSequenceClassification(config).eval()
    texts = ["a fine film", "the plot is dull", "a dull film", "the film is fine"]
    data = EncodedText(bert_tokenizer, texts, [0, 1, 2, 1], max_length=8)
    batch = data[:]  # a slice is a batch
    labels = batch.pop("labels")
    with torch.no_grad():
        logits = model(**batch).logits
    hand = sum(int(row.argmax()) == y for row, y in zip(logits, labels.tolist(), strict=True)) / 4
    assert accuracy(model, data, ClassificationLoss(), batch_size=3) == hand
    with torch.no_grad():
        assert float(ClassificationLoss()(model(**batch), labels)) == pytest.approx(
            float(model(**batch, labels=labels).loss), rel=1e-6
        )


def test_load_minilm_masked_lm_ties_the_head_to_the_wheels_embeddings():
    state = torch.get_rng_state()
    tokenizer, model = load_minilm_masked_lm()
    assert torch.equal(torch.get_rng_state(), state)
    stored = safetensors.torch.load_file(os.path.join(minilm_dir(), "model.safetensors"))
    embeddings = model.bert.embeddings.word_embeddings.weight
    assert torch.equal(embeddings, stored["embeddings.word_embeddings.weight"])
    assert model.cls.predictions.decoder.weight.data_ptr() == embeddings.data_ptr()
    dense = model.cls.predictions.transform.dense
    assert torch.equal(dense.weight, torch.eye(384)) and not dense.bias.any()
    assert tokenizer.mask_token == "[MASK]"


# -- the README's example ------------------------------------------------------------------------
README = Path(__file__).resolve().parent.parent / "README.md"


def readme_mezo_example() -> tuple[str, str]:
    """The code of the README's MeZO section and the line it says the code prints."""
    text = README.read_text()
    section = text.split("## Fine-tune a language model the MeZO way", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```text\n(.*?)```", section, re.S).group(1)
    promised = re.search(r"last line it prints is\s+`([^`]+)`", section).group(1)
    return code, promised


def test_readme_mezo_example_prints_what_the_readme_says(monkeypatch, tmp_path):
    code, promised = readme_mezo_example()
    monkeypatch.chdir(tmp_path)  # the example writes to ./out
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    assert printed.getvalue().strip().splitlines()[-1] == promised

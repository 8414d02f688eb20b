"""edgezo.integrations.arguments: ZOTrainingArguments and the warnings about what ZO ignores.

Each warning is checked to fire on the setting it is about and to stay silent
on the defaults (of ``TrainingArguments`` and of ``ZOTrainingArguments``) and
on the other settings; the ``zo_*`` fields are checked on the optimizer that
``ZOTrainer`` builds from them.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: no hub access, ever

import re
import warnings

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, TrainingArguments
from transformers.utils import logging as hf_logging

from edgezo import ZO
from edgezo.directions import Gaussian, Pool, Rademacher
from edgezo.integrations.arguments import ZOTrainingArguments, warn_ignored_arguments
from edgezo.integrations.hf import ZOTrainer

hf_logging.set_verbosity_error()

COMMON = {"use_cpu": True, "report_to": [], "save_strategy": "no", "disable_tqdm": True}
LR = r"learning_rate is the Trainer's default \(5e-05\), a backprop lr"
NORM = r"max_grad_norm=.* is ignored: ZO has no gradient to clip"
OPTIM = r"optim=.* is ignored: ZOTrainer builds its optimizer from zo="


def caught(args) -> list[str]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warn_ignored_arguments(args)
    return [str(w.message) for w in seen]


@pytest.mark.parametrize(
    ("make", "fires"),
    [
        # plain TrainingArguments: the backprop lr default warns, an explicit lr does not
        (lambda o: TrainingArguments(o, **COMMON), [LR]),
        (lambda o: TrainingArguments(o, learning_rate=1e-3, **COMMON), []),
        (lambda o: TrainingArguments(o, learning_rate=1e-3, max_grad_norm=0.5, **COMMON), [NORM]),
        (lambda o: TrainingArguments(o, learning_rate=1e-3, max_grad_norm=0.0, **COMMON), []),
        (lambda o: TrainingArguments(o, learning_rate=1e-3, optim="sgd", **COMMON), [OPTIM]),
        (lambda o: TrainingArguments(o, learning_rate=1e-3, optim_args="b=1", **COMMON), [OPTIM]),
        (
            lambda o: TrainingArguments(o, max_grad_norm=2.0, optim="adafactor", **COMMON),
            [LR, NORM, OPTIM],
        ),
        # ZOTrainingArguments: lr chosen (5e-5 included), no clipping by default
        (lambda o: ZOTrainingArguments(o, learning_rate=5e-5, **COMMON), []),
        (lambda o: ZOTrainingArguments(o, learning_rate=1e-6, zo_eps=1e-3, **COMMON), []),
        (lambda o: ZOTrainingArguments(o, learning_rate=1e-6, max_grad_norm=1.0, **COMMON), [NORM]),
        (lambda o: ZOTrainingArguments(o, learning_rate=1e-6, optim="sgd", **COMMON), [OPTIM]),
    ],
)
def test_each_warning_fires_on_its_setting_only(tmp_path, make, fires):
    messages = caught(make(str(tmp_path)))
    assert len(messages) == len(fires), messages
    for pattern, message in zip(fires, messages, strict=True):
        assert re.search(pattern, message), (pattern, message)


def test_zo_trainer_warns_when_it_is_built(tmp_path):
    model = tiny_bert()
    with pytest.warns(UserWarning, match=LR):
        ZOTrainer(model, TrainingArguments(str(tmp_path), **COMMON))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning of ours for a well-set ZOTrainingArguments
        ZOTrainer(model, ZOTrainingArguments(str(tmp_path), learning_rate=1e-4, **COMMON))


def test_an_explicit_learning_rate_is_required(tmp_path):
    with pytest.raises(ValueError, match=r"needs an explicit learning_rate.*pass learning_rate="):
        ZOTrainingArguments(str(tmp_path), **COMMON)
    with pytest.raises(ValueError, match=r"Invalid zo_directions 'normal'; choose one of"):
        ZOTrainingArguments(str(tmp_path), learning_rate=1e-6, zo_directions="normal", **COMMON)


def tiny_bert() -> BertForSequenceClassification:
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=2)  # fmt: skip
    torch.manual_seed(0)
    return BertForSequenceClassification(config)


def built_zo(tmp_path, zo="mezo", zo_kwargs=None, **fields) -> ZO:
    """The optimizer ZOTrainer builds for ``fields`` (create_optimizer, no training)."""
    args = ZOTrainingArguments(str(tmp_path), seed=3, **{"learning_rate": 1e-4, **fields}, **COMMON)
    trainer = ZOTrainer(tiny_bert(), args, zo=zo, zo_kwargs=zo_kwargs)
    trainer.create_optimizer()
    return trainer.zo


def test_zo_fields_reach_the_optimizer(tmp_path):
    zo = built_zo(tmp_path)  # nothing set: MeZO's own settings
    assert (zo.eps, zo.queries, zo.estimator.name, type(zo.directions)) == (
        1e-3,
        1,
        "central",
        Gaussian,
    )
    assert {g["lr"] for g in zo.param_groups} == {1e-4} and zo.directions.seed == 3
    zo = built_zo(tmp_path, zo_eps=1e-2, zo_queries=2)
    assert (zo.eps, zo.queries, type(zo.directions)) == (1e-2, 2, Gaussian)
    zo = built_zo(tmp_path, zo_estimator="sign", zo_directions="rademacher", zo_queries=3)
    assert (zo.estimator.name, type(zo.directions), zo.queries) == ("sign", Rademacher, 3)
    assert zo.directions.seed == 3  # args.seed: a resume rebuilds the same directions
    zo = built_zo(tmp_path, zo_directions="pool")
    assert type(zo.directions) is Pool and zo.estimator.name == "central"
    zo = built_zo(tmp_path, zo="pezo", zo_eps=5e-3, zo_kwargs={"pool_size": 4099})
    assert (zo.eps, type(zo.directions), zo.directions.size) == (5e-3, Pool, 4099)


@pytest.mark.parametrize(
    ("zo", "zo_kwargs", "fields", "message"),
    [
        ("mezo", {"eps": 1e-2}, {"zo_eps": 1e-3}, r"\['eps'\] given both in ZOTrainingArguments"),
        ("pezo", None, {"zo_estimator": "sign"}, r"zo='pezo' fixes its own"),
        ("qzo_ff", None, {"zo_directions": "gaussian"}, r"zo='qzo_ff' fixes its own"),
    ],
)
def test_conflicting_zo_settings_are_refused(tmp_path, zo, zo_kwargs, fields, message):
    with pytest.raises(ValueError, match=message):
        built_zo(tmp_path, zo=zo, zo_kwargs=zo_kwargs, **fields)


def test_zo_fields_cannot_change_a_ready_optimizer(tmp_path):
    model = tiny_bert()
    opt = ZO(model.parameters(), lr=1e-3)
    args = ZOTrainingArguments(str(tmp_path), learning_rate=1e-3, zo_eps=1e-2, **COMMON)
    with pytest.raises(ValueError, match=r"zo= is already a ZO optimizer; .* cannot change it"):
        ZOTrainer(model, args, zo=opt)

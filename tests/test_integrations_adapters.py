"""edgezo.integrations.adapters: LoRA and prefix tuning (peft) trained by ZO, the base untouched.

Tiny random-weight BERT and GPT-2 models built from configs (no hub). Checked:
the ZO optimizer's dimension against the adapter's size computed by hand (so the
frozen base is not in it), every base weight bit-identical after training while
the adapter moved, a LoRA checkpoint resumed bit-exactly, and the refusals.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: no hub access, ever

import pytest
import torch
from peft import TaskType
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    TrainingArguments,
)
from transformers.utils import logging as hf_logging

from edgezo import ZO
from edgezo.directions import Gaussian
from edgezo.integrations.adapters import peft_model, task_type_of
from edgezo.integrations.hf import ZOTrainer

hf_logging.set_verbosity_error()

VOCAB, LENGTH, HIDDEN, LAYERS, LABELS = 50, 10, 16, 2, 3


def bert_config() -> BertConfig:
    return BertConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=LENGTH,
        num_labels=LABELS,
    )


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(bert_config())


def tiny_gpt2(seed: int = 0) -> GPT2LMHeadModel:
    config = GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=2, n_positions=32)
    config.bos_token_id = config.eos_token_id = 0
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


def classification_data(n: int = 16) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    ids, labels = (
        torch.randint(1, VOCAB, (n, LENGTH), generator=g),
        torch.randint(0, LABELS, (n,), generator=g),
    )
    return [{"input_ids": ids[i], "labels": labels[i]} for i in range(n)]


def arguments(output_dir, **overrides) -> TrainingArguments:
    settings = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=8,
        learning_rate=5e-2,
        use_cpu=True,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    return TrainingArguments(**{**settings, **overrides})


def frozen_and_trained(model) -> tuple[dict, dict]:
    named = dict(model.named_parameters())
    frozen = {n: p.detach().clone() for n, p in named.items() if not p.requires_grad}
    trained = {n: p.detach().clone() for n, p in named.items() if p.requires_grad}
    return frozen, trained


def assert_only_adapter_moved(model, frozen: dict, trained: dict) -> None:
    now = dict(model.named_parameters())
    assert all(torch.equal(now[n], v) for n, v in frozen.items())  # the base: bit-identical
    assert all(not torch.equal(now[n], v) for n, v in trained.items())  # every adapter tensor moved
    assert all(p.grad is None for p in model.parameters())


def test_lora_zo_trains_the_adapter_and_head_only(tmp_path):
    model = peft_model(tiny_bert(), "lora", seed=0, r=4)
    frozen, trained = frozen_and_trained(model)
    # LoRA on query and value of each layer: A (r x h) and B (h x r); and peft's trainable head copy
    r = 4
    expected = LAYERS * 2 * (r * HIDDEN + HIDDEN * r) + (HIDDEN * LABELS + LABELS)
    assert sum(v.numel() for v in trained.values()) == expected
    assert {n.split(".")[-3] for n in trained if "lora" in n} == {"lora_A", "lora_B"}

    trainer = ZOTrainer(
        model, arguments(tmp_path, max_steps=3), train_dataset=classification_data(), zo="mezo"
    )
    trainer.train()
    assert trainer.zo.space.dim == expected  # ZO perturbs the adapter, not the frozen base
    assert_only_adapter_moved(model, frozen, trained)


def test_prefix_tuning_zo_trains_the_prefix_only():
    model = peft_model(tiny_gpt2(), "prefix", seed=0, num_virtual_tokens=4)
    frozen, trained = frozen_and_trained(model)
    # one key and one value vector per virtual token, layer and width
    assert [v.numel() for v in trained.values()] == [4 * LAYERS * 2 * HIDDEN]
    opt = ZO(model.parameters(), lr=5e-2, eps=1e-3, directions=Gaussian(seed=0))
    assert opt.space.dim == 4 * LAYERS * 2 * HIDDEN
    ids = torch.randint(1, VOCAB, (4, LENGTH), generator=torch.Generator().manual_seed(0))
    model.eval()
    for _ in range(3):
        opt.step(lambda: model(input_ids=ids, labels=ids).loss)
    assert_only_adapter_moved(model, frozen, trained)


def test_a_lora_checkpoint_resumes_bit_exactly(tmp_path):
    data = classification_data()
    args = arguments(tmp_path, max_steps=4, save_strategy="steps", save_steps=2)
    straight = peft_model(tiny_bert(), "lora", seed=0)
    ZOTrainer(straight, args, train_dataset=data, zo="mezo").train()
    checkpoint = tmp_path / "checkpoint-2"
    assert (checkpoint / "adapter_model.safetensors").is_file()  # the adapter only, not the base

    resumed = peft_model(tiny_bert(), "lora", seed=1)  # another adapter: it must come from the file
    trainer = ZOTrainer(resumed, args, train_dataset=data, zo="mezo")
    trainer.train(resume_from_checkpoint=str(checkpoint))
    assert trainer.zo.steps == 4
    for (name, p), q in zip(straight.named_parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_the_adapter_comes_from_its_seed_and_the_global_rng_is_left_alone():
    a, b, c = (peft_model(tiny_bert(), "lora", seed=s) for s in (0, 0, 1))
    base = tiny_bert()
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    peft_model(base, "lora", seed=0)
    assert torch.equal(torch.rand(3), expected)  # peft_model drew nothing from the global RNG

    def lora_a(model):
        return [p for n, p in model.named_parameters() if "lora_A" in n]

    assert all(torch.equal(p, q) for p, q in zip(lora_a(a), lora_a(b), strict=True))
    assert not any(torch.equal(p, q) for p, q in zip(lora_a(a), lora_a(c), strict=True))


@pytest.mark.parametrize(
    ("build", "task"),
    [
        (lambda: BertForSequenceClassification(bert_config()), TaskType.SEQ_CLS),
        (tiny_gpt2, TaskType.CAUSAL_LM),
        (lambda: BertModel(bert_config()), None),
        (lambda: BertForMaskedLM(bert_config()), None),
    ],
)
def test_task_type_follows_the_model_class(build, task):
    assert task_type_of(build()) == task


def test_bad_requests_are_refused_with_advice():
    with pytest.raises(
        ValueError, match=r"Unknown adapter method 'ia3'; choose one of \['lora', 'prefix'\]"
    ):
        peft_model(tiny_bert(), "ia3")
    with pytest.raises(
        ValueError,
        match=r"past_key_values, which BertForSequenceClassification does not take; use method='lora'",
    ):
        peft_model(tiny_bert(), "prefix")
    with pytest.raises(TypeError, match=r"rank.*see peft's LoraConfig for its fields"):
        peft_model(tiny_bert(), "lora", rank=4)  # peft's field is r

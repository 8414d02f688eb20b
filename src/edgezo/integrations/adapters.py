"""LoRA and prefix tuning (the ``peft`` package) for ZO fine-tuning: only the adapter trains.

:func:`peft_model` wraps a ``transformers`` model in a ``peft`` adapter with
MeZO's settings. ``peft`` freezes the base model (``requires_grad=False``), and
edgezo leaves frozen parameters alone (:func:`edgezo.params.is_frozen`, as
``torch.optim`` does): ``ZO(model.parameters())`` and :class:`~edgezo.integrations.hf.ZOTrainer`
perturb and update the adapter only, and the base weights stay bit-identical.

What it costs (MeZO, arXiv:2305.17333, Table 4 and its appendix: ZO with LoRA or
prefix tuning on OPT reaches full-parameter ZO's accuracy): a ZO step's memory
is inference's plus nothing per trained weight, so the adapter saves little
memory under ZO (its weights only); under backprop it removes the gradient and
optimizer state of the base but not the activations (the gradient still flows
back through every layer to the first adapter). What ZO gains from an adapter
is a smaller perturbed dimension: fewer weights perturbed, restored and updated
per step, and a lower-variance estimate. ``benchmarks/peft_memory.py`` measures
both.

Settings (:data:`DEFAULTS`; any ``peft`` config field overrides them):

* ``"lora"``: rank 8, alpha 16, no dropout, on ``peft``'s default modules for
  the architecture (BERT: query/value; OPT, LLaMA: q_proj/v_proj; GPT-2: c_attn);
  MeZO's LoRA (r=8, alpha=16 on the query and value projections).
* ``"prefix"``: 5 virtual tokens (MeZO's prefix length), given to each layer as
  past keys and values. peft feeds them through ``past_key_values``, which
  causal LMs take; a model that does not (BERT in transformers 5) is refused
  here rather than at its first forward.

A sequence classifier's new head is trained too (peft's ``modules_to_save``):
peft trains a copy of it and keeps the original frozen.

Example: LoRA on MiniLM-L6, ZO on the adapter and the head only::

    >>> from edgezo import ZO
    >>> from edgezo.integrations.hf import load_minilm
    >>> _, model = load_minilm(num_labels=4)
    >>> lora = peft_model(model, "lora", seed=0)
    >>> opt = ZO(lora.parameters(), lr=1e-3)
    >>> opt.space.dim  # 6 layers x (query, value) x (A: 8x384, B: 384x8), and the 4-way head
    75268
    >>> opt.space.dim == 6 * 2 * (8 * 384 + 384 * 8) + (384 * 4 + 4)
    True
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from ..extras import require

require("peft", "hf")  # before its imports: a missing extra names itself
from peft import LoraConfig, PeftModel, PrefixTuningConfig, TaskType, get_peft_model  # noqa: E402

#: ``method`` -> (peft config class, MeZO's settings).
DEFAULTS: dict[str, tuple[type, dict[str, Any]]] = {
    "lora": (LoraConfig, {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0}),
    "prefix": (PrefixTuningConfig, {"num_virtual_tokens": 5}),
}

#: Class-name endings of ``transformers`` models -> the peft task they are.
TASKS: dict[str, TaskType] = {
    "ForSequenceClassification": TaskType.SEQ_CLS,
    "ForCausalLM": TaskType.CAUSAL_LM,
    "LMHeadModel": TaskType.CAUSAL_LM,
    "ForTokenClassification": TaskType.TOKEN_CLS,
    "ForQuestionAnswering": TaskType.QUESTION_ANS,
}


def task_type_of(model: nn.Module) -> TaskType | None:
    """The peft task of a ``transformers`` model, from its class name (``None``: a plain backbone)."""
    name = type(model).__name__
    return next((task for end, task in TASKS.items() if name.endswith(end)), None)


def peft_model(
    model: nn.Module, method: str = "lora", *, seed: int = 0, **options: Any
) -> PeftModel:
    """``model`` with a LoRA or prefix-tuning adapter (peft), the base frozen.

    Args:
        model: a ``transformers`` model (it is modified in place: LoRA layers go
            into it, and its parameters are frozen).
        method: ``"lora"`` or ``"prefix"`` (:data:`DEFAULTS` has their settings).
        seed: the adapter's initialization comes from this seed (the global torch
            RNG is left as it was), so every rank of a data-parallel run builds
            the same adapter.
        **options: fields of peft's ``LoraConfig`` / ``PrefixTuningConfig``
            (``r``, ``target_modules``, ``num_virtual_tokens``, ``task_type``, ...);
            they override the defaults.

    Returns:
        The ``peft.PeftModel``; its ``requires_grad`` parameters are what ZO trains.
    """
    if method not in DEFAULTS:
        raise ValueError(f"Unknown adapter method {method!r}; choose one of {sorted(DEFAULTS)}")
    config_class, defaults = DEFAULTS[method]
    settings = {**defaults, "task_type": task_type_of(model), **options}
    if method == "prefix" and settings["task_type"] != TaskType.CAUSAL_LM:
        _check_takes_past_key_values(model)
    try:
        config = config_class(**settings)
    except TypeError as e:
        raise TypeError(f"{e}; see peft's {config_class.__name__} for its fields") from e
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def _check_takes_past_key_values(model: nn.Module) -> None:
    """peft's own condition for prefix tuning outside causal LMs, checked before its first forward."""
    modules = [model, getattr(model, "base_model", model)]
    if not any("past_key_values" in inspect.signature(m.forward).parameters for m in modules):
        raise ValueError(
            f"Prefix tuning gives each layer its prefix as past_key_values, which "
            f"{type(model).__name__} does not take; use method='lora', or prefix-tune a causal LM "
            "(GPT-2, OPT, LLaMA: a ...ForCausalLM or ...LMHeadModel)"
        )

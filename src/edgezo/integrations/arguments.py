"""``ZOTrainingArguments``: the Trainer's arguments with the ZO settings a MeZO user expects.

A plain ``transformers.TrainingArguments`` is made for backprop: its default
learning rate (5e-5) is far from any ZO one, ``max_grad_norm`` (1.0) clips a
gradient ZO never has, and ``optim`` names an optimizer :class:`ZOTrainer`
does not build. :class:`ZOTrainingArguments` holds the ZO settings beside the
Trainer's own, has no learning-rate default (you choose it), no clipping, and
:func:`warn_ignored_arguments` (called by ``ZOTrainer``) warns about every
setting that ZO would silently ignore.

Beside MeZO's own ``run.py`` (Malladi et al. 2023, arXiv 2305.17333):

=====================================  ====================================================
MeZO ``run.py``                        edgezo
=====================================  ====================================================
``--trainer zo``                       ``ZOTrainer(model, args, zo="mezo")``
``--zo_eps 1e-3``                      ``ZOTrainingArguments(zo_eps=1e-3)``
``--learning_rate 1e-6`` (OPT, full)   ``ZOTrainingArguments(learning_rate=1e-6)`` (required)
(one Gaussian query, central)          ``zo_queries=1``, ``zo_estimator="central"``,
                                       ``zo_directions="gaussian"`` (the defaults)
``--max_steps 20000``                  ``max_steps=20000`` (the Trainer's own)
``--per_device_train_batch_size 16``   the same
``--lr_scheduler_type constant``       the same (MeZO uses a constant lr)
``--weight_decay 0``                   the same
``--load_float16``                     load the model with ``dtype=torch.float16``
``--train_as_classification``          :class:`edgezo.integrations.prompts.LabelWordLoss`
``--template``, ``--mapping``          :class:`edgezo.integrations.prompts.PromptTask`
``--prefix_tuning``, ``--lora``        (PEFT: see ``peft``; ZO trains the adapter weights)
=====================================  ====================================================

A field left at ``None`` keeps the preset's value (``zo=`` of ``ZOTrainer``;
MeZO's eps is 1e-3). ``zo_estimator`` and ``zo_directions`` build the generic
:class:`~edgezo.ZO` and so go with the default ``zo="mezo"`` only (the other
presets fix their own estimator and directions).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..directions import Directions, Gaussian, Pool, Rademacher, Uniform
from ..extras import require

require("transformers", "hf")
from transformers import TrainingArguments  # noqa: E402

#: ``zo_directions`` names: the direction source, seeded by ``args.seed``.
DIRECTIONS: dict[str, type[Directions]] = {
    "gaussian": Gaussian,
    "rademacher": Rademacher,
    "uniform": Uniform,
    "pool": Pool,
}

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainingArguments)}


@dataclass
class ZOTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the ZO step's settings (see the module doc for MeZO's names).

    Args:
        learning_rate: required (ZO lrs are not backprop's: MeZO uses 1e-6 or
            1e-7 for full fine-tuning of OPT, about 1e-4 to 1e-2 for LoRA or
            prefix tuning and for small models).
        zo_eps: perturbation size (MeZO's ``zo_eps``); ``None``: the preset's.
        zo_estimator: ``"central"``, ``"forward"``, ``"sign"`` or ``"jvp"``.
        zo_queries: directions per step (``n`` in MeZO's paper, 1 there).
        zo_directions: ``"gaussian"``, ``"rademacher"``, ``"uniform"`` or ``"pool"``.
        max_grad_norm: 0 (ZO has no gradient to clip; a value > 0 warns).
    """

    learning_rate: float | None = field(  # type: ignore[assignment]
        default=None, metadata={"help": "Required: the ZO learning rate (MeZO: 1e-6 for OPT)."}
    )
    max_grad_norm: float = field(default=0.0, metadata={"help": "Unused by ZO (no gradient)."})
    zo_eps: float | None = field(default=None, metadata={"help": "ZO perturbation size."})
    zo_estimator: str | None = field(default=None, metadata={"help": "central|forward|sign|jvp"})
    zo_queries: int | None = field(default=None, metadata={"help": "Directions per step."})
    zo_directions: str | None = field(
        default=None, metadata={"help": "gaussian|rademacher|uniform|pool"}
    )

    def __post_init__(self) -> None:
        if self.learning_rate is None:
            raise ValueError(
                "ZOTrainingArguments needs an explicit learning_rate: ZO lrs are not backprop's "
                "(MeZO: 1e-6 for full fine-tuning of OPT; about 1e-4 to 1e-2 for LoRA, prefix "
                "tuning and small models); pass learning_rate=..."
            )
        if self.zo_directions is not None and self.zo_directions not in DIRECTIONS:
            raise ValueError(
                f"Invalid zo_directions {self.zo_directions!r}; choose one of {sorted(DIRECTIONS)}"
            )
        super().__post_init__()

    def zo_kwargs(self) -> dict[str, Any]:
        """The factory keywords these fields give (only the ones set), ``directions`` built."""
        kwargs: dict[str, Any] = {
            "eps": self.zo_eps,
            "estimator": self.zo_estimator,
            "queries": self.zo_queries,
        }
        if self.zo_directions is not None:
            kwargs["directions"] = DIRECTIONS[self.zo_directions](seed=self.seed)
        return {k: v for k, v in kwargs.items() if v is not None}


def merged_zo_kwargs(
    args: Any, zo: Any, zo_kwargs: Mapping[str, Any] | None
) -> tuple[Any, dict[str, Any] | None]:
    """``zo=`` and ``zo_kwargs=`` with the settings of ``ZOTrainingArguments`` added.

    Returns ``(zo, kwargs)``: a ZO setting given both ways is an error (which
    one should win is not obvious); ``zo_estimator``/``zo_directions`` turn the
    default ``"mezo"`` into the generic :class:`~edgezo.ZO`.
    """
    if not isinstance(args, ZOTrainingArguments):
        return zo, None if zo_kwargs is None else dict(zo_kwargs)
    from_args = args.zo_kwargs()
    if not from_args:
        return zo, None if zo_kwargs is None else dict(zo_kwargs)
    twice = sorted(set(from_args) & set(zo_kwargs or {}))
    if twice:
        raise ValueError(
            f"{twice} given both in ZOTrainingArguments (zo_...) and in zo_kwargs; give each once"
        )
    generic = {"estimator", "directions"} & set(from_args)
    if generic and zo != "mezo":
        raise ValueError(
            f"zo_estimator and zo_directions configure the generic ZO (zo='mezo'); zo={zo!r} fixes "
            "its own: leave them unset, or use zo='mezo'"
        )
    if not isinstance(zo, str) and not callable(zo):
        raise ValueError(
            "zo= is already a ZO optimizer; ZOTrainingArguments' zo_... settings cannot change it: "
            "leave them unset, or pass zo='mezo'"
        )
    if generic:
        from ..optim import ZO

        from_args.setdefault("directions", Gaussian(seed=args.seed))
        zo = ZO
    return zo, {**(zo_kwargs or {}), **from_args}


def warn_ignored_arguments(args: Any) -> None:
    """Warn about the settings a ZO step ignores or that were made for backprop."""
    explicit = isinstance(args, ZOTrainingArguments)
    if not explicit and args.learning_rate == _DEFAULTS["learning_rate"]:
        _warn(
            f"learning_rate is the Trainer's default ({_DEFAULTS['learning_rate']}), a backprop "
            "lr; ZO needs its own (MeZO: 1e-6 for full fine-tuning of OPT; about 1e-4 to 1e-2 "
            "for LoRA and small models): set learning_rate, or use ZOTrainingArguments"
        )
    default_norm = 0.0 if explicit else _DEFAULTS["max_grad_norm"]
    if args.max_grad_norm and args.max_grad_norm != default_norm:
        _warn(
            f"max_grad_norm={args.max_grad_norm} is ignored: ZO has no gradient to clip "
            "(its step size is lr * the projected gradient); leave it unset"
        )
    if args.optim != _DEFAULTS["optim"] or args.optim_args:
        _warn(
            f"optim={str(args.optim)!r} (optim_args={args.optim_args!r}) is ignored: ZOTrainer "
            "builds its optimizer from zo= (a preset name, a factory or a ZO optimizer)"
        )


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=4)

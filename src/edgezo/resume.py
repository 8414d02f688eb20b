"""What a ZO checkpoint records, and how ``ZO.load_state_dict`` checks it before resuming.

A checkpoint resumes bit-exactly only into an optimizer built with the same
*settings*: everything that changes the numbers of a step (the parameter layout,
the estimator, ``queries``, ``eps``, the direction source, the update rule and its
settings, the masks, the number formats). :func:`describe_settings` writes them down;
:func:`settings_differences` lists every one that differs, so ``load_state_dict``
raises one error naming them all instead of silently overriding the constructor.

The learning rate and weight decay of each group are *not* settings here: as in
``torch.optim``, they are training state (a scheduler changes them) and are restored
from the checkpoint.

Masks are recorded per tensor as the count of ones and the first 16 hex digits of the
SHA-256 of the packed 0/1 pattern (not the masks themselves: they belong to the
parameter groups the optimizer is built with).

Checkpoints written before settings were recorded (``zo`` without ``version``) still
load: what they hold (layout, estimator, queries, eps, source) is compared, the
update rule is told apart by its state (momentum history or none), and a warning
says that the masks and number formats could not be checked.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .params import BitMask

if TYPE_CHECKING:
    from .directions import Directions
    from .estimators import Estimator
    from .formats import NumberFormat
    from .params import ParamSpace
    from .updates import UpdateRule

#: Layout of the ``zo`` entry: 2 adds ``version`` and ``settings`` (1 had neither).
VERSION = 2

#: The settings compared on load, in the order an error lists them.
SETTINGS = ("layout", "estimator", "queries", "eps", "directions", "update", "masks", "formats")

#: Settings a version-1 checkpoint does not hold (a warning says they were not checked).
UNRECORDED_BEFORE_V2 = ("masks", "formats")


# -- writing -------------------------------------------------------------------------------
def estimator_config(estimator: Estimator) -> dict[str, Any]:
    """The estimator's class, name and plain-number settings (a wrapped base, recursively)."""
    out: dict[str, Any] = {"type": type(estimator).__name__, "name": estimator.name}
    for key, value in sorted(vars(estimator).items()):
        if key.startswith("_") or key in out:
            continue
        if isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif hasattr(value, "estimate") and hasattr(value, "name"):  # a wrapped estimator
            out[key] = estimator_config(value)
    return out


def legacy_estimator(config: dict[str, Any]) -> str:
    """How version 1 recorded an estimator: ``"Class:name"``."""
    return f"{config['type']}:{config['name']}"


#: Each byte with its 8 bits in reverse order: ``packbits``' big bit order from the little one.
_REVERSED = np.array([int(f"{b:08b}"[::-1], 2) for b in range(256)], dtype=np.uint8)


def mask_digest(mask: torch.Tensor | BitMask | None) -> dict[str, Any] | None:
    """A mask as ``{"ones": count, "sha256": 16 hex digits of its packed 0/1 pattern}``.

    The pattern is ``numpy.packbits`` in its default (big) bit order, as version 2
    checkpoints recorded it; a :class:`~edgezo.params.BitMask` (little order) is
    converted byte by byte, never unpacked.
    """
    if mask is None:
        return None
    if isinstance(mask, BitMask):
        packed, size, ones = _REVERSED[mask.bits.cpu().numpy()], mask.numel, mask.ones
    else:
        bits = mask.detach().reshape(-1).ne(0).cpu().numpy()
        packed, size, ones = np.packbits(bits), bits.size, int(bits.sum())
    digest = hashlib.sha256(packed.tobytes() + str(size).encode()).hexdigest()
    return {"ones": ones, "sha256": digest[:16]}


def describe_settings(
    space: ParamSpace,
    estimator: Estimator,
    queries: int,
    eps: float,
    directions: Directions,
    update_rule: UpdateRule,
    formats: Sequence[NumberFormat],
) -> dict[str, Any]:
    """Every setting that changes the numbers of a step, as plain data (see the module doc)."""
    return {
        "layout": space.describe(),
        "estimator": estimator_config(estimator),
        "queries": int(queries),
        "eps": float(eps),
        "directions": directions.config(),
        "update": update_rule.config(),
        "masks": [mask_digest(seg.mask) for seg in space],
        "formats": [{**fmt.config(), "tensors": list(fmt.indices)} for fmt in formats],
    }


# -- reading -------------------------------------------------------------------------------
def check_structure(state_dict: Any) -> dict[str, Any]:
    """Refuse what is not a complete ZO checkpoint, naming the field; return its ``zo`` entry."""
    if not isinstance(state_dict, dict) or not isinstance(state_dict.get("zo"), dict):
        raise ValueError(
            f"Not a ZO optimizer checkpoint: expected the dict of ZO.state_dict() with a 'zo' "
            f"entry, got {_kind(state_dict)}"
        )
    zo = state_dict["zo"]
    for key in ("steps", "skipped", "forwards"):
        _require(zo, key, "zo", _is_count, "an integer >= 0")
    _require(zo, "eps", "zo", _is_positive, "a finite number > 0")
    _require(zo, "queries", "zo", lambda v: _is_count(v) and v >= 1, "an integer >= 1")
    _require(zo, "estimator", "zo", lambda v: isinstance(v, str), "a string")
    for key in ("layout", "directions", "update"):
        _require(zo, key, "zo", lambda v: isinstance(v, dict), "a dict")
    version = zo.get("version", 1)
    if not _is_count(version) or version > VERSION:
        raise ValueError(
            f"The checkpoint's zo['version'] is {version!r}; this edgezo reads versions 1 to "
            f"{VERSION} (a checkpoint from a newer edgezo needs that version to resume)"
        )
    if version >= 2:
        _require(zo, "settings", "zo", lambda v: isinstance(v, dict), "a dict")
        for key in SETTINGS:
            _require(zo["settings"], key, "zo['settings']", lambda v: True, "present")
    _check_groups(state_dict)
    return zo


def _check_groups(state_dict: dict[str, Any]) -> None:
    """``param_groups``: a list of dicts with ``params`` (a list), ``lr`` and ``weight_decay``."""
    groups = state_dict.get("param_groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise ValueError(
            f"The checkpoint's param_groups is {_kind(groups)}, not a list of dicts: "
            "not a complete ZO checkpoint"
        )
    for i, group in enumerate(groups):
        where = f"param_groups[{i}]"
        _require(group, "params", where, lambda v: isinstance(v, list), "a list of indices")
        _require(group, "lr", where, lambda v: _is_number(v) and v >= 0, "a finite number >= 0")
        _require(
            group, "weight_decay", where, lambda v: _is_number(v) and v >= 0, "a finite number >= 0"
        )


def recorded_settings(zo: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The checkpoint's settings, and those it does not record (a version-1 checkpoint)."""
    if "settings" in zo:
        return zo["settings"], ()
    legacy = {
        "layout": zo["layout"],
        "estimator": zo["estimator"],
        "queries": zo["queries"],
        "eps": zo["eps"],
        "directions": zo["directions"].get("config"),
    }
    return legacy, UNRECORDED_BEFORE_V2


def settings_differences(theirs: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    """One line per setting the checkpoint holds that differs from this optimizer's."""
    if isinstance(theirs.get("estimator"), str):  # version 1: "Class:name"
        mine = {**mine, "estimator": legacy_estimator(mine["estimator"])}
    out = []
    for key in SETTINGS:
        if key not in theirs or theirs[key] == mine[key]:
            continue
        if key == "masks" and isinstance(theirs[key], list) and len(theirs[key]) == len(mine[key]):
            out += _mask_differences(theirs[key], mine[key])
        elif key == "layout":
            out.append(
                f"parameters: checkpoint has {theirs[key]}, which do not match this optimizer's "
                f"{mine[key]} (build the model the same way)"
            )
        else:
            note = " (the same direction source)" if key == "directions" else ""
            out.append(
                f"checkpoint has {key}={render(theirs[key])}, this optimizer "
                f"{key}={render(mine[key])}{note}"
            )
    return out


def _mask_differences(theirs: list[Any], mine: list[Any]) -> list[str]:
    def show(d: Any) -> str:
        return (
            "no mask"
            if d is None
            else f"a mask with {d.get('ones')} ones (sha256 {d.get('sha256')})"
        )

    return [
        f"masks of tensor {i}: checkpoint has {show(a)}, this optimizer {show(b)}"
        for i, (a, b) in enumerate(zip(theirs, mine, strict=True))
        if a != b
    ]


def raise_on_differences(differences: list[str]) -> None:
    """One ``ValueError`` listing every difference, and what to do."""
    if differences:
        raise ValueError(
            "This checkpoint was written by an optimizer with other settings:\n- "
            + "\n- ".join(differences)
            + "\nTo resume, build the optimizer with the checkpoint's settings (a checkpoint "
            "never overrides them; only each group's lr and weight_decay are restored)."
        )


def warn_unchecked(unchecked: Sequence[str]) -> None:
    """Warn that a version-1 checkpoint could not be checked for ``unchecked`` settings."""
    if unchecked:
        warnings.warn(
            "This checkpoint was written before edgezo recorded all optimizer settings "
            f"(zo version 1): its {', '.join(unchecked)} could not be compared with this "
            "optimizer's. It resumes exactly only if they are the same; save it again to "
            "record them.",
            stacklevel=3,
        )


def warn_numerics(recorded: str | None, now: str | None) -> None:
    """Warn when the checkpoint's ``z`` came from another arithmetic than this process's
    (:func:`edgezo.passes.numerics`): the run goes on, but not bit for bit."""
    if recorded is not None and now is not None and recorded != now:
        warnings.warn(
            f"This checkpoint's Gaussian perturbations were computed by {recorded}; this "
            f"process computes them by {now}. They agree within a few float32 ulps, so training "
            "goes on, but not bit-identically to an uninterrupted run (for that, resume where "
            "a C compiler is available, or set EDGEZO_KERNELS=off in both runs).",
            stacklevel=3,
        )


def render(value: Any) -> str:
    """A setting for a message: ``Momentum(beta=0.9, history=4)`` for a typed dict, else repr."""
    if isinstance(value, dict) and "type" in value:
        args = ", ".join(f"{k}={render(v)}" for k, v in value.items() if k != "type")
        return f"{value['type']}({args})"
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    return repr(value)


# -- small checks --------------------------------------------------------------------------
def _require(entry: dict[str, Any], key: str, where: str, ok: Any, wanted: str) -> None:
    if key not in entry:
        raise ValueError(
            f"The checkpoint has no {where}[{key!r}]: not a complete ZO checkpoint "
            "(write it with ZO.state_dict())"
        )
    if not ok(entry[key]):
        raise ValueError(
            f"The checkpoint's {where}[{key!r}] is {entry[key]!r}; it must be {wanted}"
        )


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _is_positive(value: Any) -> bool:
    return _is_number(value) and value > 0


def _is_count(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


def _kind(value: Any) -> str:
    return f"a {type(value).__name__}" if not isinstance(value, str) else f"the string {value!r}"

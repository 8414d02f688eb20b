"""ZO: a torch.optim-style optimizer that trains with forward passes only.

It composes the parts of DESIGN.md: a :class:`~edgezo.params.ParamSpace` (the
weights as one flat vector), a :class:`~edgezo.directions.Directions` source,
an :class:`~edgezo.estimators.Estimator`, an :class:`~edgezo.updates.UpdateRule`
and the :class:`~edgezo.formats.NumberFormat` of each tensor (float in place, or
fixed point), through a :class:`~edgezo.probe.StepProbe` per step. One step,
central estimator, one query, float weights::

    w += eps z          (pass 1)   L+ = closure()
    w -= 2 eps z        (pass 2)   L- = closure()
    w += (eps - lr c) z (pass 3)   restore fused with the update, c = (L+ - L-) / (2 eps)

Every pass regenerates ``z`` tensor by tensor; nothing of the model's size is
allocated. If a loss is not finite, or the closure raises, the weights are put
back (see ``README`` for the floating-point drift of perturb/restore) and no
update is made.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from . import passes
from .directions import Directions, Gaussian
from .estimators import Closure, Estimator, get_estimator
from .formats import NumberFormat, bind_formats, default_formats
from .params import ParamSpace, is_frozen
from .probe import Counters, StepProbe
from .resume import VERSION as RESUME_VERSION
from .resume import (
    check_structure,
    describe_settings,
    raise_on_differences,
    recorded_settings,
    settings_differences,
    warn_numerics,
    warn_unchecked,
)
from .updates import SGD, Momentum, UpdateRule


class ZO(torch.optim.Optimizer):
    """Zeroth-order / forward-gradient optimizer: ``opt.step(closure)`` runs forwards only.

    Args:
        params: tensors or parameter groups, as for any ``torch.optim`` optimizer.
            Groups may set their own ``lr`` and ``weight_decay``, and a ``masks``
            list (one 0/1 tensor or ``None`` per parameter) for sparse updates. ZO
            copies each mask into bits (:class:`~edgezo.params.BitMask`, 1 bit per
            weight) and keeps no reference to the tensors given: its
            ``param_groups`` (copies of the dicts given) list the bit masks.
        lr: learning rate (with ``weight_decay``, the one setting a checkpoint
            restores: see :meth:`load_state_dict`).
        eps: perturbation scale (the same for every group: it defines the
            finite difference). If ``w + eps`` rounds back to ``w`` for many float
            weights of a tensor, a warning names it and the smallest eps that
            works; if for every weight, construction fails.
        directions: where ``z`` comes from (default: ``Gaussian()``, MeZO).
        estimator: ``"central"``, ``"forward"``, ``"sign"``, ``"jvp"`` or an
            :class:`~edgezo.estimators.Estimator`.
        queries: directions per step; the estimate averages them.
        weight_decay: decoupled decay, ``w -= lr * weight_decay * w``.
        momentum: heavy-ball coefficient, by seed replay (no buffer per weight).
        history: steps of momentum replay kept (each costs one pass per query).
        update: a custom :class:`~edgezo.updates.UpdateRule` (overrides ``momentum``).
        formats: a :class:`~edgezo.formats.NumberFormat` or a list of them; each
            tensor goes to the first that owns it, then to the defaults
            (:class:`~edgezo.formats.FloatFormat`, then
            :class:`~edgezo.formats.FixedPointFormat` for the integer weights of
            :func:`edgezo.fixedpoint.quantize_model`). The fixed-point settings
            live there: ``formats=FixedPointFormat(z_bits=8, z_max=3.5, force=False)``.

    Frozen parameters (``nn.Parameter`` with ``requires_grad=False``, or fixed-point
    weights whose float original was frozen) are neither perturbed nor updated,
    as ``torch.optim`` leaves them, unless their group sets ``"train_frozen": True``.
    The optimizer works on the tensors it is given: after ``model.to(...)``,
    ``model.half()`` or ``p.data = ...``, build a new one (``step`` raises otherwise).

    Example:
        >>> import torch, torch.nn.functional as F
        >>> from edgezo import ZO
        >>> from edgezo.directions import Pool
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = torch.nn.Linear(4, 2)
        >>> x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
        >>> opt = ZO(model.parameters(), lr=1e-2, eps=1e-3, directions=Pool(size=1001, seed=0))
        >>> loss = opt.step(lambda: F.cross_entropy(model(x), y))
        >>> loss.dtype
        torch.float32
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        eps: float = 1e-3,
        directions: Directions | None = None,
        estimator: str | Estimator = "central",
        queries: int = 1,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        history: int = 8,
        update: UpdateRule | None = None,
        formats: NumberFormat | Sequence[NumberFormat] | None = None,
    ) -> None:
        _check_number("learning rate", lr, minimum=0.0)
        _check_number("weight_decay", weight_decay, minimum=0.0)
        _check_eps(eps)
        _check_queries(queries)
        _refuse_bool("momentum", momentum)
        _refuse_bool("history", history)
        if directions is not None and not isinstance(directions, Directions):
            raise TypeError(
                f"directions must be an edgezo.directions source (e.g. Pool(size=2**20)), "
                f"got {type(directions).__name__}"
            )
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "masks": None})
        for group in self.param_groups:
            _check_number("learning rate", group["lr"], minimum=0.0)
            _check_number("weight_decay", group["weight_decay"], minimum=0.0)
        self.eps = float(eps)
        self.queries = int(queries)
        self.estimator = get_estimator(estimator)
        self.estimator.check(self.eps)
        self.update_rule = update or (Momentum(momentum, history) if momentum else SGD())
        self.space = ParamSpace(_trained(self.param_groups), masks=_masks(self.param_groups))
        _keep_bits(self.param_groups, self.space)
        # estimators may use query slots past `queries` (SharpnessAware: the ascent direction)
        slots = self.queries + self.estimator.extra_queries
        self.directions = (directions or Gaussian()).bind(self.space.dim, slots)
        _check_replay(self.update_rule, self.directions)
        self.formats = bind_formats(
            self.space, [*_as_list(formats), *default_formats()], self.directions, self.eps
        )
        for fmt in self.formats:
            fmt.check([g["lr"] for g in self.param_groups], self.estimator)
        self.counters = Counters()

    # the counters, as attributes (train loops and tests read them)
    @property
    def steps(self) -> int:
        """Steps taken (the perturbation counter; also counts skipped steps)."""
        return self.counters.steps

    @steps.setter
    def steps(self, value: int) -> None:
        self.counters.steps = value

    @property
    def skipped(self) -> int:
        """Steps skipped because a loss or coefficient was not finite."""
        return self.counters.skipped

    @skipped.setter
    def skipped(self, value: int) -> None:
        self.counters.skipped = value

    @property
    def forwards(self) -> int:
        """Closure evaluations so far."""
        return self.counters.forwards

    @forwards.setter
    def forwards(self, value: int) -> None:
        self.counters.forwards = value

    # -- the step -----------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:  # type: ignore[override]
        """Estimate the gradient from forward passes and update the weights in place.

        Args:
            closure: computes and returns the (scalar) loss of the current batch.
                It is called several times per step and needs no autograd.

        Returns:
            The loss as a float32 scalar tensor: ``L(w)`` for ``forward``/``jvp``,
            the mean of the perturbed losses (``L(w) + O(eps^2)``) for
            ``central``/``sign``. If the step was skipped, the non-finite value.

        Raises:
            RuntimeError: a parameter was moved, cast or replaced since the
                optimizer was built, or the closure wrote the weights in place
                (the step's perturbations are taken back first).
        """
        if closure is None:
            raise ValueError(
                "ZO.step needs a closure that returns the loss: opt.step(lambda: loss_fn())"
            )
        self.space.check_unchanged()
        step = self.steps
        self.update_rule.begin(step, self.space)
        probe = StepProbe(self.space, self.formats, self.directions, self.eps, step, self.counters)
        try:
            estimate = self.estimator.estimate(probe, closure, self.queries)
            if estimate.finite:
                terms = self.update_rule.terms(step, estimate.coefficients)
            else:
                terms = []
                self.skipped += 1
            weights = self.update_rule.segment_weights(terms, self.space, self.directions)
            lrs = [g["lr"] for g in self.param_groups]
            # a skipped step changes nothing, not even by weight decay
            decays = [
                g["lr"] * g["weight_decay"] if estimate.finite else 0.0 for g in self.param_groups
            ]
            probe.finish(terms, weights, lrs, decays)
        except BaseException:
            probe.undo()
            raise
        if estimate.finite:
            self.update_rule.commit(step, estimate.coefficients)
            self.directions.commit(step)
        self.steps += 1
        return torch.tensor(estimate.loss, dtype=torch.float32)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Register a group (only while constructing: the flat layout is then fixed).

        Replaces ``torch.optim.Optimizer.add_param_group``, whose dynamo guard
        imports ``torch._dynamo`` (about 70 MB of resident memory, PEERS.md's
        "ZO memory = inference memory" budget) for a check ZO does not need.
        """
        if hasattr(self, "space"):  # every z depends on the layout
            raise RuntimeError(
                "ZO fixes the parameter layout when it is built (the perturbations depend on it); "
                "create a new ZO optimizer with all parameter groups instead of add_param_group"
            )
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        param_group = dict(param_group)  # its masks become bits: the caller's dict is not changed
        params = param_group["params"]
        if isinstance(params, set):
            raise TypeError("Parameters must be given in an ordered collection (a list), not a set")
        params = [params] if isinstance(params, Tensor) else list(params)
        if params and all(isinstance(p, tuple) for p in params):  # named parameters
            param_group["param_names"] = [name for name, _ in params]
            params = [p for _, p in params]
        param_group["params"] = params
        for name, default in self.defaults.items():
            param_group.setdefault(name, default)
        self.param_groups.append(param_group)

    # -- checkpoints --------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Every setting that changes the numbers of a step (see :mod:`edgezo.resume`).

        The parameter layout, estimator, queries, eps, direction source, update rule
        (type and settings), masks (per tensor: count of ones and a hash) and number
        formats. A checkpoint records them and :meth:`load_state_dict` compares them.
        """
        return describe_settings(
            self.space, self.estimator, self.queries, self.eps,
            self.directions, self.update_rule, self.formats,
        )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """Everything a bit-exact resume needs, as plain data (``torch.load(weights_only=True)``).

        Same layout as ``torch.optim`` (``state``, ``param_groups`` with parameter
        indices) plus a ``zo`` entry. ZO keeps no per-parameter state: the step
        counter, the source's state (its configuration, and history if any), the
        update rule's few numbers, and :meth:`settings` are all there is. Masks are
        recorded as a count and a hash only: they belong to the parameter groups the
        optimizer is built with.
        """
        groups, index = [], 0
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k not in ("params", "masks")}
            packed["params"] = list(range(index, index + len(group["params"])))
            index += len(group["params"])
            groups.append(packed)
        zo = {
            "version": RESUME_VERSION,
            "steps": self.steps,
            "skipped": self.skipped,
            "forwards": self.forwards,
            "eps": self.eps,
            "queries": self.queries,
            "estimator": _describe(self.estimator),
            "layout": self.space.describe(),
            "directions": self.directions.state_dict(),
            "update": self.update_rule.state_dict(),
            "settings": self.settings(),
            "numerics": passes.numerics(self.directions),
        }
        return {"state": {}, "param_groups": groups, "zo": zo}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; the optimizer must be built with the same settings.

        A checkpoint never overrides the constructor: if any of :meth:`settings`
        differs, one ``ValueError`` lists every difference and nothing is loaded.
        Each group's ``lr`` and ``weight_decay`` are restored from the checkpoint, as
        ``torch.optim`` does (they are training state: a scheduler changes them). A
        malformed checkpoint (missing field, wrong type, not a ZO checkpoint) gets a
        ``ValueError`` naming the field. A checkpoint written before settings were
        recorded loads with a warning (see :mod:`edgezo.resume`).
        """
        zo = check_structure(state_dict)
        theirs, unchecked = recorded_settings(zo)
        raise_on_differences(settings_differences(theirs, self.settings()))
        saved = state_dict["param_groups"]
        if [len(g["params"]) for g in saved] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError(
                f"The checkpoint's parameter groups hold {[len(g['params']) for g in saved]} "
                f"tensors, this optimizer's {[len(g['params']) for g in self.param_groups]}; "
                "build the optimizer with the same parameter groups to resume"
            )
        before = self.update_rule.state_dict()
        self.update_rule.load_state_dict(zo["update"])  # may refuse: nothing else loaded yet
        try:
            self.directions.load_state_dict(zo["directions"])
        except BaseException:
            self.update_rule.load_state_dict(before)
            raise
        for group, stored in zip(self.param_groups, saved, strict=True):
            group.update({k: v for k, v in stored.items() if k not in ("params", "masks")})
        self.steps, self.skipped, self.forwards = zo["steps"], zo["skipped"], zo["forwards"]
        warn_unchecked(unchecked)
        warn_numerics(zo.get("numerics"), passes.numerics(self.directions))

    def __repr__(self) -> str:
        return (
            f"ZO(dim={self.space.dim}, estimator={self.estimator.name!r}, queries={self.queries}, "
            f"eps={self.eps}, directions={self.directions!r}, update={type(self.update_rule).__name__})"
        )


def _describe(estimator: Estimator) -> str:
    """What a checkpoint records of the estimator: its class and name (``SharpnessAware:sign``)."""
    return f"{type(estimator).__name__}:{estimator.name}"


def _masks(groups: list[dict[str, Any]]) -> dict[Tensor, Tensor]:
    out: dict[Tensor, Tensor] = {}
    for g in groups:
        masks = g.get("masks")
        if masks is None:
            continue
        if len(masks) != len(g["params"]):
            raise ValueError(
                f"A parameter group has {len(g['params'])} params but {len(masks)} masks; "
                "give one mask (or None) per parameter"
            )
        out.update({p: m for p, m in zip(g["params"], masks, strict=True) if m is not None})
    return out


def _keep_bits(groups: list[dict[str, Any]], space: ParamSpace) -> None:
    """Each group's masks replaced by the space's bit masks (``None`` for a frozen tensor):
    the optimizer holds no reference to the 0/1 tensors the user gave."""
    bits = {id(s.param): s.mask for s in space}
    for g in groups:
        if g.get("masks") is not None:
            g["masks"] = [bits.get(id(p)) for p in g["params"]]


def _check_replay(update_rule: UpdateRule, directions: Directions) -> None:
    """Refuse an update rule that regenerates past ``z`` with a source that cannot."""
    if update_rule.replays_past and not directions.replayable:
        raise ValueError(
            f"{type(update_rule).__name__} replays past directions from their seeds, but "
            f"{type(directions).__name__} cannot regenerate a past z (it keeps a history that "
            "moves on every step). Drop momentum= (or the custom update), or use a source "
            "without history, e.g. Gaussian()."
        )


def _refuse_bool(name: str, value: Any) -> None:
    """``True`` is an int to Python, never a sensible setting: a bool is a mistake."""
    if isinstance(value, bool):
        raise TypeError(f"Invalid {name}: {value}; give a number, not a bool")


def _check_number(name: str, value: float, minimum: float) -> None:
    _refuse_bool(name, value)
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= minimum):
        raise ValueError(f"Invalid {name}: {value}; it must be a finite number >= {minimum}")


def _check_eps(eps: Any) -> None:
    """``eps`` is a finite number > 0 (whether it survives the weights' dtype: the formats)."""
    _refuse_bool("eps", eps)
    if not isinstance(eps, numbers.Real):
        raise TypeError(f"Invalid eps: {eps!r}; give a number > 0 (the perturbation scale)")
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"Invalid eps: {eps}; the perturbation scale must be > 0")


def _check_queries(queries: Any) -> None:
    _refuse_bool("queries", queries)
    integral = isinstance(queries, numbers.Integral) or (
        isinstance(queries, float) and queries.is_integer()
    )
    if not integral or queries < 1:
        raise ValueError(f"Invalid number of queries: {queries}; use an integer >= 1")


def _as_list(formats: NumberFormat | Sequence[NumberFormat] | None) -> list[NumberFormat]:
    """The user's formats as a list (checked: each must be a :class:`NumberFormat`)."""
    items = [] if formats is None else [formats] if isinstance(formats, NumberFormat) else formats
    for fmt in items:
        if not isinstance(fmt, NumberFormat):
            raise TypeError(
                f"formats must be edgezo.formats.NumberFormat objects (e.g. FixedPointFormat()), "
                f"got {type(fmt).__name__}"
            )
    return list(items)


def _trained(groups: list[dict[str, Any]]) -> list[list[Tensor]]:
    """Each group's tensors that train: frozen float parameters (``requires_grad=False``) are
    left out, as ``torch.optim`` leaves them, unless the group sets ``train_frozen=True``."""
    kept = [
        [p for p in g["params"] if g.get("train_frozen", False) or not is_frozen(p)] for g in groups
    ]
    if any(g["params"] for g in groups) and not any(kept):
        raise ValueError(
            "Every parameter given to ZO is frozen (requires_grad=False, or for fixed-point "
            "weights: frozen before quantize_model), so nothing would train; call "
            "requires_grad_(True) on the ones to train (before quantizing), or give their group "
            '"train_frozen": True, e.g. ZO([{"params": tensors, "train_frozen": True}])'
        )
    return kept

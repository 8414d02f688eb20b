"""ZO: a torch.optim-style optimizer that trains with forward passes only.

It composes the parts of DESIGN.md: a :class:`~edgezo.params.ParamSpace` (the
weights as one flat vector), a :class:`~edgezo.directions.Directions` source,
an :class:`~edgezo.estimators.Estimator` and an
:class:`~edgezo.updates.UpdateRule`. One step, central estimator, one query::

    w += eps z          (pass 1)   L+ = closure()
    w -= 2 eps z        (pass 2)   L- = closure()
    w += (eps - lr c) z (pass 3)   restore fused with the update, c = (L+ - L-) / (2 eps)

Every pass regenerates ``z`` tensor by tensor; nothing of the model's size is
allocated. If a loss is not finite, or the closure raises, the weights are put
back (see ``README`` for the floating-point drift of perturb/restore) and no
update is made.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.autograd.forward_ad as fwad
from torch import Tensor

from .directions import Directions, Gaussian
from .estimators import Closure, Estimator, get_estimator
from .params import ParamSpace
from .passes import apply_
from .updates import SGD, Momentum, Term, UpdateRule


class ZO(torch.optim.Optimizer):
    """Zeroth-order / forward-gradient optimizer: ``opt.step(closure)`` runs forwards only.

    Args:
        params: tensors or parameter groups, as for any ``torch.optim`` optimizer.
            Groups may set their own ``lr`` and ``weight_decay``, and a ``masks``
            list (one 0/1 tensor or ``None`` per parameter) for sparse updates.
        lr: learning rate.
        eps: perturbation scale (the same for every group: it defines the
            finite difference).
        directions: where ``z`` comes from (default: ``Gaussian()``, MeZO).
        estimator: ``"central"``, ``"forward"``, ``"sign"``, ``"jvp"`` or an
            :class:`~edgezo.estimators.Estimator`.
        queries: directions per step; the estimate averages them.
        weight_decay: decoupled decay, ``w -= lr * weight_decay * w``.
        momentum: heavy-ball coefficient, by seed replay (no buffer per weight).
        history: steps of momentum replay kept (each costs one pass per query).
        update: a custom :class:`~edgezo.updates.UpdateRule` (overrides ``momentum``).
        z_bits, z_max: fixed-point weights only (from
            :func:`edgezo.fixedpoint.quantize_model`): ``z`` is quantized to
            ``z_bits``-bit integers with ``dz = z_max / (2**(z_bits-1) - 1)``.
        force: build even if a fixed-point configuration cannot train (``eps`` or
            the update rounds to zero at the weights' bit width); the error
            otherwise raised says which tensor and by how much.

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
        z_bits: int = 8,
        z_max: float = 3.5,
        force: bool = False,
    ) -> None:
        _check_number("learning rate", lr, minimum=0.0)
        _check_number("weight_decay", weight_decay, minimum=0.0)
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"Invalid eps: {eps}; the perturbation scale must be > 0")
        if int(queries) != queries or queries < 1:
            raise ValueError(f"Invalid number of queries: {queries}; use an integer >= 1")
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
        self.update_rule = update or (Momentum(momentum, history) if momentum else SGD())
        self.space = ParamSpace(
            [g["params"] for g in self.param_groups], masks=_masks(self.param_groups)
        )
        # estimators may use query slots past `queries` (SharpnessAware: the ascent direction)
        slots = self.queries + self.estimator.extra_queries
        self.directions = (directions or Gaussian()).bind(self.space.dim, slots)
        _check_replay(self.update_rule, self.directions)
        self.fixed = self._fixed_point(z_bits, z_max, force) if self.space.fixed_segments else None
        self.steps = 0  #: steps taken (the perturbation counter; also counts skipped steps)
        self.skipped = 0  #: steps skipped because a loss or coefficient was not finite
        self.forwards = 0  #: closure evaluations so far

    def _fixed_point(self, z_bits: int, z_max: float, force: bool) -> Any:
        """The integer arithmetic for the fixed-point tensors, after checking it can train."""
        from .fixedpoint.zo import FixedPointSteps, UntrainableError, ZFormat

        if self.estimator.name == "jvp":
            raise ValueError(
                "estimator 'jvp' needs float weights (forward-mode AD); fixed-point weights "
                "train with 'central', 'forward' or 'sign'"
            )
        steps = FixedPointSteps(
            self.space.fixed_segments,
            self.directions,
            self.eps,
            ZFormat.of(self.directions, z_bits, z_max),
        )
        problems = steps.problems(
            [g["lr"] for g in self.param_groups], self.eps, self.estimator.name == "sign"
        )
        if problems and not force:
            raise UntrainableError(
                "This fixed-point configuration cannot train:\n- "
                + "\n- ".join(problems)
                + "\n(QZO-FF needs 16-bit weights for this reason.) Pass force=True to train anyway."
            )
        return steps

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
        """
        if closure is None:
            raise ValueError(
                "ZO.step needs a closure that returns the loss: opt.step(lambda: loss_fn())"
            )
        self.update_rule.begin(self.steps, self.space)
        probe = _Probe(self, self.steps)
        try:
            estimate = self.estimator.estimate(probe, closure, self.queries)
            if estimate.finite:
                terms = self.update_rule.terms(self.steps, estimate.coefficients)
            else:
                terms = []
                self.skipped += 1
            probe.finish(terms)
        except BaseException:
            probe.undo()
            raise
        if estimate.finite:
            self.update_rule.commit(self.steps, estimate.coefficients)
            self.directions.commit(self.steps)
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
    def state_dict(self) -> dict[str, Any]:
        """Everything a bit-exact resume needs, as plain data (``torch.load(weights_only=True)``).

        Same layout as ``torch.optim`` (``state``, ``param_groups`` with parameter
        indices) plus a ``zo`` entry. ZO keeps no per-parameter state: the step
        counter, the source's configuration (and history, if any) and the update
        rule's few numbers are all there is. Masks are not saved: they belong to
        the parameter groups the optimizer is built with.
        """
        groups, index = [], 0
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k not in ("params", "masks")}
            packed["params"] = list(range(index, index + len(group["params"])))
            index += len(group["params"])
            groups.append(packed)
        zo = {
            "steps": self.steps,
            "skipped": self.skipped,
            "forwards": self.forwards,
            "eps": self.eps,
            "queries": self.queries,
            "estimator": _describe(self.estimator),
            "layout": self.space.describe(),
            "directions": self.directions.state_dict(),
            "update": self.update_rule.state_dict(),
        }
        return {"state": {}, "param_groups": groups, "zo": zo}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; the optimizer must be built the same way."""
        zo = state_dict.get("zo")
        if zo is None:
            raise ValueError("Not a ZO optimizer state_dict (no 'zo' entry)")
        if zo["layout"] != self.space.describe():
            raise ValueError(
                f"Checkpoint parameters {zo['layout']} do not match this optimizer's "
                f"{self.space.describe()}; build the model the same way before resuming"
            )
        if zo["estimator"] != _describe(self.estimator):
            raise ValueError(
                f"Checkpoint was written with estimator {zo['estimator']!r}, but this optimizer "
                f"uses {_describe(self.estimator)!r}; construct it with the same estimator to resume"
            )
        saved = state_dict["param_groups"]
        if [len(g["params"]) for g in saved] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("Checkpoint parameter groups do not match this optimizer's groups")
        self.directions.load_state_dict(zo["directions"])
        for group, stored in zip(self.param_groups, saved, strict=True):
            group.update({k: v for k, v in stored.items() if k != "params"})
        self.eps, self.queries = zo["eps"], zo["queries"]
        self.steps, self.skipped, self.forwards = zo["steps"], zo["skipped"], zo["forwards"]
        self.update_rule.load_state_dict(zo["update"])

    def __repr__(self) -> str:
        return (
            f"ZO(dim={self.space.dim}, estimator={self.estimator.name!r}, queries={self.queries}, "
            f"eps={self.eps}, directions={self.directions!r}, update={type(self.update_rule).__name__})"
        )


class _Probe:
    """The optimizer's side of :class:`~edgezo.estimators.Probe` for one step.

    ``applied[(step, query)]`` is how many ``eps * z(step, query)`` this step has
    added to each float tensor. Restores of released queries are deferred (the
    last one is fused with the update); a failure subtracts everything applied
    so far, which puts the weights back. Fixed-point tensors are never changed
    by a perturbation: their layers compute ``w_q(+/-)`` on the fly from the net
    integer multiple kept in ``nets``.
    """

    def __init__(self, opt: ZO, step: int) -> None:
        self.opt, self.step, self.eps = opt, step, opt.eps
        self.floats = opt.space.float_segments
        self.applied: dict[tuple[int, int], list[float]] = {}
        self.nets: dict[tuple[int, int], float] = {}
        self.released: list[int] = []
        if opt.fixed is not None:
            opt.fixed.start()

    def _add(self, moves: list[tuple[tuple[int, int], list[float]]]) -> None:
        """``w += multiples[i] * eps * z(key)`` on float tensor ``i`` for every ``(key, multiples)``.

        One call to the source (in order, all or nothing), so a fused kernel reads
        and writes the weights once for all moves; then recorded in ``applied``.
        """
        passes = [(*key, multiples) for key, multiples in moves]
        apply_(self.opt.directions, self.floats, self.eps, passes)
        for key, multiples in moves:
            total = self.applied.setdefault(key, [0.0] * len(self.floats))
            self.applied[key] = [a + k for a, k in zip(total, multiples, strict=True)]

    def _set_net(self, key: tuple[int, int], net: float) -> None:
        """Fixed-point layers: perturb by ``net * eps_q`` along ``z(key)`` (0: unperturbed)."""
        if self.opt.fixed is None:
            return
        if net != int(net):
            raise ValueError(f"fixed-point perturbations are integer multiples of eps, got {net}")
        self.nets[key] = net
        self.opt.fixed.perturb(key, int(net))

    # perturbations -------------------------------------------------------
    def perturb(self, query: int, scale: float) -> None:
        """Undo released queries and perturb along ``query``, in one pass over the weights."""
        key = (self.step, query)
        restores = [
            ((self.step, q), [-a for a in self.applied[(self.step, q)]]) for q in self.released
        ]
        self._add([*restores, (key, [scale] * len(self.floats))])
        for released, _ in restores:
            self._set_net(released, 0.0)
        self.released.clear()
        self._set_net(key, self.nets.get(key, 0.0) + scale)

    def release(self, query: int) -> None:
        self.released.append(query)

    # evaluations ---------------------------------------------------------
    def evaluate(self, closure: Closure) -> float:
        self.opt.forwards += 1
        return _loss_value(closure())

    def directional(self, closure: Closure, query: int) -> tuple[float, float]:
        opt = self.opt
        opt.forwards += 1
        with fwad.dual_level(), _math_attention():
            for seg in opt.space:
                p = seg.param
                z = opt.directions.sample(
                    self.step, query, seg.offset, seg.numel, dtype=p.dtype, device=p.device
                ).view_as(p)
                if seg.mask is not None:
                    z.mul_(seg.mask)
                p.add_(fwad.make_dual(torch.zeros_like(p), z))
            primal, tangent = fwad.unpack_dual(closure())
        if tangent is None:
            raise RuntimeError(
                "The closure's loss does not depend on the parameters (no forward-mode tangent); "
                "check that the closure uses the model whose parameters were given to ZO"
            )
        return _loss_value(primal), _loss_value(tangent)

    # the update ----------------------------------------------------------
    def finish(self, terms: list[Term]) -> None:
        """Undo what is still perturbed, fused with the update terms; then weight decay."""
        opt = self.opt
        lrs = [g["lr"] for g in opt.param_groups]
        weights = _segment_weights(opt, terms)  # weights[t][i]: term t on tensor i
        moves = {key: [-a for a in amounts] for key, amounts in self.applied.items()}
        floats = [i for i, seg in enumerate(opt.space) if not seg.fixed]
        for (step, query, _), per_segment in zip(terms, weights, strict=True):
            multiples = moves.setdefault((step, query), [0.0] * len(self.floats))
            for j, i in enumerate(floats):  # w -= lr * weight * z, in units of eps * z
                multiples[j] -= lrs[self.floats[j].group] * per_segment[i] / self.eps
        self.released.clear()
        self._add(list(moves.items()))
        _decay_weights(opt)
        if opt.fixed is not None:
            opt.fixed.clear()
            fixed = [i for i, seg in enumerate(opt.space) if seg.fixed]
            opt.fixed.update(terms, [[w[i] for w in weights] for i in fixed], lrs)
            opt.fixed.decay([g["lr"] * g["weight_decay"] for g in opt.param_groups])
        self.applied.clear()

    def undo(self) -> None:
        """Subtract everything this step added: the weights are as before the step."""
        passes = [(*key, [-a for a in amounts]) for key, amounts in self.applied.items()]
        apply_(self.opt.directions, self.floats, self.eps, passes)
        if self.opt.fixed is not None:
            self.opt.fixed.clear()
        self.applied.clear()


def _segment_weights(opt: ZO, terms: list[Term]) -> list[list[float]]:
    """Each term's weight on each tensor: the rule's weight times its per-tensor factor."""
    out = []
    for step, query, weight in terms:
        factors = opt.update_rule.factors(step, query, opt.space, opt.directions)
        out.append([weight] * len(opt.space) if factors is None else [weight * f for f in factors])
    return out


def _describe(estimator: Estimator) -> str:
    """What a checkpoint records of the estimator: its class and name (``SharpnessAware:sign``)."""
    return f"{type(estimator).__name__}:{estimator.name}"


def _decay_weights(opt: ZO) -> None:
    """Decoupled weight decay ``w -= lr * wd * w`` on the trainable elements."""
    for seg in opt.space.float_segments:
        group = opt.param_groups[seg.group]
        decay = group["lr"] * group["weight_decay"]
        if decay == 0.0:
            continue
        flat, mask = seg.flat(), seg.flat_mask()
        if mask is None:
            flat.mul_(1.0 - decay)
        else:
            flat.addcmul_(flat, mask, value=-decay)


def _loss_value(loss: Tensor | float) -> float:
    if isinstance(loss, Tensor):
        if loss.numel() != 1:
            raise ValueError(
                f"The closure must return a scalar loss, got a tensor of shape {tuple(loss.shape)}; "
                "reduce it (e.g. .mean())"
            )
        return float(loss.detach())
    return float(loss)


def _math_attention() -> contextlib.AbstractContextManager:
    """Select PyTorch's math attention kernel: the fused CPU kernels lack forward-mode AD."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


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


def _check_replay(update_rule: UpdateRule, directions: Directions) -> None:
    """Refuse an update rule that regenerates past ``z`` with a source that cannot."""
    if getattr(update_rule, "replays_past", False) and not directions.replayable:
        raise ValueError(
            f"{type(update_rule).__name__} replays past directions from their seeds, but "
            f"{type(directions).__name__} cannot regenerate a past z (it keeps a history that "
            "moves on every step). Drop momentum= (or the custom update), or use a source "
            "without history, e.g. Gaussian()."
        )


def _check_number(name: str, value: float, minimum: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= minimum):
        raise ValueError(f"Invalid {name}: {value}; it must be a finite number >= {minimum}")

"""Memory accounting: what training costs in bytes, measured, for backprop and for ZO.

A training step's memory is (PAPERS.md B's figure) the **weights** in their
number format plus the **scratch** the step needs, plus, for backprop, a
**gradient** per trained weight, plus any **optimizer state** (Adam's moments;
ZO's history, if any). This module measures each part on a real model and batch:

* :func:`weight_bytes`: every parameter and buffer in a number format (fp32, fp16,
  bf16, int16, int8 plus one float32 scale per tensor), or, for a model from
  :func:`edgezo.fixedpoint.quantize_model`, its real integer storage and scales.
* :func:`saved_activation_bytes`: backprop's scratch, the tensors autograd keeps
  for the backward pass, as reported by ``torch.autograd.graph.saved_tensors_hooks``
  during a forward with grad enabled for the trained parameters only.
* :func:`forward_peak_activation_bytes`: the scratch of inference, and so of a ZO
  step: the largest set of tensors alive at once during a ``no_grad`` forward,
  measured by :class:`LiveTensors` (a ``TorchDispatchMode`` that sees every
  tensor an ATen op returns and when it is freed).
* :func:`zo_step_scratch_bytes`: the same measurement around a real ``ZO.step``.
* :func:`optimizer_state_bytes`: the tensors and numbers an optimizer keeps.
* :func:`measure_peak_rss`: the peak resident set (and CUDA peak allocation) of
  a separate process running a few inference, ZO or backprop steps.
* :func:`memory_table` / :func:`write_memory_report`: the rows BP fp32, BP fp16,
  ZO fp32, QZO-FF 16w8a and QZO-FF 16w8a + 90% sparse, as Markdown, JSON and a
  stacked bar chart.

What counts as an activation (both measurements, so they compare): every
tensor storage that is not a parameter or buffer of the model, the input batch
included (a device holds it while the first layer runs). Storages shared by
several tensors (views, a ReLU output saved by two nodes) count once, at their
full size. Not seen: scratch inside a kernel (e.g. a fused attention kernel's
tiles) and NumPy arrays (the counter direction sources make ``z`` in NumPy, at
most ``edgezo.directions.base.CHUNK`` = 65,536 values at a time: O(1) in the
model size). Sizes are in bytes; tables and charts use MB = 10**6 bytes.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..extras import require
from ..figures import save_png

MB = 1e6  #: the unit of tables and charts (10**6 bytes, as the papers' "MB")

#: Bytes per element of the formats :func:`weight_bytes` knows.
FORMAT_BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2, "int16": 2, "int8": 1}
#: Each integer-format tensor carries one float32 scale (per-tensor quantization).
SCALE_BYTES = 4
#: Widths (bytes per element) at which activation sets are also counted.
WIDTHS = (1, 2, 4)

Inputs = Tensor | Sequence[Tensor]


# -- weights -------------------------------------------------------------------
def weight_bytes(model: nn.Module, fmt: str | None = None) -> int:
    """Bytes of the model's parameters and buffers, stored in ``fmt``.

    Args:
        model: any module; for a model from :func:`~edgezo.fixedpoint.quantize_model`
            leave ``fmt`` as ``None``.
        fmt: ``"fp32"``, ``"fp16"``, ``"bf16"`` (float formats: ``numel * width``
            per tensor), ``"int16"``, ``"int8"`` (``numel * width + 4`` per tensor:
            one float32 scale each), or ``None``: the tensors as they are stored now
            (a quantized model: its integers, its weight scales and its activation
            scales). Integer buffers (BatchNorm's batch counter) always count at
            their own size.

    Example:
        >>> weight_bytes(nn.Linear(3, 2), "fp16"), weight_bytes(nn.Linear(3, 2), "int8")
        (16, 16)
    """
    tensors = _weight_tensors(model)
    if fmt is None:
        return sum(t.numel() * t.element_size() for t in tensors)
    if fmt not in FORMAT_BYTES:
        raise ValueError(f"Unknown number format {fmt!r}; choose one of {sorted(FORMAT_BYTES)}")
    if any(not t.is_floating_point() for t in model.parameters()):
        raise ValueError(
            "This model is already quantized (integer parameters); count its real storage "
            "with weight_bytes(model) (fmt=None)"
        )
    scale = SCALE_BYTES if fmt.startswith("int") else 0
    return sum(
        t.numel() * FORMAT_BYTES[fmt] + scale
        if t.is_floating_point()
        else t.numel() * t.element_size()
        for t in tensors
    )


def _weight_tensors(model: nn.Module) -> list[Tensor]:
    """Parameters and buffers, each tensor once (tied weights share one)."""
    seen: dict[int, Tensor] = {}
    for t in [*model.parameters(), *model.buffers()]:
        seen.setdefault(id(t), t)
    return list(seen.values())


def _storage_key(t: Tensor) -> int:
    return t.untyped_storage().data_ptr()


# -- activation sets -----------------------------------------------------------
@dataclass(frozen=True)
class ActivationBytes:
    """An activation set's bytes as measured, and with every float element at 1, 2 or 4 bytes.

    ``at(2)`` is the set in fp16, ``at(1)`` with 8-bit activations (QZO-FF's
    "8a"); integer and boolean tensors (masks, indices) keep their size.
    """

    measured: int
    by_width: dict[int, int]

    def at(self, width: int | None = None) -> int:
        """Bytes with float elements at ``width`` bytes each (``None``: as measured)."""
        if width is None:
            return self.measured
        if width not in self.by_width:
            raise ValueError(f"Unknown activation width {width}; use one of {sorted(WIDTHS)}")
        return self.by_width[width]


def _sizes(t: Tensor) -> tuple[int, int, int]:
    """``(bytes, float elements, non-float bytes)`` of ``t``'s whole storage."""
    nbytes = t.untyped_storage().nbytes()
    if t.is_floating_point() or t.is_complex():
        return nbytes, nbytes // t.element_size(), 0
    return nbytes, 0, nbytes


class LiveTensors(TorchDispatchMode):
    """Tracks the bytes of tensors alive at once while it is active, and their peak.

    Every tensor an ATen op returns is seen here (``TorchDispatchMode``). A
    storage counts from the op that allocates it until the last tensor that
    views it is freed (a ``weakref.finalize`` per tensor; CPython frees a
    tensor when its reference count drops, so this is exact, not sampled).
    An op output counts as a new allocation only if its storage is neither one
    already tracked (then it is a view that keeps it alive), nor one of the op's
    inputs (a view of something older: weights, optimizer tables), nor
    ``exclude``\\ d. ``pinned`` tensors (the input batch) count from the start.

    After use: :meth:`peak` (bytes), :meth:`result` (the peak also at other
    widths) and ``current`` (bytes still alive when it ended).

    Example:
        >>> x = torch.ones(1000)
        >>> with LiveTensors() as live:
        ...     y = (x * 2) * 3        # x * 2 is freed once the product with 3 exists
        >>> live.peak() == 2 * 4000, live.current == 4000
        (True, True)
    """

    def __init__(self, exclude: Iterable[Tensor] = (), pinned: Iterable[Tensor] = ()) -> None:
        super().__init__()
        self._exclude = {_storage_key(t) for t in exclude}
        self._live: dict[int, list[int]] = {}  # storage -> [bytes, float elems, other, refs]
        self._finalizers: dict[int, weakref.finalize] = {}  # id(tensor) -> its finalizer
        self.current = 0
        self._now = {w: 0 for w in WIDTHS}
        self._peak = 0
        self._peak_at = {w: 0 for w in WIDTHS}
        for t in pinned:
            key = _storage_key(t)
            if key not in self._live and key not in self._exclude:
                self._add(key, t, refs=1)  # held by the caller for the whole pass

    def peak(self) -> int:
        """The largest number of bytes alive at once."""
        return self._peak

    def result(self) -> ActivationBytes:
        """The peak as measured and with float elements at each of :data:`WIDTHS`."""
        return ActivationBytes(self._peak, dict(self._peak_at))

    def _add(self, key: int, t: Tensor, refs: int = 0) -> None:
        nbytes, floats, other = _sizes(t)
        self._live[key] = [nbytes, floats, other, refs]
        self._shift(nbytes, floats, other)

    def _shift(self, nbytes: int, floats: int, other: int) -> None:
        self.current += nbytes
        self._peak = max(self._peak, self.current)
        for w in WIDTHS:
            self._now[w] += floats * w + other
            self._peak_at[w] = max(self._peak_at[w], self._now[w])

    def _release(self, key: int, tensor_id: int) -> None:
        self._finalizers.pop(tensor_id, None)
        record = self._live[key]
        record[3] -= 1
        if record[3] == 0:
            del self._live[key]
            self._shift(-record[0], -record[1], -record[2])

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = None
        for t in tree_flatten(out)[0]:
            if not isinstance(t, Tensor) or id(t) in self._finalizers:
                continue  # in-place ops return their (already tracked) argument
            try:
                key = _storage_key(t)
            except (NotImplementedError, RuntimeError):  # no storage (meta, sparse)
                continue
            if key not in self._live:
                if inputs is None:
                    inputs = {
                        _storage_key(a) for a in tree_flatten((args, kwargs))[0] if _is_dense(a)
                    }
                if key in inputs or key in self._exclude or t.untyped_storage().nbytes() == 0:
                    continue
                self._add(key, t)
            self._live[key][3] += 1
            self._finalizers[id(t)] = weakref.finalize(t, self._release, key, id(t))
        return out

    def __exit__(self, *exc: Any) -> Any:
        for f in list(self._finalizers.values()):
            f.detach()
        self._finalizers.clear()
        return super().__exit__(*exc)


def _is_dense(a: Any) -> bool:
    return isinstance(a, Tensor) and a.layout == torch.strided and a.device.type != "meta"


def _as_tuple(inputs: Inputs) -> tuple[Tensor, ...]:
    return (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)


def _trained(model: nn.Module, params: Iterable[Tensor] | None) -> list[Tensor]:
    """``params`` (checked to belong to ``model``), or the model's ``requires_grad`` ones."""
    own = {id(p): p for p in model.parameters()}
    if params is None:
        return [p for p in own.values() if p.requires_grad]
    chosen = list(params)
    strangers = [tuple(p.shape) for p in chosen if id(p) not in own]
    if strangers:
        raise ValueError(
            f"params must be parameters of the model (got tensors of shapes {strangers} that "
            "are not); pass model parameters, e.g. list(model.head.parameters())"
        )
    return chosen


@contextmanager
def _training_only(model: nn.Module, params: list[Tensor]) -> Iterator[None]:
    """``requires_grad`` on ``params`` only, restored afterwards."""
    before = {id(p): p.requires_grad for p in model.parameters()}
    chosen = {id(p) for p in params}
    try:
        for p in model.parameters():
            p.requires_grad_(id(p) in chosen)
        yield
    finally:
        for p in model.parameters():
            p.requires_grad_(before[id(p)])


def saved_activations(
    model: nn.Module, inputs: Inputs, params: Iterable[Tensor] | None = None
) -> ActivationBytes:
    """What backprop keeps for the backward pass; see :func:`saved_activation_bytes`."""
    trained = _trained(model, params)
    weights = {_storage_key(t) for t in _weight_tensors(model)}
    saved: dict[int, tuple[int, int, int]] = {}

    def pack(t: Tensor) -> Tensor:
        key = _storage_key(t)
        if key not in weights and key not in saved and t.untyped_storage().nbytes() > 0:
            saved[key] = _sizes(t)
        return t

    with (
        _training_only(model, trained),
        torch.enable_grad(),
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
    ):
        out = model(*_as_tuple(inputs))  # the graph keeps every saved storage alive till here
    del out
    return ActivationBytes(
        sum(s[0] for s in saved.values()),
        {w: sum(f * w + o for _, f, o in saved.values()) for w in WIDTHS},
    )


def saved_activation_bytes(
    model: nn.Module,
    inputs: Inputs,
    params: Iterable[Tensor] | None = None,
    *,
    width: int | None = None,
) -> int:
    """Bytes backprop keeps between the forward and the backward pass (its "scratch").

    Runs ``model(*inputs)`` with grad enabled for ``params`` only (default: the
    parameters that require grad) and sums the storages of the tensors autograd
    saves (``torch.autograd.graph.saved_tensors_hooks``): each layer's input
    where its weight's gradient needs it, activation functions' outputs or
    inputs, attention's queries, keys, values, output and log-sum-exp, norms'
    means and inverse deviations. Each storage counts once; saved parameters
    and buffers (a Linear keeps its weight to pass the gradient on) are weights,
    not counted; the input batch counts when a layer saves it. The loss (not
    run here) would add a few tensors of the output's size.

    Args:
        width: count float elements at this many bytes (2: fp16, 1: 8-bit) instead
            of their measured size.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
        >>> saved_activation_bytes(net, torch.randn(4, 3)) == (4 * 3 + 4 * 5) * 4  # input, ReLU out
        True
    """
    return saved_activations(model, inputs, params).at(width)


def forward_peak(model: nn.Module, inputs: Inputs) -> ActivationBytes:
    """The largest live activation set of a ``no_grad`` forward; see :func:`forward_peak_activation_bytes`."""
    batch = _as_tuple(inputs)
    with torch.no_grad(), LiveTensors(_weight_tensors(model), pinned=batch) as live:
        out = model(*batch)
    del out
    return live.result()


def forward_peak_activation_bytes(
    model: nn.Module, inputs: Inputs, *, width: int | None = None
) -> int:
    """The largest set of activations alive at once in a forward-only (``no_grad``) pass.

    This is inference's scratch and a ZO step's (:func:`zo_step_scratch_bytes`
    checks it): measured by :class:`LiveTensors` over ``model(*inputs)``,
    counting the input batch and every tensor the forward allocates (not the
    model's parameters and buffers) from its allocation until it is freed.

    Args:
        width: count float elements at this many bytes (2: fp16, 1: 8-bit).

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
        >>> forward_peak_activation_bytes(net, torch.randn(4, 3)) == (4 * 3 + 2 * 4 * 5) * 4
        True
    """
    return forward_peak(model, inputs).at(width)


def backprop_forward_peak_bytes(
    model: nn.Module, inputs: Inputs, params: Iterable[Tensor] | None = None
) -> int:
    """The largest live activation set of a forward with grad for ``params``: saved + transient.

    Measured by :class:`LiveTensors` with identity ``saved_tensors_hooks``, so
    the tensors autograd keeps stay visible as long as the graph holds them.
    """
    trained = _trained(model, params)
    batch = _as_tuple(inputs)
    with (
        _training_only(model, trained),
        torch.enable_grad(),
        torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t),
        LiveTensors(_weight_tensors(model), pinned=batch) as live,
    ):
        out = model(*batch)
        del out
    return live.peak()


def zo_step_scratch_bytes(
    optimizer: torch.optim.Optimizer,
    closure: Callable[[], Tensor],
    model: nn.Module,
    inputs: Inputs = (),
) -> int:
    """The largest live set of tensors during one ``optimizer.step(closure)``.

    The same measurement as :func:`forward_peak_activation_bytes` (parameters
    and buffers of ``model`` excluded, ``inputs`` pinned), around a whole ZO
    step: its perturbation passes, forwards and update. For ZO it equals the
    forward's peak plus the loss's few tensors: no ``z`` or gradient of the
    model's size is allocated. Tensors a step allocates and keeps (a pool's
    scratch buffer, one eps-scaled chunk, on the first step) count too, and so do the pieces of ``z``
    of sources that build it with torch ops (momentum-guided sampling: a few
    tensors of up to ``CHUNK`` values during a perturbation pass).
    """
    with LiveTensors(_weight_tensors(model), pinned=_as_tuple(inputs)) as live:
        optimizer.step(closure)
    return live.peak()


# -- optimizer state -------------------------------------------------------------
#: State words per trained weight of the backprop optimizers in the table.
BP_OPTIMIZER_WORDS: dict[str, int] = {"sgd": 0, "momentum": 1, "adam": 2}
NUMBER_BYTES = 8  #: a number of an update rule's history (a Python float or int)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes an optimizer keeps between steps (gradients not included).

    * ``torch.optim`` optimizers: every tensor in ``optimizer.state`` (SGD: none,
      or one momentum buffer per weight; Adam: two moments per weight and a step
      counter per tensor). Read after a step: they allocate lazily.
    * :class:`edgezo.ZO`: the tensors its direction source holds (momentum-guided
      sampling: the int8 ``z_t``, 1 byte per weight; a PeZO pool: its numbers,
      plus an eps-scaled copy once a GPU kernel used it; counter sources:
      nothing), its masks (sparse updates: 1 bit per weight),
      and the numbers of its update rule's history at 8 bytes each (momentum by
      replay: ``(1 + queries)`` numbers per remembered step; SGD: none).
    """
    from ..optim import ZO

    if isinstance(optimizer, ZO):
        tensors = list(_tensors_in(optimizer.directions))
        tensors += [s.mask.bits for s in optimizer.space if s.mask is not None]
        numbers = _count_numbers(optimizer.update_rule.state_dict())
        return _storage_bytes(tensors) + NUMBER_BYTES * numbers
    return _storage_bytes(
        [v for state in optimizer.state.values() for v in state.values() if isinstance(v, Tensor)]
    )


def _storage_bytes(tensors: Iterable[Tensor]) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        seen.setdefault(_storage_key(t), t.untyped_storage().nbytes())
    return sum(seen.values())


def _tensors_in(obj: Any, depth: int = 0) -> Iterator[Tensor]:
    """Tensors held by a direction source's attributes (and by the sources it wraps)."""
    if isinstance(obj, Tensor):
        yield obj
    elif depth > 3:
        return
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors_in(v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors_in(v, depth + 1)
    elif hasattr(obj, "__dict__") and not callable(obj):
        for v in vars(obj).values():
            yield from _tensors_in(v, depth + 1)


def _count_numbers(state: Any) -> int:
    if isinstance(state, bool):
        return 0
    if isinstance(state, (int, float)):
        return 1
    if isinstance(state, dict):
        return sum(_count_numbers(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_count_numbers(v) for v in state)
    return 0


# -- the table -------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryRow:
    """One training configuration's memory, in bytes, by part."""

    name: str
    weights: int
    scratch: int
    gradients: int
    optimizer_state: int
    note: str = ""

    @property
    def total(self) -> int:
        return self.weights + self.scratch + self.gradients + self.optimizer_state


#: The rows of :func:`memory_table`, in order, with what each counts.
ROWS: dict[str, str] = {
    "bp-fp32": "backprop: saved activations at 4 B, a gradient per trained weight",
    "bp-fp16": "backprop with every tensor in fp16",
    "zo-fp32": "ZO-SGD (MeZO): the forward's largest live set, no gradient",
    "qzo-ff-16w8a": "QZO-FF: int16 weights (+ a scale each), 8-bit activations",
    "qzo-ff-16w8a-sparse90": "QZO-FF 16w8a training 10% of the weights (1-bit mask)",
}
SPARSITY = 0.9


def memory_table(
    model: nn.Module,
    inputs: Inputs,
    params: Iterable[Tensor] | None = None,
    rows: Sequence[str] = tuple(ROWS),
    bp_optimizer: str = "sgd",
) -> list[MemoryRow]:
    """Weights, scratch, gradients and optimizer state of training ``model`` on ``inputs``.

    Measured once in float32: backprop's saved activations
    (:func:`saved_activations`) and the forward's largest live set
    (:func:`forward_peak`); the rows count them at their format's width:

    * ``bp-fp32`` / ``bp-fp16``: scratch = saved activations at 4 / 2 bytes;
      a gradient per trained weight; optimizer state ``bp_optimizer``
      (``sgd``: none, ``momentum``: one word, ``adam``: two words per trained weight).
    * ``zo-fp32``: scratch = the forward's peak at 4 bytes; no gradient, no state
      (counter-based directions are regenerated, not stored).
    * ``qzo-ff-16w8a``: weights int16 plus a float32 scale per tensor; scratch =
      the forward's peak with 8-bit activations (1 byte per element: edgezo
      simulates them in float32, a device stores bytes).
    * ``qzo-ff-16w8a-sparse90``: the same, training 10% of the weights. Sparsity
      does not change a ZO step's scratch (the forward is the same), nor its
      weights (all are stored); it adds a 1-bit mask per candidate weight
      (as edgezo keeps them: :class:`~edgezo.params.BitMask`). For
      backprop a sparse update changes little either: a layer with any trained
      weight needs its whole input saved. The paper's 0.40 MB for "sparse +
      fixed point" must therefore count something else (its scratch accounting
      is not published), so it is reported beside this row, not reproduced.
    """
    _check_table_settings(rows, bp_optimizer)
    trained = _trained(model, params)
    n = sum(p.numel() for p in trained)
    saved = saved_activations(model, inputs, trained)
    peak = forward_peak(model, inputs)
    build = _row_builders(model, n, saved, peak, bp_optimizer)
    return [build[r]() for r in rows]


def _check_table_settings(rows: Sequence[str], bp_optimizer: str) -> None:
    """Refuse unknown row names and backprop optimizers, listing the known ones."""
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise ValueError(f"Unknown memory rows {unknown}; choose from {list(ROWS)}")
    if bp_optimizer not in BP_OPTIMIZER_WORDS:
        raise ValueError(
            f"Unknown backprop optimizer {bp_optimizer!r}; choose from {list(BP_OPTIMIZER_WORDS)}"
        )


def _row_builders(
    model: nn.Module, n: int, saved: ActivationBytes, peak: ActivationBytes, bp_optimizer: str
) -> dict[str, Callable[[], MemoryRow]]:
    """Each row of :data:`ROWS` by name, from ``n`` trained weights and the measured scratch."""
    words = BP_OPTIMIZER_WORDS[bp_optimizer]
    opt = f"{bp_optimizer}: {words} word(s) per trained weight"
    return {
        "bp-fp32": lambda: MemoryRow(
            "BP fp32", weight_bytes(model, "fp32"), saved.at(4), 4 * n, 4 * words * n, opt
        ),
        "bp-fp16": lambda: MemoryRow(
            "BP fp16", weight_bytes(model, "fp16"), saved.at(2), 2 * n, 2 * words * n, opt
        ),
        "zo-fp32": lambda: MemoryRow("ZO fp32", weight_bytes(model, "fp32"), peak.at(4), 0, 0),
        "qzo-ff-16w8a": lambda: MemoryRow(
            "QZO-FF 16w8a", weight_bytes(model, "int16"), peak.at(1), 0, 0
        ),
        "qzo-ff-16w8a-sparse90": lambda: MemoryRow(
            "QZO-FF 16w8a + 90% sparse",
            weight_bytes(model, "int16"),
            peak.at(1),
            0,
            (n + 7) // 8,
            f"{n - round(SPARSITY * n)} of {n} weights trained; state = 1-bit mask",
        ),
    }


def memory_markdown(rows: Sequence[MemoryRow], title: str = "") -> str:
    """The rows as a Markdown table in MB (10**6 bytes)."""
    head = (
        "| Training | Weights (MB) | Scratch (MB) | Gradients (MB) | Optimizer state (MB) "
        "| Total (MB) | Note |\n|---|---:|---:|---:|---:|---:|---|\n"
    )
    body = "".join(
        f"| {r.name} | {r.weights / MB:.3f} | {r.scratch / MB:.3f} | {r.gradients / MB:.3f} "
        f"| {r.optimizer_state / MB:.3f} | {r.total / MB:.3f} | {r.note} |\n"
        for r in rows
    )
    return (f"## {title}\n\n" if title else "") + head + body


PARTS = ("weights", "scratch", "gradients", "optimizer_state")


def plot_memory(rows: Sequence[MemoryRow], path: str | Path, title: str = "") -> Path:
    """A stacked bar chart (weights, scratch, gradients, optimizer state) per row, PNG in MB."""
    require("matplotlib", "studies", needed_by="the memory chart").use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 2.5, 4.2))
    names = [r.name for r in rows]
    bottom = [0.0] * len(rows)
    for part in PARTS:
        values = [getattr(r, part) / MB for r in rows]
        ax.bar(names, values, bottom=bottom, label=part.replace("_", " "))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for i, total in enumerate(bottom):
        ax.annotate(f"{total:.2f}", (i, total), ha="center", va="bottom", fontsize=8)
    ax.set_ylim(top=1.12 * max(bottom, default=1.0))
    ax.set_ylabel("memory (MB)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelsize=8, rotation=15)
    fig.tight_layout()
    path = save_png(fig, path, dpi=120)
    plt.close(fig)
    return path


def memory_title(meta: Mapping[str, Any]) -> str:
    """The table's and the chart's title: model, regime and batch of ``edgezo memory``'s meta."""
    model = str(meta["model"]).split(" (")[0]
    return f"Training memory: {model}, {meta['regime']}, batch {meta['batch']}"


def memory_text(rows: Sequence[MemoryRow], meta: Mapping[str, Any], title: str = "") -> str:
    """``memory.md``: the table, what each row counts, and the notes of ``meta``."""
    legend = "".join(f"- `{key}`: {what}\n" for key, what in ROWS.items())
    return memory_markdown(rows, title) + "\nRows:\n" + legend + _notes(dict(meta))


def write_memory_report(
    out_dir: str | Path, rows: Sequence[MemoryRow], meta: dict[str, Any], title: str = ""
) -> list[Path]:
    """Write ``memory.md``, ``memory.png`` and ``memory.json`` (rows + ``meta``) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "memory.md"
    md.write_text(memory_text(rows, meta, title))
    png = plot_memory(rows, out / "memory.png", title)
    data = {"meta": meta, "rows": [{**asdict(r), "total": r.total} for r in rows]}
    js = out / "memory.json"
    js.write_text(json.dumps(data, indent=2) + "\n")
    return [md, png, js]


def rebuild_report(folder: Path, data: Mapping[str, Any]) -> str:
    """``memory.md``'s text from a ``memory.json`` alone, and ``memory.png`` drawn into
    ``folder`` (the report of committed results, which keep only the JSON)."""
    rows = [MemoryRow(**{k: v for k, v in r.items() if k != "total"}) for r in data["rows"]]
    title = memory_title(data["meta"])
    plot_memory(rows, Path(folder) / "memory.png", title)
    return memory_text(rows, data["meta"], title)


def _notes(meta: dict[str, Any]) -> str:
    lines = [f"- {k}: {v}" for k, v in meta.items() if not isinstance(v, dict)]
    rss = meta.get("peak_rss")
    if isinstance(rss, dict):
        lines += [
            f"- measured peak RSS, {mode}: {r['peak_rss_bytes'] / MB:.1f} MB "
            f"({(r['peak_rss_bytes'] - r['rss_after_setup_bytes']) / MB:.2f} MB above setup)"
            for mode, r in rss.items()
        ]
    return "\n" + "\n".join(lines) + "\n" if lines else ""


# -- measured peak memory of a process ---------------------------------------------
RSS_MODES = ("inference", "zo-fp32", "bp-fp32")


def stand_in_loss(output: Tensor) -> Tensor:
    """The loss of the memory measurements: ``mean(output**2)`` (its cost is O(output))."""
    return output.float().square().mean()


def measure_peak_rss(
    model: nn.Module,
    inputs: Inputs,
    mode: str,
    steps: int = 3,
    params: Iterable[Tensor] | None = None,
    device: str = "cpu",
    threads: int = 1,
) -> dict[str, Any]:
    """Peak memory of a fresh Python process running ``steps`` steps of ``mode`` on ``model``.

    The model and batch are saved with ``torch.save`` to a temporary folder and
    loaded by the child (so any picklable model works; a quantized model does
    not pickle). Modes: ``inference`` (``no_grad`` forward + loss),
    ``zo-fp32`` (``edgezo.ZO``, central, Gaussian directions),
    ``bp-fp32`` (``torch.optim.SGD``, forward + backward), training ``params``
    (default: those requiring grad); the loss is :func:`stand_in_loss`.

    Returns bytes: ``peak_rss_bytes`` (the child's ``VmHWM`` from
    ``/proc/self/status``; ``ru_maxrss`` where that is missing: the parent's
    ``RUSAGE_CHILDREN`` value is not used, as Linux carries a parent's resident
    set into a forked child's), ``rss_after_setup_bytes`` (after imports, model,
    batch and optimizer, before the first step: peak minus this is what the
    steps added) and, on a CUDA device, ``cuda_peak_allocated_bytes``
    (``torch.cuda.max_memory_allocated``) and ``cuda_allocated_after_setup_bytes``.
    """
    if mode not in RSS_MODES:
        raise ValueError(f"Unknown mode {mode!r}; choose from {RSS_MODES}")
    if steps < 1:
        raise ValueError(f"Invalid steps {steps}; run at least 1 step")
    trained = {id(p) for p in _trained(model, params)}
    names = [n for n, p in model.named_parameters() if id(p) in trained]
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.pt"
        torch.save(
            {
                "model": model,
                "inputs": _as_tuple(inputs),
                "trained": names,
                "mode": mode,
                "steps": steps,
                "device": device,
                "threads": threads,
            },
            spec,
        )
        code = "import sys; from edgezo.analysis.memory import _rss_child; _rss_child(sys.argv[1])"
        done = subprocess.run(
            [sys.executable, "-c", code, str(spec)], capture_output=True, text=True, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(f"memory child ({mode}) failed:\n{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rss_child(spec_path: str) -> None:
    """Child side of :func:`measure_peak_rss`: run the steps, print one JSON line."""
    spec = torch.load(spec_path, weights_only=False)
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    model = spec["model"].to(device)
    batch = tuple(t.to(device) for t in spec["inputs"])
    trained = set(spec["trained"])
    params = [p for n, p in model.named_parameters() if n in trained]
    for n, p in model.named_parameters():
        p.requires_grad_(n in trained)
    step = _step_function(spec["mode"], model, batch, params)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    result: dict[str, Any] = {
        "mode": spec["mode"],
        "steps": spec["steps"],
        "rss_after_setup_bytes": _proc_status_bytes("VmRSS"),
    }
    if cuda:
        result["cuda_allocated_after_setup_bytes"] = torch.cuda.memory_allocated()
    for _ in range(spec["steps"]):
        step()
    if cuda:
        torch.cuda.synchronize()
        result["cuda_peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    hwm = _proc_status_bytes("VmHWM")
    result["peak_rss_bytes"] = hwm if hwm is not None else maxrss
    result["peak_rss_source"] = "VmHWM" if hwm is not None else "ru_maxrss"
    print(json.dumps(result))


def _step_function(
    mode: str, model: nn.Module, batch: tuple[Tensor, ...], params: list[Tensor]
) -> Callable[[], float]:
    """One step of ``mode`` as a function (the optimizer is built here, before measuring)."""
    if mode == "inference":

        def infer() -> float:
            with torch.no_grad():
                return float(stand_in_loss(model(*batch)))

        return infer
    if mode == "zo-fp32":
        from ..optim import ZO

        opt = ZO(params, lr=1e-6, eps=1e-3)
        return lambda: float(opt.step(lambda: stand_in_loss(model(*batch))))
    sgd = torch.optim.SGD(params, lr=1e-6)

    def backprop() -> float:
        sgd.zero_grad(set_to_none=True)
        loss = stand_in_loss(model(*batch))
        loss.backward()
        sgd.step()
        return float(loss)

    return backprop


def _proc_status_bytes(field_name: str) -> int | None:
    """A ``/proc/self/status`` memory field (``VmHWM``, ``VmRSS``) in bytes, if readable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def environment() -> dict[str, Any]:
    """Where the numbers were measured (recorded in reports)."""
    return {
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }

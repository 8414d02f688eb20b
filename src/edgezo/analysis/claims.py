"""The papers' claims (PAPERS.md A and B), each with the paper's number and how to read ours.

A :class:`Claim` names the results files it reads (:class:`Source`: a study's
``results.json``, a ``memory.json``, a ``cost.json``, the ``landscape.json`` or the
hardware report's ``report.json``) and a check that turns their JSON into a
:class:`Finding`: our number as text formatted from those files, a verdict and
its reason. The papers' numbers are typed here and only here; ours never are.

How the papers' words are read where they give no finer rule:

* "FF" is the studies' ``zo`` (float ZO-SGD, MeZO's central estimate) and
  "quantized FF" is ``qzo-ff 16w8a`` (sign-3-SPSA on 16-bit integer weights).
* "within 5% of BP": at most 5 accuracy points below backprop in a cell (a cell
  is one combination of a study's string fields: target, regime, backbone...;
  its rows are its seeds), decided on the cell's 95% interval of the difference
  (:mod:`edgezo.analysis.stats`): reproduced, not reproduced or inconclusive.
* A cell is *vacuous* and never counts when the claim's reference (or backprop)
  does not beat zero-shot beyond its interval, or when zero-shot is not shown to
  miss the criterion itself (:func:`vacuity`). A share claim ("26 of 30") is
  reproduced when the share of reproduced non-vacuous cells is at least the
  paper's, not reproduced when even the inconclusive ones cannot make it, and
  vacuous when no cell counts (:func:`share_verdict`).
* "an FF iteration about 1.5x cheaper than BP": backprop's time per step over MeZO's ZO
  step, timed step against step by ``edgezo cost vit-tiny`` (batch 8) in each regime that
  runs the whole network, decided on the interval over the rounds against 1.5x.
* "close" and "costs little" use the same 5-point bar; "no loss of training
  accuracy" is at most 1 point below Gaussian ZO in every cell.
* Hardware reductions must hold against every Gaussian baseline measured (the
  paper's baseline is not public); "up to -86% power" against the best one; each at
  the precision the paper prints (:func:`meets_paper`).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .stats import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Interval,
    beats,
    bootstrap_interval,
    decide,
    direction,
    proportion_difference,
    t_interval,
    unpack_correct,
)

#: A claim whose every cell is vacuous (zero-shot passes too, or nothing moved).
VACUOUS = "vacuous"
DECISIONS = (REPRODUCED, INCONCLUSIVE, NOT_REPRODUCED)
ZERO_SHOT = "zero-shot"
#: The "interval" of a difference with a missing (NaN) accuracy: decided inconclusive.
MISSING = "a run has no accuracy"
#: Row fields that describe one run, not its cell.
RUN_FIELDS = frozenset({"method", "correct"})
NOT_COMPARABLE = "not comparable"
NOT_RUN = "not run"

VISION = ("cross-domain", "ood", "fewshot")
AUDIO = ("kws-personalize", "kws-fewshot")
STUDIES = VISION + AUDIO
#: The studies whose cells train PeZO's rotating RNG array (``pezo array``) beside its pool.
ARRAY_STUDIES = ("cross-domain", "kws-personalize")
WHOLE_NETWORK = ("ft", "vpt")  # regimes that run the whole network every step


@dataclass(frozen=True)
class Source:
    """One results file: ``kind`` is ``study``, ``memory``, ``cost``, ``landscape`` or ``hw``;
    ``name`` is the study's name, the memory or cost run's model, or the kind again."""

    kind: str
    name: str

    @property
    def directory(self) -> str:
        """The folder under the results directory that :meth:`quick_argv` writes."""
        if self.kind in ("memory", "cost"):
            return self.kind if self.name == "vit-tiny" else f"{self.kind}-{self.name}"
        return self.name

    @property
    def filename(self) -> str:
        return {"study": "results.json", "memory": "memory.json", "cost": "cost.json",
                "landscape": "landscape.json", "hw": "report.json"}[self.kind]  # fmt: skip

    def quick_argv(self, results: str) -> list[str]:
        """The arguments of ``edgezo`` that write this file (quick versions) under ``results``."""
        out = f"{results}/{self.directory}"
        if self.kind == "study":
            return ["run", self.name, "--quick", "--out", results]
        if self.kind == "memory":
            return ["memory", self.name, "--out", out]
        if self.kind == "cost":
            return ["cost", self.name, "--rounds", "3", "--out", out]
        if self.kind == "landscape":
            return ["landscape", "--quick", "--out", out]
        return ["hw", "report", "--out", out]

    def command(self, data: Mapping | None, results: str) -> str:
        """The command that made ``data`` (read from it), or that would make it (``None``)."""
        if data is None:
            return shlex.join(["edgezo", *self.quick_argv(results)])
        out = f"{results}/{self.directory}"
        if self.kind == "study":
            argv = ["run", self.name, *(["--quick"] if data.get("quick") else [])]
            if len(data.get("seeds", ())) > 1:  # merged: edgezo run --seeds
                argv += ["--seeds", ",".join(map(str, data["seeds"]))]
            elif data.get("seed"):
                argv += ["--seed", str(data["seed"])]
            argv += ["--out", results]
        elif self.kind == "memory":
            meta = data["meta"]
            argv = ["memory", self.name, "--regime", str(meta["regime"]),
                    "--batch", str(meta["batch"]), "--out", out]  # fmt: skip
        elif self.kind == "cost":
            meta = data["meta"]
            argv = ["cost", self.name, "--regimes", ",".join(c["regime"] for c in data["cells"])]
            argv += [w for k in ("batch", "rounds", "threads") for w in (f"--{k}", str(meta[k]))]
            argv += ["--out", out]
        elif self.kind == "landscape":
            cfg = data.get("config", {})
            argv = ["landscape", *(["--quick"] if data.get("quick") else [])]
            argv += ["--grid", str(cfg["grid"])] if "grid" in cfg else []
            argv += ["--directions", str(cfg["directions"])] if "directions" in cfg else []
            if len(data.get("seeds", ())) > 1:  # merged: edgezo landscape --seeds
                argv += ["--seeds", ",".join(map(str, data["seeds"]))]
            elif data.get("seed"):
                argv += ["--seed", str(data["seed"])]
            argv += ["--out", out]
        else:
            argv = ["hw", "report", "--throughput", str(data["throughput"]),
                    "--bits", str(data["bits"]), "--target", str(data["target"]), "--out", out]  # fmt: skip
        return shlex.join(["edgezo", *argv])


@dataclass(frozen=True)
class Finding:
    """Our side of a claim: ``ours`` (numbers from the results files), verdict and reason."""

    ours: str
    verdict: str
    why: str


Found = Mapping[Source, Mapping]  # the JSON of each present source
Check = Callable[[Found], Finding]


@dataclass(frozen=True)
class Claim:
    """One claim of a paper: what it says, its number, the sources it needs and the check."""

    paper: str
    text: str
    number: str
    sources: tuple[Source, ...]
    check: Check


def study(name: str) -> Source:
    return Source("study", name)


MEMORY_VIT = Source("memory", "vit-tiny")
MEMORY_CRNN = Source("memory", "crnn")
COST_VIT = Source("cost", "vit-tiny")
LANDSCAPE = Source("landscape", "landscape")
HW = Source("hw", "hw")


# -- accuracy cells ------------------------------------------------------------------------------
def gaps(rows: Sequence[Mapping], method: str, reference: str) -> list[tuple[str, float]]:
    """Per cell holding both methods: ``(cell, reference - method accuracy in points)``, the
    mean over the seeds both ran (:func:`runs_by_cell` says what a cell is)."""
    return [
        (cell, -difference(runs[method], runs[reference]).mean)
        for cell, runs in runs_by_cell(rows).items()
        if method in runs and reference in runs
    ]


def runs_by_cell(rows: Sequence[Mapping]) -> dict[str, dict[str, list[Mapping]]]:
    """``cell -> method -> rows`` (one row per seed). A cell is one combination of a row's
    string-valued fields other than ``method`` (the seed is a number: rows of several seeds
    fall in one cell; ``correct``, a run's packed flags, is no field of the cell)."""
    cells: dict[str, dict[str, list[Mapping]]] = {}
    for r in rows:
        key = " ".join(
            v for k, v in sorted(r.items()) if k not in RUN_FIELDS and isinstance(v, str)
        )
        cells.setdefault(key, {}).setdefault(r["method"], []).append(r)
    return cells


def difference(runs: Sequence[Mapping], reference: Sequence[Mapping]) -> Interval:
    """The interval of ``runs`` minus ``reference`` accuracy, in points, paired by seed: a
    paired bootstrap over seeds x test examples when every run stored its per-example
    correctness (``correct``, :func:`~edgezo.analysis.stats.pack_correct`, with
    ``examples``), else a t-interval over the per-seed differences, else (one seed) the point."""
    by_seed = {r.get("seed", 0): r for r in reference}
    pairs = [(r, by_seed[r.get("seed", 0)]) for r in runs if r.get("seed", 0) in by_seed]
    if not pairs:
        raise ValueError("no seed was run by both methods of a cell")
    if all("correct" in a and "correct" in b for a, b in pairs):
        flags = [[unpack_correct(x["correct"], int(x["examples"])) for x in pair] for pair in pairs]
        mine, theirs = (np.stack([f[i] for f in flags]) for i in (0, 1))
        return bootstrap_interval(mine, theirs).scaled(100.0)
    diffs = [100 * (float(a["accuracy"]) - float(b["accuracy"])) for a, b in pairs]
    if not all(map(math.isfinite, diffs)):  # a run without a test accuracy: never a pass
        return Interval(math.nan, math.nan, math.nan, len(diffs), MISSING)
    return t_interval(diffs)


@dataclass(frozen=True)
class CellDecision:
    """One cell of a "within X points" claim: the interval of ``method - reference`` (points),
    its equivalence decision, and why the cell is vacuous (``None``: it counts)."""

    cell: str
    gap: Interval
    decision: str
    vacuous: str | None


def vacuity(methods: Mapping[str, Sequence[Mapping]], reference: str, points: float) -> str | None:
    """Why a cell cannot test "within ``points`` of ``reference``" (``None``: it can): the
    reference (or backprop) does not beat zero-shot beyond its interval (nothing moved), or
    zero-shot itself is not shown to miss the criterion. A cell without zero-shot counts."""
    if ZERO_SHOT not in methods or reference == ZERO_SHOT:
        return None
    zero = methods[ZERO_SHOT]
    for trainer in dict.fromkeys((reference, "backprop")):
        if trainer in methods and not beats(difference(methods[trainer], zero)):
            return f"{trainer} does not beat zero-shot beyond its interval"
    if decide(difference(zero, methods[reference]), points) != NOT_REPRODUCED:
        return f"zero-shot is not shown to miss {points:g} points of {reference}"
    return None


def cell_decisions(
    rows: Sequence[Mapping], method: str, reference: str, points: float
) -> list[CellDecision]:
    """Every cell of ``rows`` holding both methods, decided on its interval (:func:`decide`)."""
    out = []
    for cell, methods in runs_by_cell(rows).items():
        if method in methods and reference in methods:
            gap = difference(methods[method], methods[reference])
            vacuous = vacuity(methods, reference, points)
            out.append(CellDecision(cell, gap, decide(gap, points), vacuous))
    return out


def share_verdict(decisions: Sequence[CellDecision], wanted: float) -> str:
    """A share claim on the non-vacuous cells: reproduced when the reproduced ones reach
    ``wanted``, not reproduced when even counting the inconclusive ones they cannot,
    inconclusive between; vacuous when every cell is."""
    counted = [d for d in decisions if d.vacuous is None]
    if not counted:
        return VACUOUS
    sure = sum(d.decision == REPRODUCED for d in counted) / len(counted)
    possible = sum(d.decision != NOT_REPRODUCED for d in counted) / len(counted)
    if sure >= wanted - 1e-9:
        return REPRODUCED
    return NOT_REPRODUCED if possible < wanted - 1e-9 else INCONCLUSIVE


def within_check(
    names: Sequence[str], method: str, reference: str, points: float, wanted: float
) -> Check:
    """Reproduced when ``method`` is shown (on each cell's interval) to be at most ``points``
    below ``reference`` in a share of the non-vacuous cells of studies ``names`` of at least
    ``wanted`` (:func:`share_verdict`; a missing accuracy never counts)."""

    def check(found: Found) -> Finding:
        cells = [
            d for name in names if study(name) in found
            for d in cell_decisions(found[study(name)]["rows"], method, reference, points)
        ]  # fmt: skip
        if not cells:
            return Finding("no cell", NOT_COMPARABLE, f"no cell has both {method} and {reference}")
        return Finding(within_text(cells, method, reference, points),
                       share_verdict(cells, wanted), within_why(cells))  # fmt: skip

    return check


def within_text(cells: Sequence[CellDecision], method: str, reference: str, points: float) -> str:
    """Our side of a within claim: counts of each decision, the vacuous cells, the worst gap."""
    counted = [d for d in cells if d.vacuous is None]
    count = {v: sum(d.decision == v for d in counted) for v in DECISIONS}
    share = count[REPRODUCED] / len(counted) if counted else 0.0
    worst = min((d.gap for d in cells), key=lambda g: math.inf if math.isnan(g.mean) else g.mean)
    return (
        f"{method}: {count[REPRODUCED]}/{len(counted)} cells ({share:.0%}) within {points:g} "
        f"point{'' if points == 1 else 's'} of {reference} "
        f"({count[INCONCLUSIVE]} inconclusive, {count[NOT_REPRODUCED]} not); "
        f"{len(cells) - len(counted)} vacuous cells left out; "
        f"largest shortfall {-worst.mean:.2f} points"
    )


def within_why(cells: Sequence[CellDecision]) -> str:
    """How the cells were decided: the interval kinds, and why cells were left out."""
    kinds = sorted({d.gap.method for d in cells})
    reasons = sorted({d.vacuous for d in cells if d.vacuous})
    why = f"each cell decided on its interval of the difference ({'; '.join(kinds)})"
    return why + (f"; vacuous: {'; '.join(reasons)}" if reasons else "")


def vww_check(found: Found) -> Finding:
    lp = [r for r in found[study("cross-domain")]["rows"] if r.get("regime") == "lp"]
    cells = gaps(lp, "qzo-ff 16w8a", "backprop")
    ours = "; ".join(f"{cell}: {gap:.2f} points under backprop" for cell, gap in cells) or "no cell"
    return Finding(ours, NOT_COMPARABLE, "no Visual Wake Words offline: the cross-domain study's "
                   "linear-probing cells on its own targets")  # fmt: skip


FF_CHEAPER = 1.5  # BP's time per iteration over FF's


def cost_check(found: Found) -> Finding:
    """Backprop's time per step over ``zo``'s on the paper's ViT-tiny (``edgezo cost``), per
    regime that runs the whole network: the t-interval of the per-round ratios; reproduced
    when every cell's interval is at or above :data:`FF_CHEAPER`, not reproduced when some
    cell's is wholly below it, inconclusive otherwise."""
    from .cost import ratio_interval

    data = found[COST_VIT]
    intervals = {c["regime"]: ratio_interval(c["seconds"]["backprop"], c["seconds"]["zo"])
                 for c in data["cells"] if c["regime"] in WHOLE_NETWORK}  # fmt: skip
    if not intervals:
        return Finding("no cell", NOT_COMPARABLE, "no regime that runs the whole network timed")
    meta = data["meta"]
    load = (meta.get("load_average_start") or [None])[0]
    ours = "; ".join(f"{regime}: {iv.text(scale=1.0)}x" for regime, iv in intervals.items())
    why = (f"time per step, backprop over MeZO's ZO step, batch {meta['batch']}, "
           f"{meta['threads']} thread(s), {meta['rounds']} paired rounds"
           + (f" (load average {load} at the start)" if load is not None else "")
           + f"; each regime's t-interval over the rounds against {FF_CHEAPER:g}x")  # fmt: skip
    cells = [CellDecision(regime, iv, decide(iv.shifted(-FF_CHEAPER), 0.0), None)
             for regime, iv in intervals.items()]  # fmt: skip
    return Finding(ours, share_verdict(cells, 1.0), why)


# -- landscapes ------------------------------------------------------------------------------
def panels(data: Mapping) -> dict[str, dict[str, Mapping]]:
    """``regime -> method -> panel`` of a ``landscape.json``."""
    out: dict[str, dict[str, Mapping]] = {}
    for p in data["panels"]:
        out.setdefault(p["regime"], {})[p["method"]] = p
    return out


def seed_differences(
    data: Mapping, method: str, reference: str, field: str
) -> dict[str, list[float]]:
    """``regime -> [method's field - reference's, per seed]`` of a landscape merged over seeds
    (``edgezo landscape --seeds``: each seed's panels under ``runs``)."""
    out: dict[str, list[float]] = {}
    for run in data["runs"].values():
        for regime, m in panels(run).items():
            if method in m and reference in m:
                out.setdefault(regime, []).append(m[method][field] - m[reference][field])
    return out


def seed_finding(diffs: Mapping[str, list[float]], method: str, reference: str, what: str,
                 holds: str, seeds: int) -> Finding:  # fmt: skip
    """Each regime decided on the t-interval over the seeds of ``method - reference`` in
    ``what``: reproduced when ``holds`` ("below" / "above") zero beyond it in every regime,
    not reproduced when on the other side beyond it in some regime, inconclusive otherwise."""
    intervals = {regime: t_interval(d) for regime, d in diffs.items()}
    ours = "; ".join(f"{regime}: {method} minus {reference} {iv.text(scale=1.0, digits=3)} {what}"
                     for regime, iv in intervals.items())  # fmt: skip
    want = -1 if holds == "below" else 1
    sides = {regime: direction(iv) for regime, iv in intervals.items()}
    why = f"each regime decided on the 95% t-interval of the difference over {seeds} seeds"
    if any(side == -want for side in sides.values()):
        return Finding(ours, NOT_REPRODUCED, why + f": {method} not {holds} {reference} beyond it "
                       "in " + ", ".join(r for r, side in sides.items() if side == -want))  # fmt: skip
    if all(side == want for side in sides.values()):
        return Finding(ours, REPRODUCED, why + f": {method} {holds} {reference} in every regime")
    return Finding(ours, INCONCLUSIVE, why + ": the interval holds 0 in "
                   + ", ".join(r for r, side in sides.items() if side == 0))  # fmt: skip


def landscape_check(
    method: str, reference: str, field: str, fmt: Callable[[float], str], holds: str
) -> Check:
    """Reproduced when, in every regime, ``method``'s ``field`` is ``holds`` ("below" /
    "above") ``reference``'s: on the seeds' interval of the difference when the landscape
    was run over seeds (:func:`seed_finding`), on the one run's numbers otherwise."""

    def check(found: Found) -> Finding:
        data = found[LANDSCAPE]
        if len(data.get("runs", ())) > 1:
            diffs = seed_differences(data, method, reference, field)
            if diffs:
                return seed_finding(diffs, method, reference, field.replace("_", " "), holds,
                                    len(data["runs"]))  # fmt: skip
        pairs = [(regime, m[method][field], m[reference][field])
                 for regime, m in panels(data).items()
                 if method in m and reference in m]  # fmt: skip
        if not pairs:
            return Finding(
                "no panel", NOT_COMPARABLE, f"no regime has both {method} and {reference}"
            )
        ours = "; ".join(
            f"{regime}: {method} {fmt(a)}, {reference} {fmt(b)}" for regime, a, b in pairs
        )
        failing = [r for r, a, b in pairs if not (a < b if holds == "below" else a > b)]
        if failing:
            return Finding(ours, NOT_REPRODUCED, f"{field} of {method} not {holds} {reference}'s "
                           f"in {', '.join(failing)}")  # fmt: skip
        return Finding(ours, REPRODUCED, f"{field} of {method} {holds} {reference}'s in every "
                       "regime (the magnitudes are of another task)")  # fmt: skip

    return check


def landscape_error_check(method: str, reference: str) -> Check:
    """Reproduced when ``method``'s test error is below ``reference``'s beyond the interval of
    the difference in every regime (one run each on the same ``config.test`` examples:
    :func:`~edgezo.analysis.stats.proportion_difference`), not reproduced when it is above
    beyond it in some regime, inconclusive otherwise."""

    def check(found: Found) -> Finding:
        data = found[LANDSCAPE]
        if len(data.get("runs", ())) > 1:
            diffs = seed_differences(data, method, reference, "test_error")
            if diffs:
                points = {r: [100 * d for d in ds] for r, ds in diffs.items()}
                return seed_finding(points, method, reference, "points of test error", "below",
                                    len(data["runs"]))  # fmt: skip
        n = int(data["config"]["test"])
        diffs = {regime: proportion_difference(m[method]["test_error"],
                                               m[reference]["test_error"], n)
                 for regime, m in panels(data).items() if method in m and reference in m}  # fmt: skip
        if not diffs:
            return Finding(
                "no panel", NOT_COMPARABLE, f"no regime has both {method} and {reference}"
            )
        ours = "; ".join(
            f"{regime}: {method} minus {reference} {d.text(digits=2)} points of test error"
            for regime, d in diffs.items()
        )
        sides = {regime: direction(d) for regime, d in diffs.items()}
        why = (f"each regime decided on the 95% interval of the difference ({diffs[next(iter(diffs))].method}"
               f", {n} test examples)")  # fmt: skip
        if any(side > 0 for side in sides.values()):
            return Finding(ours, NOT_REPRODUCED, why + f": {method} worse beyond it")
        if all(side < 0 for side in sides.values()):
            return Finding(ours, REPRODUCED, why + f": {method} better in every regime")
        return Finding(ours, INCONCLUSIVE, why + ": the interval holds 0 in "
                       + ", ".join(r for r, side in sides.items() if side == 0))  # fmt: skip

    return check


# -- memory ------------------------------------------------------------------------------
def memory_rows(data: Mapping) -> dict[str, Mapping]:
    return {r["name"]: r for r in data["rows"]}


def mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.3g} MB"


VIT_PAPER = (31.64, 11.43)  # MB of scratch: BP -> FF, ViT-tiny full fine-tuning


def vit_scratch_check(found: Found) -> Finding:
    data = found[MEMORY_VIT]
    rows, meta = memory_rows(data), data["meta"]
    bp, zo = rows["BP fp32"]["scratch"], rows["ZO fp32"]["scratch"]
    ratio = bp / zo
    ours = f"BP {mb(bp)} -> ZO {mb(zo)} ({ratio:.2f}x less), fp32, batch {meta['batch']}"
    if meta.get("regime") != "ft":
        return Finding(ours, NOT_COMPARABLE, f"measured with regime {meta.get('regime')}, not ft")
    paper = VIT_PAPER[0] / VIT_PAPER[1]
    why = (
        f"BP/ZO scratch ratio against the paper's {paper:.2f}x (MB depend on batch and image size)"
    )
    return Finding(ours, REPRODUCED if ratio >= paper else NOT_REPRODUCED, why)


def sparse_memory_check(found: Found) -> Finding:
    data = found[MEMORY_VIT]
    row = memory_rows(data)["QZO-FF 16w8a + 90% sparse"]
    ours = f"scratch {mb(row['scratch'])}, total {mb(row['total'])}, batch {data['meta']['batch']}"
    why = ("the paper's accounting of sparse + fixed-point scratch is not published; sparsity "
           "does not change a ZO step's forward (edgezo.analysis.memory)")  # fmt: skip
    return Finding(ours, NOT_COMPARABLE, why)


def crnn_check(found: Found) -> Finding:
    data = found[MEMORY_CRNN]
    bp = memory_rows(data)["BP fp32"]
    weights, scratch = bp["weights"], bp["scratch"]
    ours = (
        f"weights {weights / 1e3:.3g} kB (fp32), BP activations {mb(scratch)} at batch "
        f"{data['meta']['batch']}: {scratch / weights:.3g}x the weights"
    )
    why = "activations {} the weights; their size scales with the batch and clip length".format(
        "outweigh" if scratch > weights else "do not outweigh"
    )
    return Finding(ours, REPRODUCED if scratch > weights else NOT_REPRODUCED, why)


# -- hardware ------------------------------------------------------------------------------
GAUSSIANS = {"boxmuller": "Box-Muller", "clt": "CLT"}
PEZO_DESIGNS = {"pezo-pool": "pre-generated pool", "pezo-array": "on-the-fly RNG array"}
#: The paper's cuts as it prints them (% change vs a Gaussian generator); ours are compared
#: at the precision printed (:func:`meets_paper`): "up to -86%" is met by -85.998%.
HW_PAPER = {"luts": "-48.6", "ffs": "-12.7", "energy": "-86"}


def meets_paper(change: float, paper: str) -> bool:
    """Whether ``change`` (%) cuts at least as much as ``paper``, rounded to the decimals the
    paper prints: a difference below its last digit is not a finding."""
    decimals = len(paper.partition(".")[2])
    return round(change, decimals) <= float(paper)


def hw_change(data: Mapping, design: str, baseline: str, metric: str) -> float | None:
    """Change of ``metric`` (``luts``, ``ffs`` or ``energy``) of ``design`` vs ``baseline``, %."""
    rows = {r["key"]: r for r in data["rows"]}
    if design not in rows or baseline not in rows:
        return None

    def value(r: Mapping) -> float | None:
        return r["energy"] if metric == "energy" else r["resources"][metric]

    new, base = value(rows[design]), value(rows[baseline])
    return None if new is None or not base else 100 * (new - base) / base


def hw_check(design: str, metric: str) -> Check:
    """Reproduced when ``design`` cuts ``metric`` at least as much as the paper against every
    Gaussian baseline (``energy``, "up to": against the best)."""

    def check(found: Found) -> Finding:
        data = found[HW]
        changes = {name: hw_change(data, design, key, metric) for key, name in GAUSSIANS.items()}
        known = {k: v for k, v in changes.items() if v is not None}
        if not known:
            missing = "no energy estimate (yosys without sim)" if metric == "energy" else ""
            return Finding("n/a", NOT_COMPARABLE, missing or f"report.json lacks {design} or "
                           "the Gaussian baselines")  # fmt: skip
        ours = ", ".join(f"{v:+.1f}% vs {k}" for k, v in known.items())
        where = f"yosys cells, {data['target']}, {data['throughput']} numbers per cycle"
        paper = HW_PAPER[metric]
        if metric == "energy":
            ok = meets_paper(min(known.values()), paper)
            return Finding(ours, REPRODUCED if ok else NOT_REPRODUCED, "best case against the "
                           "paper's 'up to', at its printed precision; relative activity estimate, "
                           "not vendor power")  # fmt: skip
        short = [k for k, v in known.items() if not meets_paper(v, paper)]
        if short:
            return Finding(
                ours,
                NOT_REPRODUCED,
                f"smaller cut than the paper's vs {', '.join(short)} ({where})",
            )
        return Finding(
            ours,
            REPRODUCED,
            f"at least the paper's cut (at its printed precision) vs every baseline ({where})",
        )

    return check


def m_check(found: Found) -> Finding:
    """QZO-FF's m = 3 against m = 1 in the ablation study: the t-interval over seeds of the
    paired difference at equal forward passes; reproduced when sign-3 is better beyond it."""
    from .ablations import BETTER, WORSE, by_row, decision, difference

    try:
        diff = difference(by_row(found[study("ablations")]["rows"]), "m/sign-3", "m/sign-1")
    except ValueError as e:  # a run without the m family
        return Finding("n/a", NOT_COMPARABLE, str(e))
    verdict = {BETTER: REPRODUCED, WORSE: NOT_REPRODUCED}.get(decision(diff), INCONCLUSIVE)
    return Finding(f"sign-3 - sign-1: {diff.text(scale=1.0)} points ({diff.method})", verdict,
                   "16w8a head at equal forward passes (steps = budget / 2m), lr per row on "
                   "validation; decided on the interval of the paired difference")  # fmt: skip


def unmeasured(why: str) -> Check:
    """A claim no edgezo result measures: always not comparable, with the reason."""
    return lambda found: Finding("n/a", NOT_COMPARABLE, why)


# -- the table ------------------------------------------------------------------------------
CLAIMS: tuple[Claim, ...] = (
    Claim("QZO-FF", "FF within 5% of BP in few-shot vision (5-way 5-shot)",
          "26 of 30 cases", (study("fewshot"),), within_check(("fewshot",), "zo", "backprop", 5.0, 26 / 30)),
    Claim("QZO-FF", "FF within 5% of BP in few-shot audio (5-way 1-shot)",
          "11 of 16 cases", (study("kws-fewshot"),), within_check(("kws-fewshot",), "zo", "backprop", 5.0, 11 / 16)),
    Claim("QZO-FF", "quantized FF (16w8a) close to fp16 FF: within 5% in as many cases as FF vs BP",
          "close (no count; FF vs BP: 26 of 30)", tuple(map(study, STUDIES)),
          within_check(STUDIES, "qzo-ff 16w8a", "zo", 5.0, 26 / 30)),
    Claim("QZO-FF", "VWW linear probing, ViT-tiny: quantized FF (16w8a) just under BP",
          "87.30%, 0.63% under BP", (study("cross-domain"),), vww_check),
    Claim("QZO-FF", "sign-m-SPSA: m = 3 better than m = 1", "+1.22%", (study("ablations"),),
          m_check),
    Claim("QZO-FF", "FF needs a smaller learning rate and more iterations than BP",
          "qualitative", (), unmeasured("the studies fix ZO's larger step budget in advance and "
                                        "backprop uses Adam: learning rates are not on one scale")),
    Claim("QZO-FF", "an FF iteration is cheaper than a BP iteration", f"about {FF_CHEAPER:g}x",
          (COST_VIT,), cost_check),
    Claim("QZO-FF", "sparse FF (90% fewer trainable weights) costs little accuracy: within 5% of FF",
          "little (no number)", (study("ood"),), within_check(("ood",), "sparse zo", "zo", 5.0, 1.0)),
    Claim("QZO-FF", "8-bit weights (8w8a) stall where 16-bit ones (16w8a) train: eps_q and the updates round to zero",
          "8w8a does not converge", (LANDSCAPE,),
          landscape_check("qzo-ff 8w8a", "qzo-ff 16w8a", "distance_moved", lambda d: f"moved {d:.3g}", "below")),
    Claim("QZO-FF", "16-bit weights needed: test error of 16w8a vs 8w8a (LP / VPT)",
          "12.74% / 11.38% vs 51.35% / 52.98%", (LANDSCAPE,),
          landscape_error_check("qzo-ff 16w8a", "qzo-ff 8w8a")),
    Claim("QZO-FF", "FF takes more conservative steps than BP (loss-landscape trajectories)",
          "qualitative (Figure 6)", (LANDSCAPE,),
          landscape_check("zo", "backprop", "distance_moved", lambda d: f"moved {d:.3g}", "below")),
    Claim("QZO-FF", "ViT-tiny full fine-tuning scratch: BP -> FF",
          "31.64 MB -> 11.43 MB (2.77x less)", (MEMORY_VIT,), vit_scratch_check),
    Claim("QZO-FF", "sparse (90%) + fixed point (16w8a) FF scratch, ViT-tiny",
          "0.40 MB", (MEMORY_VIT,), sparse_memory_check),
    Claim("QZO-FF", "CRNN: activations under BP dwarf the weights",
          "250 kB weights, 11.5 MB activations (46x)", (MEMORY_CRNN,), crnn_check),
    Claim("PeZO", "random-number reuse (pool) loses no training accuracy vs Gaussian ZO (read: within 1 point in every cell)",
          "no loss of accuracy", tuple(map(study, STUDIES)), within_check(STUDIES, "pezo", "zo", 1.0, 1.0)),
    Claim("PeZO", "on-the-fly reuse (a rotating array of small RNGs) loses no training accuracy vs Gaussian ZO (read: within 1 point in every cell)",
          "no loss of accuracy", tuple(map(study, ARRAY_STUDIES)),
          within_check(ARRAY_STUDIES, "pezo array", "zo", 1.0, 1.0)),
    *(
        Claim("PeZO", f"{what}: RNG {label} vs a Gaussian generator",
              f"up to {HW_PAPER[metric]}%" if metric == "energy" else f"{HW_PAPER[metric]}%",
              (HW,), hw_check(design, metric))
        for design, what in PEZO_DESIGNS.items()
        for metric, label in (("luts", "LUTs"), ("ffs", "flip-flops"), ("energy", "power"))
    ),
)  # fmt: skip

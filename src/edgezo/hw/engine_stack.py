"""The 51,712-weight layer stack on the compiled engine: the long co-simulation run.

A two-layer quantized MLP (192-256-10, 16-bit weights, no bias: 51,712 weights) is trained
by sign-3-SPSA on the integers of a hardware generator (:mod:`.zsources`) with edgezo's
fixed-point path and recorded (:func:`stack_record`); :func:`run_stack` replays the
recording on the compiled engine (:func:`.engine_cxxrtl.replay_compiled`), compares its
block RAM with the Python integers after every step and times each part.
``tests/test_hw_engine.py`` (``-m slow``) holds the run to bit-exactness and
``benchmarks/hw_engine_cxxrtl.py`` records its seconds for docs/hw.md.

Example (about a minute with the PeZO pool on two shared cores, compiling included)::

    run = run_stack("pezo-pool", steps=100)
    run.exact_steps, run.replay.timing   # (100, {'compile_s': ..., 'run_s': ...})
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from edgezo import ZO
from edgezo.fixedpoint import quantize_model, trainable_parameters

from .engine import Engine
from .engine_cosim import Record, RecordingFormat, Replay, record, step_mismatches
from .engine_cxxrtl import replay_compiled
from .zsources import ZSource, z_source

#: lanes of the stack's engine. The compiled simulator's cost is its compile time (which
#: grows with the lanes: the C++ holds one datapath per lane) plus cycles / speed (which
#: shrink with them); 8 lanes took the least of both here (docs/hw.md)
STACK_LANES = 8
#: the stack's layer sizes: inputs, hidden units, classes (192 * 256 + 256 * 10 weights)
STACK_SIZES = (192, 256, 10)


def stack_record(key: str, steps: int, lanes: int = STACK_LANES) -> tuple[Record, ZSource]:
    """``steps`` recorded steps of sign-3-SPSA on generator ``key``'s integers, training the
    quantized MLP of :data:`STACK_SIZES` on a fixed random batch of 256 (perturbed reads not
    kept: 6 copies of the weights a step); and the generator."""
    torch.manual_seed(1)
    d_in, hidden, classes = STACK_SIZES
    layers = [
        torch.nn.Linear(d_in, hidden, bias=False),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, classes, bias=False),
    ]
    net = quantize_model(torch.nn.Sequential(*layers), activation_bits=None)
    x, y = torch.randn(256, d_in), torch.randint(0, classes, (256,))
    src = z_source(key, lanes)
    opt = ZO(
        trainable_parameters(net),
        lr=3e-2,
        eps=1e-2,
        estimator="sign",
        queries=3,
        directions=src.directions,
        formats=RecordingFormat(z_bits=8),
    )
    loss = lambda: torch.nn.functional.cross_entropy(net(x), y)  # noqa: E731
    return record(opt, loss, steps, lanes, keep_reads=False), src


@dataclass
class StackRun:
    """One generator's stack run: the recording, the compiled replay, the comparison, seconds.

    Attributes:
        key: the generator; ``lanes``: the engine's lanes.
        record: the fixed-point run; ``replay``: the compiled engine's (its ``timing`` holds
            ``compile_s``, 0 when cached, and ``run_s``).
        problems: per step, its differences (:func:`.engine_cosim.step_mismatches`).
        record_s: seconds training and recording with the fixed-point path.
        total_s: seconds of the whole run: recording, RTLIL, yosys, compiling, running and
            comparing.
    """

    key: str
    lanes: int
    record: Record
    replay: Replay
    problems: list[list[str]]
    record_s: float
    total_s: float

    @property
    def exact_steps(self) -> int:
        """Steps after which the engine's block RAM equals the Python integers."""
        return sum(not found for found in self.problems)

    def summary(self) -> dict[str, Any]:
        """The run in plain JSON: sizes, cycles (and whether every step took the cycles
        ``cycles_per_step`` predicts), seconds, cycles per second, bit-exact steps."""
        config, timing = self.record.config, self.replay.timing
        cycles = sum(self.replay.cycles)
        return {
            "key": self.key,
            "lanes": self.lanes,
            "weights": len(config.init),
            "steps": len(self.record.steps),
            "cycles_per_step": config.cycles_per_step(),
            "cycles_as_predicted": self.replay.cycles
            == [config.cycles_per_step()] * len(self.replay.cycles),
            "cycles": cycles,
            "compile_s": round(timing["compile_s"], 2),
            "run_s": round(timing["run_s"], 3),
            "cycles_per_s": round(cycles / timing["run_s"]),
            "record_s": round(self.record_s, 2),
            "total_s": round(self.total_s, 2),
            "exact_steps": self.exact_steps,
            "first_problems": [p for found in self.problems for p in found][:3],
        }


def run_stack(
    key: str, steps: int = 100, lanes: int = STACK_LANES, rebuild: bool = False
) -> StackRun:
    """Record ``steps`` steps of the stack on generator ``key`` and replay them on the compiled
    engine (``rebuild``: compile it even if cached, to time the compiler)."""
    start = time.perf_counter()
    rec, src = stack_record(key, steps, lanes)
    recorded = time.perf_counter() - start
    run = replay_compiled(Engine(rec.config, src), rec, stream=False, rebuild=rebuild)
    problems = step_mismatches(rec, run)
    return StackRun(key, lanes, rec, run, problems, recorded, time.perf_counter() - start)

"""Compiled co-simulation of the ZO engine: yosys's CXXRTL and a C++ test bench, no Python per cycle.

Amaranth's simulator (:func:`.engine_cosim.replay`) is the reference, but it runs a
64-lane engine at about 90 cycles a second: 100 steps of a 51,712-weight stack would
take 1.5 hours per generator. :func:`replay_compiled` runs the same engine compiled:

1. the :class:`~.engine.Engine` as RTLIL (Amaranth's ``rtlil`` back end, as
   :func:`.synth.to_rtlil` gives it);
2. yosys: ``proc; flatten; opt; write_cxxrtl -g2`` (CXXRTL's C++ of the design; ``opt``
   shares the multipliers by constants and cuts the C++ to about half, ``-g2`` keeps
   debug items for the ports and the block RAM only, where ``-g4`` doubles the code);
3. the design plus ``cxx/engine_driver.cc`` (the test bench: the cycle loop of
   :func:`.engine_cosim.replay`, ports found by name through CXXRTL's debug items),
   compiled by the system C++ compiler into an executable, cached in
   ``cache_dir()/runtime`` under a hash of the C++, the CXXRTL headers, the compiler,
   its flags and the CPU (:func:`edgezo.runtime.clib.library_path`);
4. one run of that executable: the recorded losses, coefficients and ``(m, k)`` per
   group in one binary file, the memory after every step, the streamed rows and the
   cycle counts in another, read back as the same :class:`~.engine_cosim.Replay`, so
   :func:`~.engine_cosim.mismatches` checks both simulators alike.

Needs yosys, CXXRTL's headers (Debian's ``yosys-dev``) and a C++ compiler (``g++``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..runtime.clib import CompilerMissing, build, library_path
from .engine import COEF_BITS, K_BITS, M_BITS, Engine, EngineConfig
from .engine_cosim import Record, Replay, Step, loss_word
from .synth import run_yosys, to_rtlil

#: the test bench, compiled after the generated design
DRIVER = Path(__file__).resolve().parent / "cxx" / "engine_driver.cc"
#: yosys commands from the engine's RTLIL to CXXRTL's C++ (``top.cc``)
YOSYS_SCRIPT = "proc; flatten; opt; write_cxxrtl -g2 top.cc"
#: C++ flags: -O2 compiled a 4-lane engine in half the time -O1 took. CXXRTL_NDEBUG: the
#: memory's address registers step one past the last row while the engine drains a pass
#: (no read or write is used then; such a read gives 0 in CXXRTL), which CXXRTL asserts on
FLAGS = ("-std=c++17", "-O2", "-DCXXRTL_NDEBUG")
#: the input file's header (see ``cxx/engine_driver.cc``): magic "EZCX", version 1
MAGIC, VERSION = 0x58435A45, 1

CXXRTL_HINT = (
    "the compiled engine simulation needs CXXRTL's headers (backends/cxxrtl/cxxrtl.h), "
    "from Debian's yosys-dev package: `apt-get install -y yosys-dev` (or set "
    "EDGEZO_CXXRTL_INCLUDE to the folder that holds backends/cxxrtl); Amaranth's "
    "simulator (edgezo.hw.engine_cosim.replay) needs none of it"
)


class CxxrtlMissing(RuntimeError):
    """CXXRTL's headers were not found (install Debian's ``yosys-dev``)."""


def cxx_compiler() -> str:
    """The C++ compiler: ``$CXX``, else the first of ``c++``, ``g++``, ``clang++`` on ``PATH``."""
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        found = shutil.which(name) if name else None
        if found:
            return found
    raise CompilerMissing(
        "the compiled engine simulation needs a C++ compiler and none was found: install one "
        "(`apt-get install -y g++`) or set CXX to its path; Amaranth's simulator "
        "(edgezo.hw.engine_cosim.replay) needs none"
    )


def cxxrtl_include() -> Path:
    """The folder holding ``backends/cxxrtl/cxxrtl.h``: ``$EDGEZO_CXXRTL_INCLUDE``, else
    ``$(yosys-config --datdir)/include``, else ``share/yosys/include`` beside ``yosys``."""
    candidates = [os.environ.get("EDGEZO_CXXRTL_INCLUDE")]
    config = shutil.which("yosys-config")
    if config:
        done = subprocess.run([config, "--datdir"], capture_output=True, text=True, check=False)
        candidates.append(done.stdout.strip() + "/include" if done.returncode == 0 else None)
    yosys = shutil.which("yosys")
    if yosys:
        candidates.append(str(Path(yosys).resolve().parents[1] / "share" / "yosys" / "include"))
    for folder in filter(None, candidates):
        if (Path(folder) / "backends" / "cxxrtl" / "cxxrtl.h").is_file():
            return Path(folder)
    raise CxxrtlMissing(CXXRTL_HINT)


def design_cxx(engine: Engine) -> str:
    """CXXRTL's C++ of ``engine`` (top module ``p_top``), from yosys (see :data:`YOSYS_SCRIPT`)."""
    with tempfile.TemporaryDirectory(prefix="edgezo-cxxrtl-") as tmp:
        run_yosys(to_rtlil(engine), YOSYS_SCRIPT, Path(tmp))
        return (Path(tmp) / "top.cc").read_text()


@dataclass(frozen=True)
class Build:
    """A compiled engine: the executable, and the seconds compiling took (``None``: cached)."""

    path: Path
    seconds: float | None


def build_engine(engine: Engine, rebuild: bool = False) -> Build:
    """The engine's test bench executable, compiled once per design, compiler and CPU
    (``rebuild``: compiled again even if cached, to time the compiler)."""
    include, cxx = cxxrtl_include(), cxx_compiler()
    source = design_cxx(engine) + "\n" + DRIVER.read_text()
    headers = b"".join(p.read_bytes() for p in sorted((include / "backends/cxxrtl").glob("*.h")))
    flags = (*FLAGS, f"-I{include}")
    path = library_path(cxx, source.encode() + headers, "engine-cxxrtl", flags).with_suffix("")
    if path.exists() and not rebuild:
        return Build(path, None)
    with tempfile.TemporaryDirectory(prefix="edgezo-cxxrtl-") as tmp:
        main = Path(tmp) / "engine.cc"
        main.write_text(source)
        seconds = build(cxx, path, main, flags)
    path.chmod(0o755)
    return Build(path, seconds)


def run_words(config: EngineConfig, steps: list[Step], stream: bool) -> np.ndarray:
    """The test bench's input (int32): the header, then per step ``m_u``, ``k_u``, ``n``, losses."""
    m, groups = config.queries, len(config.groups)
    fields = M_BITS | K_BITS << 8 | COEF_BITS << 16
    header = [MAGIC, VERSION, len(steps), m, groups, config.rows, config.lanes]
    parts = [np.array([*header, config.weight_bits, fields, int(stream)], dtype=np.int64)]
    for s, step in enumerate(steps):
        if len(step.losses) < 2 * m or len(step.upd) != groups or len(step.numerators) != m:
            raise ValueError(
                f"step {s} does not fit the engine: it needs {2 * m} losses, {m} numerators "
                f"and {groups} (m, k) pairs; it has {len(step.losses)}, "
                f"{len(step.numerators)} and {len(step.upd)}"
            )
        words = [loss_word(x) for x in step.losses[: 2 * m]]
        upd = np.array(step.upd, dtype=np.int64).reshape(groups, 2)
        parts.append(np.concatenate([upd[:, 0], upd[:, 1], step.numerators, words]))
    return np.concatenate(parts).astype(np.int32)


def read_replay(data: bytes, config: EngineConfig, steps: int) -> Replay:
    """The test bench's output as a :class:`~.engine_cosim.Replay` (lanes as int64)."""
    out, at, lanes, size = Replay(), 0, config.lanes, len(config.init)
    for _ in range(steps):
        cycles, rows = np.frombuffer(data, dtype="<i8", count=2, offset=at)
        at += 16
        streamed = np.frombuffer(data, dtype="<i4", count=int(rows) * lanes, offset=at)
        at += streamed.nbytes
        memory = np.frombuffer(data, dtype="<i4", count=size, offset=at)
        at += memory.nbytes
        out.cycles.append(int(cycles))
        out.streamed.append(streamed.astype(np.int64))
        out.memory.append(memory.astype(np.int64))
    if at != len(data):
        raise RuntimeError(f"the test bench wrote {len(data)} bytes, {at} expected")
    return out


def replay_compiled(
    engine: Engine,
    rec: Record,
    steps: int | None = None,
    stream: bool = True,
    rebuild: bool = False,
) -> Replay:
    """:func:`.engine_cosim.replay` on the compiled engine: the same :class:`Replay`.

    ``stream=False`` leaves out the streamed rows (``2m`` copies of the weights per step;
    the replay's ``streamed`` are then empty), for long runs recorded without reads.
    ``timing`` holds ``compile_s`` (0 when the executable was cached; ``rebuild`` compiles it
    even then, see :func:`build_engine`) and ``run_s``.
    """
    todo = rec.steps[: len(rec.steps) if steps is None else steps]
    built = build_engine(engine, rebuild)
    with tempfile.TemporaryDirectory(prefix="edgezo-cxxrtl-") as tmp:
        src, dst = Path(tmp) / "run.bin", Path(tmp) / "replay.bin"
        run_words(engine.config, todo, stream).tofile(src)
        start = time.perf_counter()
        done = subprocess.run([str(built.path), str(src), str(dst)], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(
                f"the compiled engine ({built.path}) failed (exit {done.returncode}): "
                f"{done.stderr.strip()}"
            )
        out = read_replay(dst.read_bytes(), engine.config, len(todo))
    out.timing = {"compile_s": built.seconds or 0.0, "run_s": seconds}
    return out

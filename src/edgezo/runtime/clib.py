"""The compiled C step: find a C compiler, build ``c/edgezo_step.c`` once, load it with ctypes.

The shared library lives in the user's cache (:func:`edgezo.cache.cache_dir`,
``runtime/``), named by a hash of the sources, the compiler and its flags, and is
built into a temporary file then renamed, so concurrent first calls never load
a half-written library. :func:`load` does the same for any C source (the compiled
CPU passes of :mod:`edgezo.passes.compiled` use it). The structures below mirror
``c/edgezo_step.h`` field by field.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import time
import warnings
from functools import lru_cache
from pathlib import Path

from ..cache import cache_dir

#: The C sources shipped with the package.
SOURCE_DIR = Path(__file__).resolve().parent / "c"
SOURCES = ("edgezo_step.h", "edgezo_step.c")

#: Flags of the shared library: strict C99, every warning an error.
FLAGS = ("-std=c99", "-O3", "-Wall", "-Wextra", "-Werror", "-pedantic", "-shared", "-fPIC")

#: The CPU executor's build of the step: blocks of 256 elements (about 7 KB of stack).
CPU_FLAGS = (*FLAGS, "-DEZ_BLOCK=256")

#: Tuned for this CPU (the pool read: 6.6x a memory copy instead of 16.7x, the update 3x
#: faster; benchmarks/device_step.py); dropped if the compiler refuses it. The library's
#: name then hashes this CPU's identity too, so a cache shared by machines never loads
#: code built for another CPU. On x86-64, 512-bit vectors where the CPU has them (GCC
#: otherwise keeps 256: the hash passes ran 1.3-1.5x slower; no effect on the values).
NATIVE = ("-march=native",) + (
    ("-mprefer-vector-width=512",) if platform.machine().lower() in ("x86_64", "amd64") else ()
)

#: Status codes of the C functions (``enum ez_status``) and what to change.
STATUS = {
    1: "the C step refused the source (unknown kind, empty pool, bits or width out of range)",
    2: "the C step refused a tensor (int8/int16 only; factor rows must be 1 or one per channel)",
    3: "the C step's work area is too small for the terms of this call",
}

#: Seconds the last compilation took (``None``: the library came from the cache).
BUILD = {"seconds": None, "path": None}


class CompilerMissing(RuntimeError):
    """No C compiler was found to build the device step (set ``CC`` or install ``cc``)."""


def compiler() -> str:
    """The C compiler: ``$CC``, else the first of ``cc``, ``gcc``, ``clang`` on ``PATH``."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name) or name
    raise CompilerMissing(
        "edgezo.runtime needs a C compiler to build the device step (c/edgezo_step.c) and none "
        "was found: install one (e.g. `apt install gcc`, Xcode's command line tools) or set CC "
        "to its path; the Python path (FixedPointFormat) trains without it."
    )


def source_text() -> bytes:
    """The C sources, concatenated (what the library's name hashes)."""
    return b"".join((SOURCE_DIR / name).read_bytes() for name in SOURCES)


def library_path(
    cc: str, text: bytes | None = None, stem: str = "edgezo_step", flags: tuple = FLAGS
) -> Path:
    """Where the library of ``text`` (default: the C step's sources), this compiler, its
    ``flags`` and this CPU is cached."""
    text = source_text() if text is None else text
    key = hashlib.sha256(text + cc.encode() + " ".join(flags + NATIVE).encode() + cpu_identity())
    return cache_dir() / "runtime" / f"{stem}-{key.hexdigest()[:16]}.so"


def cpu_identity() -> bytes:
    """This CPU's model and feature flags (``/proc/cpuinfo``), else the platform's name."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    wanted = ("model name", "flags", "Features", "CPU part")
    found = sorted({line for line in lines if line.split(":")[0].strip() in wanted})
    return "\n".join(found or [platform.platform(), platform.processor()]).encode()


def build(
    cc: str, target: Path, main: Path = SOURCE_DIR / "edgezo_step.c", flags: tuple = FLAGS
) -> float:
    """Compile ``main`` (default: the C step) into ``target`` atomically, with ``-march=native``
    unless the compiler refuses it; returns the seconds it took."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    start = time.perf_counter()
    try:
        refused = None
        for tried in (flags + NATIVE, flags):
            cmd = [cc, *tried, str(main), "-o", tmp, "-lm"]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode == 0:
                break
            refused = refused or done.stderr.strip().splitlines()[:1]
        if done.returncode == 0 and refused is not None:  # built, but not tuned: say so
            warnings.warn(
                f"edgezo: {main.name} was built without {' '.join(NATIVE)}, which the compiler "
                f"refused ({' '.join(refused) or 'no message'}): it runs, more slowly",
                stacklevel=2,
            )
        if done.returncode != 0:
            raise RuntimeError(f"Compiling {main.name} failed ({' '.join(cmd)}):\n{done.stderr}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return time.perf_counter() - start


def load(main: Path, text: bytes, stem: str, flags: tuple = FLAGS) -> tuple[ctypes.CDLL, dict]:
    """Build ``main`` once (cached, see :func:`library_path`) and load it with ctypes.

    ``text`` is what names the library (the sources it includes). Returns the library and
    ``{"seconds": compile time or None if cached, "path": ...}``.
    """
    cc = compiler()
    path = library_path(cc, text, stem, flags)
    seconds = None if path.exists() else build(cc, path, main, flags)
    return ctypes.CDLL(str(path)), {"seconds": seconds, "path": str(path)}


def load_optional(
    main: Path, text: bytes, stem: str, flags: tuple, what: str
) -> tuple[ctypes.CDLL | None, dict]:
    """:func:`load` for code with a fallback: ``(None, {"error": why})`` instead of raising.

    Without a compiler silently; with a compiler that fails (a broken toolchain) with a
    warning that ``what`` (e.g. "compiled hardware-RNG passes") falls back. Otherwise the
    library and :func:`load`'s record, with ``"error": None``.
    """
    try:
        lib, built = load(main, text, stem, flags)
    except CompilerMissing as err:
        return None, {"seconds": None, "path": None, "error": str(err)}
    except (RuntimeError, OSError) as err:
        warnings.warn(f"edgezo: {what} unavailable, using torch: {err}", stacklevel=3)
        return None, {"seconds": None, "path": None, "error": str(err)}
    return lib, {**built, "error": None}


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    """The loaded C step (compiled on the first call; see :data:`BUILD` for its time)."""
    lib, built = load(SOURCE_DIR / "edgezo_step.c", source_text(), "edgezo_step", CPU_FLAGS)
    if built["seconds"] is not None:
        BUILD["seconds"] = built["seconds"]
    BUILD["path"] = built["path"]
    return declare(lib)


class Source(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int32), ("bits", ctypes.c_uint32), ("width", ctypes.c_uint32),
        ("taps", ctypes.c_uint32), ("steps", ctypes.c_uint32), ("n_regs", ctypes.c_uint32),
        ("seeds", ctypes.c_void_p), ("table", ctypes.c_void_p), ("size", ctypes.c_uint64),
        ("edges", ctypes.c_void_p), ("n_edges", ctypes.c_uint32), ("z_min", ctypes.c_int32),
        ("index", ctypes.c_void_p),
    ]  # fmt: skip


#: ``EZ_INDEX_SHIFT``: the optional step index has one entry per ``v >> INDEX_SHIFT``.
INDEX_SHIFT = 12


class Term(ctypes.Structure):
    _fields_ = [
        ("base", ctypes.c_uint64), ("step", ctypes.c_uint64), ("query", ctypes.c_uint64),
        ("net", ctypes.c_int32),
    ]  # fmt: skip


class Cursor(ctypes.Structure):
    _fields_ = [
        ("pos", ctypes.c_uint64), ("reg", ctypes.c_uint32), ("j", ctypes.c_uint32),
        ("cm", ctypes.c_uint32), ("regs", ctypes.c_void_p), ("step", ctypes.c_uint64),
        ("query", ctypes.c_uint64), ("k1", ctypes.c_uint32), ("k2", ctypes.c_uint32),
    ]  # fmt: skip


class Work(ctypes.Structure):
    _fields_ = [
        ("cursors", ctypes.c_void_p), ("words", ctypes.c_void_p),
        ("terms", ctypes.c_size_t), ("words_len", ctypes.c_size_t),
    ]  # fmt: skip


class Tensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p), ("elem", ctypes.c_uint32), ("rows", ctypes.c_size_t),
        ("cols", ctypes.c_size_t), ("qmax", ctypes.c_int32), ("mask", ctypes.c_void_p),
    ]  # fmt: skip


class Factors(ctypes.Structure):
    _fields_ = [("m", ctypes.c_void_p), ("k", ctypes.c_void_p), ("count", ctypes.c_size_t)]


class ReadParams(ctypes.Structure):
    _fields_ = [
        ("one", ctypes.c_int32), ("m_dz", ctypes.c_int64), ("k_dz", ctypes.c_int32),
        ("eps_q", ctypes.c_void_p), ("eps_count", ctypes.c_size_t),
    ]  # fmt: skip


def declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Argument and result types of the library's functions."""
    ptr, p = ctypes.c_void_p, ctypes.POINTER
    lib.ez_read.argtypes = [p(Source), p(Tensor), ptr, p(ReadParams), ptr, ctypes.c_size_t, p(Work)]
    lib.ez_update.argtypes = [p(Source), p(Tensor), p(Factors), ptr, ctypes.c_size_t, p(Work)]
    size = ctypes.c_size_t
    lib.ez_read_range.argtypes = [*lib.ez_read.argtypes, size, size]
    lib.ez_update_range.argtypes = [*lib.ez_update.argtypes, size, size]
    lib.ez_decay.argtypes = [p(Tensor), p(Factors)]
    lib.ez_stream.argtypes = [p(Source), ctypes.c_uint64, ptr, ctypes.c_size_t, p(Work)]
    lib.ez_requant.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_int32]
    lib.ez_requant.restype = ctypes.c_int64
    lib.ez_state_bytes.argtypes = [p(Source), ctypes.c_size_t, ctypes.c_size_t, ctypes.c_uint64]
    lib.ez_state_bytes.restype = ctypes.c_uint64
    for name in (
        "ez_read",
        "ez_update",
        "ez_read_range",
        "ez_update_range",
        "ez_decay",
        "ez_stream",
    ):
        getattr(lib, name).restype = ctypes.c_int
    return lib


def check(status: int) -> None:
    """Raise with the reason if a C function returned an error status."""
    if status:
        raise RuntimeError(f"{STATUS.get(status, f'unknown status {status}')} (status {status})")

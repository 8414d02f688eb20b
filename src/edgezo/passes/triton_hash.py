"""The counter sources' numbers in Triton: the same bits as :mod:`edgezo.directions.counter`.

Device functions (``@triton.jit``, inlined into the pass kernels of
:mod:`edgezo.passes.triton_perturb`) and one sampling kernel used by tests and by
:func:`sample`. Per element, for global index ``g`` and the keys ``(k1, k2)`` of
perturbation ``(step, query)`` and block ``g >> 32`` (computed on the host by
:func:`edgezo.directions.hashing.keys`):

* ``x = lowbias32(lowbias32((g mod 2**32) ^ k1) ^ k2)`` in uint32 — bit-exact;
* Rademacher ``1 - 2 (x >> 31)`` and Uniform ``sqrt(3) * u`` with
  ``u = (x >> 8) 2**-23 - (1 - 2**-24)`` — bit-exact (exact integer-to-float steps,
  then the same single float32 rounding of the product as the torch path);
* Gaussian ``sqrt(2) * erfinv(u)`` — not bit-exact: the CPU path uses torch's
  ``erfinv`` (a rational guess and two Newton steps with ``erf``), which a kernel
  cannot afford per element at memory speed. Here ``erfinv`` is M. Giles'
  single-precision polynomial ("Approximating the erfinv function", GPU
  Computing Gems, 2011): one ``log``, one ``sqrt`` and nine FMAs. Over all ``2**24``
  possible ``u`` it is within :data:`ERFINV_ULPS` float32 ulps of torch's
  ``erfinv`` (measured in the interpreter; ``log`` is libdevice's ``logf`` on the
  GPU, within 1 ulp as numpy's is, and ``benchmarks/gpu_step.py`` reports the GPU's
  difference). After ``* eps`` and rounding to the weight dtype the step
  ``a = round(eps z)`` is almost always identical, else one ulp of the weight dtype apart.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.language.extra import libdevice

from ..directions.hashing import keys

if TYPE_CHECKING:
    from ..directions.base import KernelSpec

#: ``KIND`` codes of the kernels: the raw hash word, then one per hashed kernel-spec kind.
WORDS, GAUSSIAN, RADEMACHER, UNIFORM = 0, 1, 2, 3
KINDS = {"gaussian": GAUSSIAN, "rademacher": RADEMACHER, "uniform": UNIFORM}

#: Largest difference, in float32 ulps, between the kernel's and torch's ``erfinv(u)``
#: over every ``u`` the hash can produce (tests/test_passes_triton.py checks it).
ERFINV_ULPS = 3

#: Elements per program of the sampling kernel.
SAMPLE_BLOCK = 1024


def interpreted() -> bool:
    """Whether Triton runs these kernels in its CPU interpreter (``TRITON_INTERPRET=1`` when
    this module was imported: ``triton.jit`` decides then)."""
    return type(_sample_kernel).__name__ == "InterpretedFunction"


def kind_code(spec: KernelSpec) -> int:
    """The ``KIND`` code of a hashed kernel spec."""
    if spec.kind not in KINDS:
        raise TypeError(f"No hash kernel for kind {spec.kind!r}; kernels exist for {list(KINDS)}")
    return KINDS[spec.kind]


def key_table(seed: int, step: int, query: int, end: int) -> list[int]:
    """``[k1, k2]`` for every block of ``2**32`` indices below ``end``, plus the next block
    (a program reads the keys of its first block and of the one after it)."""
    table: list[int] = []
    for block in range(max(0, end - 1 >> 32) + 2):
        table.extend(keys(seed, step, query, block))
    return table


@triton.jit
def lowbias32(x):
    """C. Wellons' 32-bit integer hash on uint32 (wrapping multiply, logical shifts)."""
    x ^= x >> 16
    x *= 0x7FEB352D
    x ^= x >> 15
    x *= 0x846CA68B
    x ^= x >> 16
    return x


@triton.jit
def hash_word(g, first, keys_ptr):
    """The 32-bit word ``x`` of global indices ``g`` (int64, none below ``first``, fewer than
    ``2**32`` past it) from the key table at ``keys_ptr``: four scalar loads per program."""
    block = (first >> 32).to(tl.int32)
    upper = (g >> 32).to(tl.int32) != block
    k1 = tl.where(upper, tl.load(keys_ptr + 2 * block + 2), tl.load(keys_ptr + 2 * block))
    k2 = tl.where(upper, tl.load(keys_ptr + 2 * block + 3), tl.load(keys_ptr + 2 * block + 1))
    return lowbias32(lowbias32(g.to(tl.uint32) ^ k1.to(tl.uint32)) ^ k2.to(tl.uint32))


@triton.jit
def symmetric_unit(x):
    """``u = (2 (x >> 8) + 1 - 2**24) / 2**24`` in float32, exact."""
    return (x >> 8).to(tl.float32) * 1.1920928955078125e-07 - 0.999999940395355224609375


@triton.jit
def erfinv(u, PRECISE_LOG: tl.constexpr):
    """Giles' single-precision ``erfinv`` for ``|u| < 1``, both branches as one polynomial."""
    t = tl.fma(-u, u, 1.0)  # 1 - u^2 rounded once: exact enough near |u| = 1
    w = -libdevice.log(t) if PRECISE_LOG else -tl.log(t)
    central = w < 5.0
    v = tl.where(central, w - 2.5, tl.sqrt_rn(w) - 3.0)
    p = tl.where(central, 2.81022636e-08, -0.000200214257)
    p = tl.fma(p, v, tl.where(central, 3.43273939e-07, 0.000100950558))
    p = tl.fma(p, v, tl.where(central, -3.5233877e-06, 0.00134934322))
    p = tl.fma(p, v, tl.where(central, -4.39150654e-06, -0.00367342844))
    p = tl.fma(p, v, tl.where(central, 0.00021858087, 0.00573950773))
    p = tl.fma(p, v, tl.where(central, -0.00125372503, -0.0076224613))
    p = tl.fma(p, v, tl.where(central, -0.00417768164, 0.00943887047))
    p = tl.fma(p, v, tl.where(central, 0.246640727, 1.00167406))
    p = tl.fma(p, v, tl.where(central, 1.50140941, 2.83297682))
    return p * u


@triton.jit
def counter_value(x, KIND: tl.constexpr, PRECISE_LOG: tl.constexpr):
    """``z`` (float32) of hash words ``x`` for source ``KIND`` (see the module docstring)."""
    if KIND == 1:
        z = erfinv(symmetric_unit(x), PRECISE_LOG) * 1.4142135623730951
    elif KIND == 2:
        z = 1.0 - 2.0 * (x >> 31).to(tl.float32)
    else:
        z = symmetric_unit(x) * 1.7320508075688772
    return z


@triton.jit
def _sample_kernel(
    out_ptr,
    words_ptr,
    keys_ptr,
    offset,
    n,
    scale,
    KIND: tl.constexpr,
    FROM_WORDS: tl.constexpr,
    PRECISE_LOG: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """``out[r] = z[offset + r]`` (or the hash word, ``KIND == 0``), for ``r < n``."""
    start = tl.program_id(0).to(tl.int64) * BLOCK
    r = start + tl.arange(0, BLOCK)
    inside = r < n
    if FROM_WORDS:
        x = tl.load(words_ptr + r, mask=inside).to(tl.uint32, bitcast=True)
    else:
        x = hash_word(offset + r, offset + start, keys_ptr)
    if KIND == 0:
        tl.store(out_ptr + r, x.to(tl.int32, bitcast=True), mask=inside)
    else:
        tl.store(out_ptr + r, counter_value(x, KIND, PRECISE_LOG) * scale, mask=inside)


def on_device(device: torch.device) -> contextlib.AbstractContextManager:
    """Launch on the tensors' GPU (Triton launches on the current CUDA device)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _launch_sample(
    kind: int, out: Tensor, words: Tensor | None, table: list[int], offset: int, scale: float
) -> Tensor:
    n = out.numel()
    if n:
        keys_t = torch.tensor(table, dtype=torch.int64, device=out.device)
        grid = (triton.cdiv(n, SAMPLE_BLOCK),)
        with on_device(out.device):
            _sample_kernel[grid](
                out,
                out if words is None else words,
                keys_t,
                offset,
                n,
                scale,
                KIND=kind,
                FROM_WORDS=words is not None,
                PRECISE_LOG=not interpreted(),
                BLOCK=SAMPLE_BLOCK,
            )
    return out


def hash_words(
    seed: int, step: int, query: int, offset: int, n: int, device: torch.device | str
) -> Tensor:
    """The kernel's hash words for indices ``offset .. offset+n-1``, as int32 (uint32 bits)."""
    out = torch.empty(n, dtype=torch.int32, device=device)
    return _launch_sample(WORDS, out, None, key_table(seed, step, query, offset + n), offset, 1.0)


def sample(
    spec: KernelSpec, step: int, query: int, offset: int, n: int, device: torch.device | str
) -> Tensor:
    """The kernel's ``z(step, query)[offset : offset + n]`` (float32) of a hashed kernel spec."""
    kind = kind_code(spec)
    out = torch.empty(n, dtype=torch.float32, device=device)
    table = key_table(spec.seed, step, query, offset + n)
    return _launch_sample(kind, out, None, table, offset, spec.factor(step, query))


def values_of_words(kind: int, words: Tensor) -> Tensor:
    """``z`` (float32) of given hash words (int32 bits): tests the value maps on chosen inputs."""
    out = torch.empty(words.numel(), dtype=torch.float32, device=words.device)
    return _launch_sample(kind, out, words.contiguous(), [0, 0], 0, 1.0)

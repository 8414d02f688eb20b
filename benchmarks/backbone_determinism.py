"""Does pretraining give the same bytes on another CPU? The demo's SmallCNN pretrained on this
CPU and on emulated ones, with torch's own kernel choices and in a portable run.

Prints JSON: per setting the SHA-256 of the pretrained state dict, the largest weight
difference from the first setting's, and the wall seconds. torch picks its CPU kernels at run
time (by instruction set, thread count, library), so an unpinned run is a property of the
CPU; a portable run (:mod:`edgezo.models.portable`, what ``edgezo demo`` pretrains with) pins
them. Other CPUs are emulated by ``qemu-x86_64 -cpu MODEL`` (Debian ``qemu-user``): MKL,
oneDNN, NNPACK, aten and glibc read the emulated CPU's features and take their other code
paths (Haswell: AVX2 and FMA; Nehalem: SSE4.2, no AVX), at a tenth of the speed or less.

    python benchmarks/backbone_determinism.py [--steps 200] [--out FILE]   # ~1 hour at 200 steps
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import replace

import torch
from _common import emit_json, provenance

from edgezo.models.portable import PORTABLE_ENV, run_portable, state_digest
from edgezo.studies.demo import PRETRAIN_TARGET, QUICK, pretrain_arguments

#: Emulated CPUs: name -> qemu's ``-cpu`` model.
EMULATED = {"Haswell (AVX2, FMA)": "Haswell", "Nehalem (SSE4.2)": "Nehalem"}


def settings() -> dict[str, tuple[tuple[str, ...], bool, dict[str, str]]]:
    """name -> (command prefix, pinned, extra environment); the first is the reference."""
    out: dict[str, tuple[tuple[str, ...], bool, dict[str, str]]] = {
        "this CPU, portable": ((), True, {}),
        "this CPU, torch's kernels, 1 thread": ((), False, {"OMP_NUM_THREADS": "1"}),
        "this CPU, torch's kernels, 2 threads": ((), False, {"OMP_NUM_THREADS": "2"}),
    }
    for name, model in EMULATED.items():
        out[f"emulated {name}, portable"] = (("qemu-x86_64", "-cpu", model), True, {})
    # torch's kernels on a CPU without AVX (emulated AVX2 is too slow to add a row for it)
    nehalem = ("qemu-x86_64", "-cpu", EMULATED["Nehalem (SSE4.2)"])
    out["emulated Nehalem (SSE4.2), torch's kernels, 1 thread"] = (
        nehalem, False, {"OMP_NUM_THREADS": "1"})  # fmt: skip
    return out


def kernel_libraries() -> list[str]:
    """MKL's and oneDNN's versions from torch's build configuration (whose kernels it picks)."""
    lines = (line.strip(" -") for line in torch.__config__.show().splitlines())
    return [line for line in lines if line.startswith("Intel(R)")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=QUICK.pretrain_steps,
                        help="pretraining steps (demo --quick: 200, the demo: 1000)")  # fmt: skip
    parser.add_argument("--out", help="also write the JSON to this file")
    args = parser.parse_args()
    if shutil.which("qemu-x86_64") is None:
        parser.error("needs qemu-x86_64 for the emulated CPUs: apt-get install qemu-user")
    kwargs = pretrain_arguments(replace(QUICK, pretrain_steps=args.steps))
    out, reference = {}, None
    for name, (prefix, pinned, env) in settings().items():
        start = time.perf_counter()
        state = run_portable(PRETRAIN_TARGET, kwargs, prefix=prefix, pinned=pinned, env=env)
        seconds = time.perf_counter() - start
        reference = reference or state
        diff = max((state[k].float() - reference[k].float()).abs().max().item() for k in state)
        out[name] = {"sha256": state_digest(state)[:16], "max_abs_diff_vs_first": diff,
                     "cpu": " ".join(prefix[2:]) or "this", "pinned": pinned,
                     "env": PORTABLE_ENV if pinned else env, "seconds": round(seconds, 1)}  # fmt: skip
    emit_json({"benchmark": "backbone_determinism", "env": provenance(), "steps": args.steps,
               "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "libraries": kernel_libraries(), "settings": out}, args.out)  # fmt: skip


if __name__ == "__main__":
    main()

"""Does pretraining give the same bytes on another CPU? The demo's SmallCNN pretrained under
settings that change which kernels run, one fresh process (and fresh cache) each.

Prints JSON: per setting the SHA-256 of the pretrained state dict and the largest weight
difference from the first setting. torch picks its CPU kernels at run time: its own
vectorized kernels by the CPU's ISA (``ATEN_CPU_CAPABILITY`` caps it), oneDNN's
convolutions likewise (``ONEDNN_MAX_CPU_ISA``), MKL's GEMMs by CPU and thread count
(``MKL_CBWR`` fixes its code path); the thread count changes how sums are split. Capping
them here emulates a CPU with fewer instructions on this one.

    python benchmarks/backbone_determinism.py [--steps 200] [--out FILE]   # ~1 minute per setting
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from _common import emit_json, provenance

#: name -> (torch threads, environment); the first is the reference.
SETTINGS: dict[str, tuple[int, dict[str, str]]] = {
    "this CPU, 1 thread": (1, {}),
    "this CPU, 2 threads": (2, {}),
    "AVX2 kernels (aten, oneDNN, MKL), 1 thread": (
        1, {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}),
    "portable: scalar aten, SSE4.1 oneDNN, MKL compatible, 1 thread": (
        1, {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
            "MKL_CBWR": "COMPATIBLE"}),
    "portable, 2 threads asked (the same caps)": (
        2, {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
            "MKL_CBWR": "COMPATIBLE"}),
}  # fmt: skip

CHILD = """
import sys, torch
from dataclasses import replace
from edgezo.studies.demo import QUICK, pretrain
torch.set_num_threads(int(sys.argv[1]))
model, cached, _ = pretrain(replace(QUICK, pretrain_steps=int(sys.argv[2])), progress=False)
assert not cached
torch.save(model.state_dict(), sys.argv[3])
"""


def pretrain_in_child(threads: int, env: dict[str, str], steps: int, out: Path) -> None:
    """The demo's pretraining in a fresh process with ``env`` and a fresh cache."""
    with tempfile.TemporaryDirectory() as cache:
        full = {**os.environ, **env, "EDGEZO_CACHE": cache, "OMP_NUM_THREADS": str(threads)}
        subprocess.run([sys.executable, "-c", CHILD, str(threads), str(steps), str(out)],
                       env=full, check=True)  # fmt: skip


def digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].contiguous().numpy().tobytes())
    return h.hexdigest()


def kernel_libraries() -> list[str]:
    """MKL's and oneDNN's versions from torch's build configuration (whose kernels it picks)."""
    lines = (line.strip(" -") for line in torch.__config__.show().splitlines())
    return [line for line in lines if line.startswith("Intel(R)")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps", type=int, default=200, help="pretraining steps (demo quick: 200)"
    )
    parser.add_argument("--out", help="also write the JSON to this file")
    args = parser.parse_args()
    out, reference = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (threads, env)) in enumerate(SETTINGS.items()):
            path = Path(tmp) / f"{i}.pt"
            pretrain_in_child(threads, env, args.steps, path)
            state = torch.load(path)
            reference = reference or state
            diff = max((state[k].float() - reference[k].float()).abs().max().item() for k in state)
            out[name] = {"sha256": digest(state)[:16], "max_abs_diff_vs_first": diff, "env": env,
                         "threads": threads}  # fmt: skip
    emit_json({"benchmark": "backbone_determinism", "env": provenance(), "steps": args.steps,
               "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "libraries": kernel_libraries(), "settings": out}, args.out)  # fmt: skip


if __name__ == "__main__":
    main()

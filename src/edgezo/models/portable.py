"""Portable pretraining: the same backbone bytes on any x86-64 CPU, at any thread count.

torch picks its CPU kernels when it runs, so a seeded float training is a property of the
machine: aten's vectorized kernels follow the CPU's instruction set (``AVX512``, ``AVX2`` or
scalar ``DEFAULT``), convolutions go to oneDNN or NNPACK where the CPU has what they need,
MKL's GEMMs and vector math follow the CPU and the threads, and the thread count splits every
parallel sum. Even ``torch.sqrt`` is MKL's vector square root, not the correctly rounded one,
and its last bit depends on the CPU: Adam's denominator differs from the first step on.

A portable run fixes each of these (:func:`run_portable`): a fresh process with
:data:`PORTABLE_ENV` (one thread, aten's scalar kernels, MKL's ``COMPATIBLE`` code path),
oneDNN and NNPACK off (:func:`pin_kernels`; convolutions then run as im2col and MKL GEMM),
and :class:`Adam`, whose square root is :func:`exact_sqrt`. It costs speed (scalar kernels,
one thread) and is meant for pretraining, which runs once per machine and is then cached.

``python benchmarks/backbone_determinism.py`` pretrains the demo's backbone under emulated
CPUs (``qemu-x86_64 -cpu Haswell``: AVX2 and FMA; ``-cpu Nehalem``: SSE4.2), where MKL, aten
and glibc take their other code paths, and prints each run's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

#: The environment of a portable run's process, set before torch loads (torch reads it once).
PORTABLE_ENV: dict[str, str] = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
}


def exact_sqrt(t: Tensor) -> Tensor:
    """The correctly rounded square root of a float32 tensor, on any CPU.

    Computed in float64 and rounded once. For a float32 ``x`` the exact root is at least four
    float64 ulps away from any float32 rounding boundary (``x`` is not the square of a 25-bit
    midpoint), so a float64 root within one ulp, which MKL's is, rounds to the correctly
    rounded float32 root.
    """
    if t.dtype != torch.float32:
        raise TypeError(f"exact_sqrt takes float32 tensors, got {t.dtype}")
    return t.double().sqrt().float()


class Adam(torch.optim.Optimizer):
    """Adam (Kingma and Ba 2015) as ``torch.optim.Adam`` computes it without weight decay or
    AMSGrad, with :func:`exact_sqrt` for the denominator: the same update on any CPU.

    ``p -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)``, in torch's order
    of operations (``math.sqrt`` of the bias correction, correctly rounded, as torch's).
    Learning-rate schedulers (also ``OneCycleLR``, which cycles ``betas[0]``) work as with
    torch's.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if lr < 0 or eps < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam needs lr >= 0, eps >= 0 and betas in [0, 1); got "
                             f"lr={lr}, eps={eps}, betas={betas}")  # fmt: skip
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # noqa: D102 (torch.optim.Optimizer.step)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(p),
                                 exp_avg_sq=torch.zeros_like(p))  # fmt: skip
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(p.grad, 1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = (exact_sqrt(v) / math.sqrt(1 - beta2**t)).add_(group["eps"])
                p.addcdiv_(m, denom, value=-group["lr"] / (1 - beta1**t))
        return loss


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (the first ``model name`` of ``cpuinfo``; where there is none,
    ``platform.processor()``): torch's kernels, and so a float result's last digits, follow it."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown"


def state_digest(state: Mapping[str, Tensor]) -> str:
    """SHA-256 (hex) of a ``state_dict``'s names and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def pin_kernels() -> None:
    """In a process started with :data:`PORTABLE_ENV`: one thread, no oneDNN, no NNPACK.

    Raises:
        RuntimeError: the process was not started with :data:`PORTABLE_ENV` (torch had
            already chosen its kernels): use :func:`run_portable`.
    """
    missing = {k: v for k, v in PORTABLE_ENV.items() if os.environ.get(k) != v}
    capability = torch.backends.cpu.get_cpu_capability()
    if missing or capability != "DEFAULT":
        raise RuntimeError(
            f"a portable run needs a process started with {PORTABLE_ENV} (missing {missing}; "
            f"torch's kernels: {capability}): start it with edgezo.models.portable.run_portable"
        )
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)


def run_portable(
    target: str,
    kwargs: Mapping[str, Any],
    *,
    prefix: Sequence[str] = (),
    pinned: bool = True,
    env: Mapping[str, str] | None = None,
) -> dict[str, Tensor]:
    """Call ``target`` (``"module:function"``, returning a ``state_dict``) with ``kwargs``
    (plain JSON) in a fresh process whose kernels are pinned (:func:`pin_kernels`), and return
    its ``state_dict``.

    Args:
        prefix: a command to run the process under (``("qemu-x86_64", "-cpu", "Nehalem")``:
            another CPU).
        pinned: ``False`` runs the process with torch's own kernel choices (for measuring
            what pinning changes).
        env: more environment for the process (:data:`PORTABLE_ENV` wins where pinned). Its
            ``PYTHONPATH`` is this process's ``sys.path`` unless ``env`` names one.

    Raises:
        RuntimeError: the process failed (its output went to this process's stderr).
    """
    search_path = os.pathsep.join(p for p in sys.path if p)  # what this process can import
    env = {**os.environ, "PYTHONPATH": search_path, **(env or {}),
           **(PORTABLE_ENV if pinned else {})}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edgezo-portable-") as tmp:
        out = Path(tmp) / "state.pt"
        command = [*prefix, sys.executable, "-m", __name__, target, json.dumps(dict(kwargs)),
                   str(out), "pinned" if pinned else "unpinned"]  # fmt: skip
        with subprocess.Popen(command, env=env) as process:
            try:
                code = process.wait()
            except KeyboardInterrupt:  # Ctrl-C reached the child too: let it save its checkpoint
                process.wait()
                raise
        if code != 0 or not out.is_file():
            raise RuntimeError(
                f"the portable run of {target} failed (exit {code}); its output is above"
            )
        return torch.load(out, map_location="cpu", weights_only=True)


def main(argv: Sequence[str]) -> None:
    """``python -m edgezo.models.portable MODULE:FUNCTION KWARGS_JSON OUT pinned|unpinned``."""
    target, kwargs, out, mode = argv
    if mode == "pinned":
        pin_kernels()
    module, _, function = target.partition(":")
    state = getattr(import_module(module), function)(**json.loads(kwargs))
    torch.save({k: v.detach().cpu() for k, v in state.items()}, out)


if __name__ == "__main__":
    main(sys.argv[1:])

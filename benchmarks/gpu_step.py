"""A ZO step on OPT shapes on a GPU: MeZO-style reference vs edgezo (fused kernels).

MeZO (PAPERS.md) fine-tunes OPT models with two forward passes per step; its
perturbation passes (a ``torch.normal`` per tensor, out-of-place updates) make a
step cost 2.36x two forwards on OPT-1.3B (fp16, batch 16 x 256, H100) and 1.98x
on OPT-13B (issue 8). This script measures, on one device and in one run:

* ``ms.forward``: one forward + loss (``labels = input_ids``) under ``torch.no_grad``;
* ``ms.mezo_step``: MeZO's step as its code does it (:class:`MezoStyle`: a
  generator re-seeded per pass, ``z = torch.normal`` per tensor,
  ``param.data = param.data + scale * z * eps``; +1, -2, +1, then the update);
* ``ms.edgezo_step_gaussian`` / ``ms.edgezo_step_pool``: ``ZO.step`` (central,
  one query) with :class:`~edgezo.directions.Gaussian` and
  :class:`~edgezo.directions.Pool` (its default, a prime near ``2**20``); on CUDA with triton
  the passes are the fused kernels of :mod:`edgezo.passes` (``"kernels": true``);
* ``step_over_two_forwards``: each step's median over two forward medians (target
  for edgezo: <= 1.15x);
* ``pass_ms``: one perturbation pass over all weights: a plain memory pass
  (``torch._foreach_mul_(params, 1.0)``: read and write every weight once), MeZO's
  ``zo_perturb_parameters``, edgezo's Gaussian and Pool pass (``passes.apply_``);
  ``pass_over_memory`` their ratios (target: <= 1.3x);
* ``peak_memory`` (CUDA): ``torch.cuda.max_memory_allocated`` of each step over
  that of the forward alone (target: <= 1.02x); ``null`` on the CPU;
* ``gaussian_kernel_vs_cpu`` (when the kernels run): largest relative difference
  and ulps between the device's Gaussian ``z`` and the CPU reference over 2**20 values.

Models: ``OPTConfig`` shapes with random weights (no download): ``1.3b``
(hidden 2048, 24 layers), ``13b`` (5120, 40 layers), ``small`` (OPT-125m: 768,
12 layers) for a quick check, ``tiny`` for a CPU smoke test. Medians over
``--repeats`` rounds; in every round each measurement runs once, in rotating order.

Usage::

    python benchmarks/gpu_step.py --model 1.3b            # GPU; prints JSON
    python benchmarks/gpu_step.py --model 13b --out opt13b.json
    python benchmarks/gpu_step.py --model tiny --device cpu --repeats 2   # smoke test
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from _common import MezoStyle, emit_json

SHAPES: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=256),
    "small": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, ffn_dim=3072),
    "1.3b": dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=32, ffn_dim=8192),
    "13b": dict(hidden_size=5120, num_hidden_layers=40, num_attention_heads=40, ffn_dim=20480),
}
VOCAB = {"tiny": 1000}  # others: OPT's 50272
BATCH = {"tiny": (2, 32)}  # others: 16 x 256 (issue 8)
EPS, LR, POOL = 1e-3, 1e-7, 1_048_573  # Pool's default size (a prime)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=list(SHAPES), default="1.3b")
    parser.add_argument("--device", default=None, help="default: cuda if available, else skip")
    parser.add_argument(
        "--dtype",
        choices=["float16", "bfloat16", "float32"],
        default=None,
        help="default: float16 on CUDA, float32 on the CPU",
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    return parser.parse_args(argv)


def build_model(name: str, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    """OPT of the named shape, random weights, built directly in ``dtype`` on ``device``."""
    from transformers import OPTConfig, OPTForCausalLM

    shape = SHAPES[name]
    config = OPTConfig(
        **shape,
        word_embed_proj_dim=shape["hidden_size"],
        vocab_size=VOCAB.get(name, 50272),
        max_position_embeddings=2048,
        dropout=0.0,
        attention_dropout=0.0,
    )
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = OPTForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    return model.eval().requires_grad_(False)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Milliseconds of one call, the device's queue drained before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3


def medians(jobs: dict[str, Callable[[], Any]], repeats: int, warmup: int, device) -> dict:
    """Median milliseconds per job; each round runs every job once, in rotating order."""
    names = list(jobs)
    for _ in range(warmup):
        for name in names:
            jobs[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(timed(jobs[name], device))
    return {name: statistics.median(values) for name, values in times.items()}


def peak_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """``torch.cuda.max_memory_allocated`` during one call (weights included)."""
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device)


def pool_size(dim: int) -> int:
    """``POOL`` (Pool's default prime), or the next prime that does not divide ``dim``."""
    from edgezo.directions.pool import coprime_size

    return coprime_size(POOL, dim)


def ordered_bits(x: torch.Tensor) -> torch.Tensor:
    """float32 bits as integers in the order of the floats (differences count ulps)."""
    bits = x.view(torch.int32).long()
    return torch.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def gaussian_kernel_vs_cpu(device: torch.device) -> dict[str, float]:
    """The device kernel's Gaussian z against the CPU reference (float32), 2**20 values."""
    from edgezo.directions import Gaussian
    from edgezo.passes import triton_hash

    source, n = Gaussian(seed=1), 2**20
    got = triton_hash.sample(source.kernel_spec(), 3, 0, 2**31, n, device).cpu()
    want = source.sample(3, 0, 2**31, n)
    return {
        "max_relative": float(((got - want).abs() / want.abs()).max()),
        "max_ulps": int((ordered_bits(got) - ordered_bits(want)).abs().max()),
        "identical_fraction": float((got == want).double().mean()),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import edgezo.passes as zo_passes
    from edgezo import ZO
    from edgezo.directions import Gaussian, Pool

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("float16" if device.type == "cuda" else "float32"))
    torch.manual_seed(0)
    model = build_model(args.model, dtype, device)
    params = [p for p in model.parameters()]
    dim = sum(p.numel() for p in params)
    batch, seq = BATCH.get(args.model, (16, 256))
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), device=device)

    @torch.no_grad()
    def closure() -> torch.Tensor:
        return model(input_ids=ids, labels=ids).loss

    mezo = MezoStyle(params, LR, EPS)
    group = [{"params": params, "train_frozen": True}]  # the model is frozen for autograd only
    gauss = ZO(group, lr=LR, eps=EPS, directions=Gaussian(seed=0))
    pool = ZO(group, lr=LR, eps=EPS, directions=Pool(size=pool_size(dim), seed=0))
    segments = gauss.space.float_segments
    ones = [1.0] * len(segments)
    state = {"step": 0}

    def edgezo_pass(opt: ZO) -> Callable[[], None]:
        def one() -> None:  # a new perturbation each call, taken back by the next
            state["step"] += 1
            sign = 1.0 if state["step"] % 2 else -1.0
            step = [(state["step"] // 2, 0, [sign * k for k in ones])]
            zo_passes.apply_(opt.directions, segments, EPS, step)

        return one

    def mezo_pass() -> None:
        state["step"] += 1
        mezo.perturb(1.0 if state["step"] % 2 else -1.0)

    # edgezo first: MeZO's out-of-place passes (param.data = ...) replace the weights'
    # storages, which the optimizers' flat views and kernel tables point at
    edgezo_ms = medians(
        {
            "forward": closure,
            "edgezo_step_gaussian": lambda: gauss.step(closure),
            "edgezo_step_pool": lambda: pool.step(closure),
            "memory_pass": lambda: torch._foreach_mul_(params, 1.0),
            "gaussian_pass": edgezo_pass(gauss),
            "pool_pass": edgezo_pass(pool),
        },
        args.repeats,
        args.warmup,
        device,
    )
    peak = None
    if device.type == "cuda":
        inference = peak_bytes(closure, device)
        peak = {
            "inference_bytes": inference,
            "over_inference": {
                "edgezo_step_gaussian": peak_bytes(lambda: gauss.step(closure), device) / inference,
                "edgezo_step_pool": peak_bytes(lambda: pool.step(closure), device) / inference,
            },
        }
    uses_kernels = zo_passes.fused.plan(segments, zo_passes.mode) is not None
    accuracy = gaussian_kernel_vs_cpu(device) if uses_kernels else None
    mezo_ms = medians(
        {
            "forward": closure,
            "mezo_step": lambda: mezo.step(closure),
            "memory_pass": lambda: torch._foreach_mul_(params, 1.0),
            "mezo_pass": mezo_pass,
        },
        args.repeats,
        args.warmup,
        device,
    )
    if peak is not None:
        peak["over_inference"]["mezo_step"] = (
            peak_bytes(lambda: mezo.step(closure), device) / inference
        )
    steps = {
        "forward": edgezo_ms["forward"],
        "forward_mezo_rounds": mezo_ms["forward"],
        "mezo_step": mezo_ms["mezo_step"],
        "edgezo_step_gaussian": edgezo_ms["edgezo_step_gaussian"],
        "edgezo_step_pool": edgezo_ms["edgezo_step_pool"],
    }
    passes = {
        "memory": edgezo_ms["memory_pass"],
        "memory_mezo_rounds": mezo_ms["memory_pass"],
        "mezo": mezo_ms["mezo_pass"],
        "gaussian": edgezo_ms["gaussian_pass"],
        "pool": edgezo_ms["pool_pass"],
    }
    return {
        "device": {
            "type": device.type,
            "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        },
        "kernels": uses_kernels,
        "model": {
            "name": f"opt-{args.model}",
            "params": dim,
            "tensors": len(params),
            "dtype": str(dtype).removeprefix("torch."),
            "batch": batch,
            "seq": seq,
        },
        "repeats": args.repeats,
        "ms": steps,
        "step_over_two_forwards": {  # each over the forwards timed in the same rounds
            "mezo_step": mezo_ms["mezo_step"] / (2 * mezo_ms["forward"]),
            "edgezo_step_gaussian": edgezo_ms["edgezo_step_gaussian"] / (2 * edgezo_ms["forward"]),
            "edgezo_step_pool": edgezo_ms["edgezo_step_pool"] / (2 * edgezo_ms["forward"]),
        },
        "pass_ms": passes,
        "pass_over_memory": {
            "mezo": mezo_ms["mezo_pass"] / mezo_ms["memory_pass"],
            "gaussian": edgezo_ms["gaussian_pass"] / edgezo_ms["memory_pass"],
            "pool": edgezo_ms["pool_pass"] / edgezo_ms["memory_pass"],
        },
        "peak_memory": peak,
        "gaussian_kernel_vs_cpu": accuracy,
        "versions": {"torch": torch.__version__, "triton": _triton_version()},
    }


def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device is None:
        if not torch.cuda.is_available():
            emit_json({"skipped": "no CUDA device"}, args.out)
            return 0
        args.device = "cuda"
    if torch.device(args.device).type == "cpu":
        torch.set_num_threads(1)  # a smoke test on shared cores, not a CPU benchmark
    emit_json(run(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

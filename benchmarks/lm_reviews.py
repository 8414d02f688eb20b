"""MiniLM-L6 fine-tuned on real movie reviews, MeZO's way: accuracy of each method and variant.

The task is :func:`edgezo.data.reviews.movie_reviews` (Rotten Tomatoes
snippets, fresh vs rotten): ``--per-class`` training reviews of each class
(MeZO: 16 or 512), the 1,000 balanced test reviews. Variants:

* ``prompt``: ``"{text} It was {label}."`` with the label words
  ``terrible``/``great``, scored by MiniLM's masked-LM head
  (:func:`edgezo.integrations.prompts.load_minilm_masked_lm`), loss over the
  label words only (:class:`~edgezo.integrations.prompts.LabelWordLoss`);
* ``head``: a new 2-way classifier on the [CLS] state (``load_minilm``).

Methods: ``mezo``, ``pezo``, ``qzo_ff`` (its sign-m estimator in float: MiniLM
is not quantized here) and ``backprop`` (AdamW), full-parameter or (``--adapter
lora``) on MeZO's LoRA adapter only, in a
bare loop (batch ``--batch``, constant lr). Each (method, variant, seed)
reports zero-shot and final test accuracy, the train loss of the first and
last 20 steps, seconds per step and the process's peak RSS.

    python benchmarks/lm_reviews.py --methods mezo --variants prompt --seeds 0 --steps 300
    python benchmarks/lm_reviews.py --seeds 0 1 2 --steps 2000 --out results.json   # the study
    python benchmarks/lm_reviews.py --methods mezo --variants prompt --seeds 0 --adapter lora \
        --lr 1e-4 --eps 1e-2 --steps 100000 --max-seconds 480 --threads 1   # LoRA, eight CPU minutes

The ``probe`` variant (frozen MiniLM, a head on cached sentence vectors), with
an lr/eps grid on the validation split and three seeds, is ``lm_probe.py``.

Prints one JSON object (also ``--out file.json``); ``--test-size`` evaluates on
the first N test reviews (for a quick look).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers: no hub access

import torch
from _common import emit_json

from edgezo import presets
from edgezo.data.reviews import LABELS, movie_reviews
from edgezo.integrations.hf import EncodedText, load_minilm
from edgezo.integrations.prompts import (
    ClassificationLoss,
    LabelWordLoss,
    PromptDataset,
    PromptTask,
    accuracy,
    load_minilm_masked_lm,
)

TASK = PromptTask("{text} It was {label}.", ("terrible", "great"))

#: Default learning rates per (method, variant): a first guess, not a search (see --lr).
LR = {
    ("mezo", "prompt"): 1e-5, ("mezo", "head"): 1e-5,
    ("pezo", "prompt"): 1e-5, ("pezo", "head"): 1e-5,
    ("qzo_ff", "prompt"): 1e-5, ("qzo_ff", "head"): 1e-5,
    ("backprop", "prompt"): 2e-5, ("backprop", "head"): 2e-5,
}  # fmt: skip


def build(
    variant: str, seed: int, per_class: int, test_size: int, max_length: int, adapter: str = "none"
) -> tuple:
    """Model, loss, training set and test set of ``variant`` (``adapter="lora"``: the model
    wrapped in MeZO's LoRA, :func:`edgezo.integrations.adapters.peft_model`; the base frozen)."""
    train = movie_reviews("train", per_class=per_class, seed=seed)
    test_texts, test_labels = movie_reviews("test")
    test = (test_texts[:test_size], test_labels[:test_size])
    if variant == "prompt":
        tokenizer, model = load_minilm_masked_lm(seed=seed)
        model = with_adapter(model, adapter, seed)
        sets = [PromptDataset(tokenizer, TASK, *s, max_length=max_length) for s in (train, test)]
        return model, LabelWordLoss.for_task(TASK, tokenizer, causal=False), *sets
    tokenizer, model = load_minilm(num_labels=len(LABELS), seed=seed)
    model = with_adapter(model, adapter, seed)
    sets = [EncodedText(tokenizer, *s, max_length=max_length) for s in (train, test)]
    return model, ClassificationLoss(), *sets


def with_adapter(model, adapter: str, seed: int):
    """``model`` as it is (``"none"``) or with a LoRA adapter (``"lora"``: only the adapter trains)."""
    if adapter == "none":
        return model
    from edgezo.integrations.adapters import peft_model

    return peft_model(model, adapter, seed=seed)


def train(
    model, loss_fn, data, method: str, lr: float, eps: float, steps: int, batch: int, seed: int,
    max_seconds: float | None = None,
):  # fmt: skip
    """Up to ``steps`` steps on batches drawn in a seeded order, stopping after ``max_seconds``
    of this process's CPU time (a budget a loaded machine does not shrink); returns the
    per-step losses, wall seconds per step and CPU seconds per step."""
    params = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(seed)
    if method == "backprop":
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    else:
        opt = getattr(presets, method)(params, lr=lr, eps=eps, seed=seed)
    model.eval()  # as MeZO: no dropout, every forward of a step sees one function
    losses, started, cpu = [], time.perf_counter(), time.process_time()
    for _ in range(steps):
        batch_data = dict(data[torch.randperm(len(data), generator=generator)[:batch]])
        labels = batch_data.pop("labels")
        if method == "backprop":
            opt.zero_grad()
            loss = loss_fn(model(**batch_data), labels)
            loss.backward()
            opt.step()
        else:
            loss = opt.step(lambda b=batch_data, y=labels: loss_fn(model(**b), y))
        losses.append(float(loss))
        if max_seconds is not None and time.process_time() - cpu > max_seconds:
            break
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return losses, wall / len(losses), cpu / len(losses)


def run(method: str, variant: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    model, loss_fn, train_set, test_set = build(
        variant, seed, args.per_class, args.test_size, args.max_length, args.adapter
    )
    lr = args.lr if args.lr is not None else LR[method, variant]
    zero_shot = accuracy(model, test_set, loss_fn)
    losses, per_step, cpu_per_step = train(
        model, loss_fn, train_set, method, lr, args.eps, args.steps, args.batch, seed,
        args.max_seconds,
    )  # fmt: skip
    window = max(1, args.curve_window)
    return {
        "method": method, "variant": variant, "adapter": args.adapter, "seed": seed, "lr": lr,
        "trained_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "steps": len(losses),
        "train_loss_curve": [statistics.fmean(losses[i : i + window])
                             for i in range(0, len(losses), window)],
        "eps": None if method == "backprop" else args.eps,
        "zero_shot_accuracy": zero_shot, "accuracy": accuracy(model, test_set, loss_fn),
        "train_loss_first20": statistics.fmean(losses[:20]),
        "train_loss_last20": statistics.fmean(losses[-20:]),
        "seconds_per_step": per_step, "cpu_seconds_per_step": cpu_per_step,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["mezo", "pezo", "qzo_ff", "backprop"],
                    choices=["mezo", "pezo", "qzo_ff", "backprop"])  # fmt: skip
    ap.add_argument("--variants", nargs="+", default=["prompt", "head"], choices=["prompt", "head"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--per-class", type=int, default=512, help="training reviews per class (512)")
    ap.add_argument("--test-size", type=int, default=1000, help="test reviews (1000: all)")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--lr", type=float, help="one lr for every run (default: the LR table)")
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument(
        "--adapter",
        default="none",
        choices=["none", "lora"],
        help="lora: MeZO's LoRA (r 8, alpha 16 on query/value), the base frozen",
    )
    ap.add_argument(
        "--max-seconds",
        type=float,
        help="stop training a run after this many seconds (its steps are reported)",
    )
    ap.add_argument(
        "--curve-window",
        type=int,
        default=50,
        help="train_loss_curve: the mean loss of each window of this many steps",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [
        run(method, variant, seed, args)
        for method in args.methods
        for variant in args.variants
        for seed in args.seeds
    ]
    settings = {k: v for k, v in vars(args).items() if k not in ("out",)}
    emit_json({"task": "movie_reviews", "settings": settings, "runs": rows}, args.out)


if __name__ == "__main__":
    main()

"""MiniLM-L6 fine-tuned on real movie reviews, MeZO's way: each method, full and LoRA, 3 seeds.

The task is :func:`edgezo.data.reviews.movie_reviews` (Rotten Tomatoes
snippets, fresh vs rotten): ``--per-class`` training reviews of each class
(MeZO: 16 or 512; each seed draws its own, and its own batch order,
perturbations and LoRA initialization), the 1,000 balanced test reviews.
Variants:

* ``prompt``: ``"{text} It was {label}."`` with the label words
  ``terrible``/``great``, scored by MiniLM's masked-LM head
  (:func:`edgezo.integrations.prompts.load_minilm_masked_lm`), loss over the
  label words only (:class:`~edgezo.integrations.prompts.LabelWordLoss`); the
  output layer is cut to the two label words
  (:func:`~edgezo.integrations.prompts.score_label_words_only`: same scores,
  no vocabulary-sized logits), and each batch drops the padding columns all
  its rows share (the same outputs: padding is masked);
* ``head``: a new 2-way classifier on the [CLS] state (``load_minilm``).

Adapters: ``none`` (full-parameter: every weight of MiniLM trains) and ``lora``
(MeZO's LoRA, r 8, alpha 16 on query/value,
:func:`edgezo.integrations.adapters.peft_model`; the base frozen).

Methods: ``mezo``, ``pezo`` (central, one query), ``qzo-ff`` (its sign-3
estimator in float: MiniLM is not quantized here; the 16w8a encoder is in
``lm_probe.py``) and ``backprop`` (AdamW), at ONE budget of forward passes per
run (``--forwards``): MeZO and PeZO take ``forwards / 2`` steps, QZO-FF
``forwards / 6``, backprop ``forwards / 2`` (a forward and a backward).
Learning rates are MeZO's published values (its grid's largest, the best hope
at a short budget; see :data:`LR`), not searched here. Every run starts from
the same model as its seed's zero-shot row (the vacuity reference).

    python benchmarks/lm_reviews.py --out results/lm-finetune          # the study, ~1.5 CPU-hours
    python benchmarks/lm_reviews.py --methods mezo --adapters none --seeds 0 --forwards 60 \
        --test-size 64                                                 # a smoke run

Writes a merged study ``OUT/results.json`` (rows per method, variant and seed,
with per-review correctness for paired intervals; the README's generated
``finetune`` block) and prints it.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers: no hub access

import torch
from _common import emit_study

from edgezo import presets
from edgezo.analysis.stats import pack_correct
from edgezo.analysis.tables import decided
from edgezo.data.reviews import LABELS, movie_reviews
from edgezo.integrations.hf import EncodedText, load_minilm
from edgezo.integrations.prompts import (
    ClassificationLoss,
    LabelWordLoss,
    PromptDataset,
    PromptTask,
    correct,
    load_minilm_masked_lm,
    score_label_words_only,
)
from edgezo.studies.results import provenance

TASK = PromptTask("{text} It was {label}.", ("terrible", "great"))
METHODS = ("mezo", "pezo", "qzo-ff", "backprop")
#: Forward passes of a batch per step (a backward counted as one, as in lm_probe.py).
FORWARDS = {"mezo": 2, "pezo": 2, "qzo-ff": 6, "backprop": 2}
#: (lr, eps) per (method, adapter): MeZO's grids' largest lr (RoBERTa-large, its Table 14:
#: full 1e-7..1e-5 with eps 1e-3; LoRA 1e-5..1e-4 with eps 1e-2), backprop's usual AdamW lrs.
LR = {
    ("mezo", "none"): (1e-5, 1e-3), ("pezo", "none"): (1e-5, 1e-3),
    ("qzo-ff", "none"): (1e-5, 1e-3), ("backprop", "none"): (2e-5, None),
    ("mezo", "lora"): (1e-4, 1e-2), ("pezo", "lora"): (1e-4, 1e-2),
    ("qzo-ff", "lora"): (1e-4, 1e-2), ("backprop", "lora"): (1e-4, None),
}  # fmt: skip
#: The claims decided on the rows (method, reference, points, share of cells wanted).
CLAIMS = (("pezo", "mezo", 1.0, 1.0), ("mezo", "backprop", 5.0, 0.8))


def build(
    variant: str, seed: int, per_class: int, test_size: int, max_length: int, adapter: str
) -> tuple:
    """Model, loss, training set and test set of ``variant`` (``adapter="lora"``: the model
    wrapped in MeZO's LoRA, :func:`edgezo.integrations.adapters.peft_model`; the base frozen)."""
    train = movie_reviews("train", per_class=per_class, seed=seed)
    test_texts, test_labels = movie_reviews("test")
    test = (test_texts[:test_size], test_labels[:test_size])
    if variant == "prompt":
        tokenizer, model = load_minilm_masked_lm(seed=seed)
        loss = score_label_words_only(model, LabelWordLoss.for_task(TASK, tokenizer, causal=False))
        sets = [PromptDataset(tokenizer, TASK, *s, max_length=max_length) for s in (train, test)]
        return with_adapter(model, adapter, seed), loss, *sets
    tokenizer, model = load_minilm(num_labels=len(LABELS), seed=seed)
    sets = [EncodedText(tokenizer, *s, max_length=max_length) for s in (train, test)]
    return with_adapter(model, adapter, seed), ClassificationLoss(), *sets


def with_adapter(model, adapter: str, seed: int):
    """``model`` as it is (``"none"``) or with a LoRA adapter (``"lora"``: only the adapter trains)."""
    if adapter == "none":
        return model
    from edgezo.integrations.adapters import peft_model

    return peft_model(model, adapter, seed=seed)


def unpadded(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``batch`` without the trailing columns that are padding in every row (right-padded
    sequences: the attention mask hides them, so the outputs of the other columns are kept)."""
    length = int(batch["attention_mask"].sum(dim=1).max())
    return {k: v[:, :length] if v.dim() == 2 else v for k, v in batch.items()}


def optimizer(method: str, params: list[torch.Tensor], lr: float, eps: float | None, seed: int):
    if method == "backprop":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    return getattr(presets, method.replace("-", "_"))(params, lr=lr, eps=eps, seed=seed)


def train(model, loss_fn, data, method: str, lr: float, eps: float | None, steps: int,
          batch: int, seed: int) -> tuple[list[float], float, float]:  # fmt: skip
    """``steps`` steps on batches drawn in a seeded order; the per-step losses, wall seconds
    per step and CPU seconds per step."""
    params = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(seed)
    opt = optimizer(method, params, lr, eps, seed)
    model.eval()  # as MeZO: no dropout, every forward of a step sees one function
    losses, started, cpu = [], time.perf_counter(), time.process_time()
    for _ in range(steps):
        batch_data = unpadded(dict(data[torch.randperm(len(data), generator=generator)[:batch]]))
        labels = batch_data.pop("labels")
        if method == "backprop":
            opt.zero_grad()
            loss = loss_fn(model(**batch_data), labels)
            loss.backward()
            opt.step()
        else:
            loss = opt.step(lambda b=batch_data, y=labels: loss_fn(model(**b), y))
        losses.append(loss.item())
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return losses, wall / max(len(losses), 1), cpu / max(len(losses), 1)


def evaluated(row: dict[str, Any], model, test_set, loss_fn) -> dict[str, Any]:
    """``row`` with the test accuracy and the per-review correctness (packed bits)."""
    flags = correct(model, test_set, loss_fn)
    return {**row, "accuracy": float(flags.float().mean()), "examples": len(flags),
            "correct": pack_correct(flags.numpy())}  # fmt: skip


def run(method: str, start: tuple, variant: str, adapter: str, seed: int, args) -> dict[str, Any]:
    """One method from ``start`` (a fresh copy of the seed's model, loss and data)."""
    model, loss_fn, train_set, test_set = copy.deepcopy(start[0]), *start[1:]
    lr, eps = LR[method, adapter] if args.lr is None else (args.lr, args.eps)
    steps = args.forwards // FORWARDS[method]
    losses, per_step, cpu_per_step = train(
        model, loss_fn, train_set, method, lr, eps, steps, args.batch, seed
    )
    window = max(1, args.curve_window)
    row = {
        "method": method, "variant": f"{variant} {'full' if adapter == 'none' else adapter}",
        "seed": seed, "lr": lr, "eps": eps, "steps": steps,
        "forwards": steps * FORWARDS[method], "forwards_per_step": FORWARDS[method],
        "trained_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_loss_curve": [statistics.fmean(losses[i : i + window])
                             for i in range(0, len(losses), window)],
        "seconds_per_step": per_step, "cpu_seconds_per_step": cpu_per_step,
    }  # fmt: skip
    return evaluated(row, model, test_set, loss_fn)


def cell_rows(variant: str, adapter: str, seed: int, args) -> list[dict[str, Any]]:
    """Zero-shot and every method of one (variant, adapter, seed)."""
    start = build(variant, seed, args.per_class, args.test_size, args.max_length, adapter)
    name = f"{variant} {'full' if adapter == 'none' else adapter}"
    zero = {"method": "zero-shot", "variant": name, "seed": seed, "steps": 0, "forwards": 0}
    rows = [evaluated(zero, start[0], start[3], start[1])]
    for method in args.methods:
        rows.append(run(method, start, variant, adapter, seed, args))
        print(
            json.dumps({k: v for k, v in rows[-1].items() if k != "correct"}),
            file=sys.stderr,
            flush=True,
        )  # progress: stdout is the payload
    return rows


def seed_rows(seed: int, args: argparse.Namespace) -> tuple[list[dict[str, Any]], float]:
    """Every (adapter, variant) cell of one seed, and its wall seconds (a worker of --jobs)."""
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    rows = [row for adapter in args.adapters for variant in args.variants
            for row in cell_rows(variant, adapter, seed, args)]  # fmt: skip
    return rows, time.perf_counter() - began


def study(args: argparse.Namespace) -> dict[str, Any]:
    """The whole study as a merged ``results.json`` payload (the lm_probe.py format), named
    after the folder of ``--out`` (the report's layout: ``results/NAME/results.json``).
    With ``--jobs N`` the seeds run in N processes (each seed's runs are independent and
    seeded, so the rows are the same as in one process)."""
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if args.jobs > 1:
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=spawn) as pool:
            done = list(pool.map(seed_rows, args.seeds, [args] * len(args.seeds)))
    else:
        done = [seed_rows(seed, args) for seed in args.seeds]
    rows = [row for cell, _ in done for row in cell]
    seconds = {str(seed): wall for seed, (_, wall) in zip(args.seeds, done, strict=True)}
    claims = [decided(rows, {"claim": f"{m} within {p:g} points of {r}", "method": m,
                             "reference": r, "points": p, "wanted": w}) for m, r, p, w in CLAIMS]  # fmt: skip
    config = {k: v for k, v in vars(args).items() if k != "out"}
    return {
        "study": Path(args.out).name if args.out else "lm-finetune", "quick": args.forwards < 600, "seeds": list(args.seeds),
        "keys": ["variant"], "provenance": provenance(), "rows": rows, "claims": claims,
        "config": {**config, "forwards_per_step": FORWARDS,
                   "lr_eps": {f"{m} {a}": list(v) for (m, a), v in LR.items()}},
        "seconds": seconds, "total_seconds": time.perf_counter() - started,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--variants", nargs="+", default=["prompt"], choices=["prompt", "head"])
    ap.add_argument("--adapters", nargs="+", default=["none", "lora"], choices=["none", "lora"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--forwards", type=int, default=600, help="forward passes per run (600)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--per-class", type=int, default=512, help="training reviews per class (512)")
    ap.add_argument("--test-size", type=int, default=1000, help="test reviews (1000: all)")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--lr", type=float, help="one lr for every run (default: the LR table)")
    ap.add_argument("--eps", type=float, default=1e-3, help="with --lr: ZO's eps")
    ap.add_argument(
        "--curve-window",
        type=int,
        default=25,
        help="train_loss_curve: the mean loss of each window of this many steps",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--jobs", type=int, default=1, help="processes the seeds are spread over")
    ap.add_argument("--out", help="write OUT/results.json")
    args = ap.parse_args()
    payload = study(args)
    emit_study(payload, args.out)


if __name__ == "__main__":
    main()

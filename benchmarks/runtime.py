"""Training on a real inference-only runtime: ONNX Runtime forwards, the integer step in C.

Five measurements (issue "Train on a real inference-only runtime"), CPU only:

1. ``agreement``: the forward of :class:`edgezo.runtime.OnnxRuntimeModel` (ORT)
   against the torch fixed-point forward of the same model
   (:func:`edgezo.fixedpoint.quantize_model`, 16-bit weights, 8-bit activations
   calibrated on 4 train batches of 64), on real test inputs, per family:

   * ``smallcnn``: the demo's pretrained backbone (``demo.pretrain(FULL)``,
     cached) quantized as the demo's ``pezo 16w8a`` starts it
     (``demo.starting_model``: head trainable, calibrated on 4 shifted train
     batches), on the shifted MNIST test set (``demo.load_data(FULL)["test"]``);
     ``smallcnn_per_channel``: the same with one scale per output channel;
   * ``resnet`` (``SmallResNet(in_channels=1)``), ``vit``
     (``ViTTiny(ViTConfig.small())``), ``crnn`` (``CRNN(mels=28)``) and
     ``dscnn`` (``DSCNN()``, 1 input channel), each pretrained with backprop by
     :func:`edgezo.models.pretrain.pretrained` (Adam, lr 2e-3, batch 64,
     ``--pretrain-steps`` steps, cached as ``runtime-bench-<family>``) on the
     MNIST train images and evaluated on MNIST test. The keyword spotters read a
     28x28 digit as a spectrogram of 28 frames x 28 mels (an image stands in for
     audio: no speech data set is installed). The whole model is trainable, so
     every integer tensor is a graph input read from torch's memory;
     calibration: the first 4 x 64 MNIST train images;
   * ``minilm``: :func:`edgezo.integrations.hf.load_minilm` with a 4-topic head,
     on the synthetic topic sentences of :func:`edgezo.data.text.topic_sentences`
     (the only real-ish text edgezo has offline): the classifier is first fitted
     with backprop on the float model's pooled features of 256 train sentences
     (so accuracies mean something), then the whole model is quantized 16w8a
     (calibrated on 64 train sentences), head-only trainable, and compared on
     ``--minilm-sentences`` test sentences padded to their longest.

   Per family: ``argmax_agreement`` (share of rows with the same argmax),
   ``max_diff_output_steps`` (max |ORT - torch| over all logits in units of the
   output step ``max|torch logits| / 127`` over the whole set, as in
   tests/test_runtime_onnx.py), ``bit_equal_rows`` (share of rows whose logits
   are equal bit for bit), ``accuracy_ort`` / ``accuracy_torch``.

2. ``training``: the demo's ``pezo 16w8a`` (sign-3-SPSA, Pool of 1021, lr 3e-3,
   eps 1e-2, head of the 16w8a SmallCNN, seed 0) for ``--train-steps`` steps,
   twice from identical starting integers on identical batches (each step's 64
   indices drawn with replacement from the 10,000 shifted train images by a
   generator seeded with 0: the draws of ``demo.replayed``, in the order the demo
   trains on them): ``torch`` = the registry's optimizer
   (``demo.make_optimizer``: torch forward, ``FixedPointFormat``); ``ort`` =
   the same ZO built with ``formats=DeviceFormat()`` (the C step), forwards by
   ``OnnxRuntimeModel``. Every closure's loss is recorded. Reported: final
   shifted-test accuracy of both (10,000 images, torch forward of each trained
   model; for the ORT run its ORT accuracy too), the difference in points
   (target <= 0.5), whether the final integers are bit-identical, the share of
   steps whose estimated coefficients (``sign(L+ - L-)`` of every query) agree
   and of queries, the share of steps whose six losses are equal as floats, the
   first step that differs, and wall time per step (whole loop / steps).

3. ``speed`` (ViTTiny(ViTConfig.small()) 16w8a, batch 64 MNIST test images,
   calibrated as above, weights of the pretrained ``vit``):
   (a) ``forward``: ORT forward vs torch fixed-point forward vs torch float
   forward (+ cross-entropy), interleaved rounds, medians and ratios;
   (b) ``steps``: one ORT-driven ZO step (sign-1-SPSA: one query, 2 forwards,
   Pool of 1021, the demo's lr 3e-3 and eps 1e-2: the update pass is real) vs two ORT forwards of
   the same graph, in the same interleaved rounds, for (i) ``head`` (head
   trainable) and (ii) ``whole`` (every tensor trainable), each with
   ``FixedPointFormat`` (torch computes the perturbed integer reads) and with
   ``DeviceFormat`` (C computes them); target: step / two forwards <= 1.10
   (decided on the paired median ratio, as in step_overhead.py); the same
   for the demo's SmallCNN head (reference). Each step also records the time
   spent inside its closures (``inside_closures_median_s``: the two forwards
   with their loss, *including* the perturbed integer reads, which
   ``OnnxRuntimeModel`` makes on each call) and the rest
   (``outside_closures_median_s``: perturb/restore bookkeeping and the update).

4. ``memory``: peak resident set (``VmHWM`` of a fresh subprocess per mode,
   as step_overhead.py) of ``baseline`` (imports, model, ORT session, batch),
   ``inference`` (``--memory-iters`` ORT forwards) and ``training``
   (``--memory-iters`` ZO steps: the demo's sign-3 Pool-1021 optimizer with
   ``DeviceFormat``, forwards in ORT) for ``smallcnn_head`` (the demo's
   pretrained SmallCNN, head trainable) and ``vit_whole`` (ViT-small, seeded
   random weights, every tensor trainable), batch 64; the children calibrate
   on 4 seeded uniform-random batches (memory does not depend on the values).
   Ratio training / inference, raw and over the baseline (target <= 1.05 raw).

5. ``c_step``: ``benchmarks/device_step.py``'s functions on ``--c-weights``
   int16 weights, one thread: the C perturbed read and sign-3 update vs a
   ``copy_`` of the same tensor (ms, ratios), the C library's compile time, and
   ``DeviceFormat.state_bytes()`` of the demo's ``pezo 16w8a`` head (target
   <= 8 KB) against the 256 KB SRAM of MIT's tiny-training device.

Threads: torch uses ``--threads`` (default 2) and every ORT session the same
number (``OnnxRuntimeModel``'s default, through
:func:`edgezo.runtime.session.session_options`). ``OMP_WAIT_POLICY=PASSIVE`` is
set before torch is imported (see step_overhead.py), and for the same reason
every ORT session has ``session.intra_op.allow_spinning = "0"`` (edgezo's
default) unless ``--ort-spinning``: with spinning (ORT's own default) each of the several sessions
here keeps its pool thread busy-waiting after a run, and on 2 shared cores the
next forward of another session (or torch's) waits for a core: with 2 threads
two plain ORT forwards of ViT measured ~1.5x the two forwards inside a ZO step
of the same session, which timed the scheduler, not the step. Timings are medians over
``--repeats`` interleaved rounds (rotating order) after ``--warmup`` rounds.

Usage::

    PYTHONPATH=src python benchmarks/runtime.py --out benchmarks/results/runtime.json
    PYTHONPATH=src python benchmarks/runtime.py --quick      # smoke run (1-2 minutes)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

# before torch loads OpenMP (see step_overhead.py)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import emit_json  # noqa: E402
from step_overhead import environment as torch_environment  # noqa: E402
from step_overhead import (  # noqa: E402
    interleaved,
    proc_status_kib,
    ratio,
    section,
    summary,
)
from torch import Tensor, nn  # noqa: E402

from edgezo import ZO  # noqa: E402
from edgezo.data import load_mnist  # noqa: E402
from edgezo.directions import Pool  # noqa: E402
from edgezo.fixedpoint import FixedPointFormat, quantize_model, trainable_parameters  # noqa: E402
from edgezo.models import ViTConfig, ViTTiny  # noqa: E402
from edgezo.models.kws import CRNN, DSCNN  # noqa: E402
from edgezo.models.pretrain import pretrained  # noqa: E402
from edgezo.models.resnet import SmallResNet  # noqa: E402
from edgezo.runtime import DeviceFormat, OnnxRuntimeModel  # noqa: E402
from edgezo.runtime.session import session_options  # noqa: E402
from edgezo.studies import demo  # noqa: E402

METHOD = "pezo 16w8a"
FAMILIES = ("resnet", "vit", "crnn", "dscnn")
MEMORY_WORKLOADS = ("smallcnn_head", "vit_whole")
MEMORY_MODES = ("baseline", "inference", "training")
TARGETS = {"accuracy_gap_points": 0.5, "zo_step_vit": 1.10, "memory": 1.05, "state_bytes": 8192}
TINY_TRAINING_SRAM_BYTES = 256 * 1024
BATCH = 64


# -- helpers -------------------------------------------------------------------
def log(msg: str) -> None:
    print(f"[runtime {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mnist_inputs(split: str) -> tuple[Tensor, Tensor]:
    x, y = load_mnist(split)
    return demo.as_input(x), y


def calibration(x: Tensor) -> list[Tensor]:
    return list(x[: 4 * BATCH].split(BATCH))


def set_trainable(model: nn.Module, prefix: str | None) -> nn.Module:
    """Only parameters under ``prefix`` train (``None``: all of them); eval mode."""
    for name, p in model.named_parameters():
        p.requires_grad_(prefix is None or name.startswith(prefix + "."))
    return model.eval()


#: Each family's untrained model (partials of edgezo's classes: pretraining builds it in a
#: portable process, which cannot load this script's functions).
FAMILIES: dict[str, Callable[[], nn.Module]] = {
    "resnet": partial(SmallResNet, classes=10, in_channels=1),
    "vit": partial(ViTTiny, ViTConfig.small(classes=10)),
    "crnn": partial(CRNN, classes=10, mels=28),
    "dscnn": partial(DSCNN, classes=10),
}


def pretrained_family(
    family: str, train: tuple[Tensor, Tensor], steps: int
) -> tuple[nn.Module, Any]:
    model, info = pretrained(
        f"runtime-bench-{family}",
        FAMILIES[family],
        train,
        config={"data": "mnist train, 28x28 (kws: 28 frames x 28 mels)", "family": family,
                "classes": 10},
        steps=steps,
        batch_size=BATCH,
        lr=2e-3,
        seed=0,
        progress=False,
    )  # fmt: skip
    return model.eval(), info


#: ONNX Runtime's intra-op threads spin after each run unless this is "0" (see the module doc).
ORT_SPINNING = {"allow": False}


def ort_model(qmodel: nn.Module, example: Any, dynamic_axes: Any = None) -> OnnxRuntimeModel:
    """``OnnxRuntimeModel`` with edgezo's session options (torch's thread count, basic graph
    optimizations, no spin-waiting of ORT's pool threads), spinning with ``--ort-spinning``."""
    options = session_options(None)
    if ORT_SPINNING["allow"]:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    return OnnxRuntimeModel(qmodel, example, dynamic_axes, sess_options=options)


@torch.no_grad()
def logits_of(fn: Callable[..., Tensor], inputs: list[tuple[Tensor, ...]]) -> Tensor:
    outs = []
    for args in inputs:
        out = fn(*args)
        outs.append(getattr(out, "logits", out).float())
    return torch.cat(outs)


def compare(ort: Tensor, ref: Tensor, y: Tensor) -> dict[str, Any]:
    step = float(ref.abs().max()) / 127
    same = ort.argmax(-1) == ref.argmax(-1)
    return {
        "rows": len(ref),
        "argmax_agreement": int(same.sum()) / len(ref),
        "argmax_disagreements": int((~same).sum()),
        "max_diff_output_steps": float((ort - ref).abs().max()) / step,
        "output_step": step,
        "bit_equal_rows": int((ort == ref).all(-1).sum()) / len(ref),
        "accuracy_ort": int((ort.argmax(-1) == y).sum()) / len(ref),
        "accuracy_torch": int((ref.argmax(-1) == y).sum()) / len(ref),
    }


def agree_on(
    qmodel: nn.Module, example: tuple[Tensor, ...], x: Tensor, y: Tensor, chunk: int, **kw: Any
) -> dict[str, Any]:
    """ORT vs torch fixed point on ``x`` (in chunks), with timings of both passes."""
    ort_net = ort_model(qmodel, example, **kw)
    batches = [(c,) for c in x.split(chunk)]
    t0 = time.perf_counter()
    ort = logits_of(ort_net, batches)
    t1 = time.perf_counter()
    ref = logits_of(qmodel, batches)
    t2 = time.perf_counter()
    return {
        **compare(ort, ref, y),
        "graph_integer_inputs": len(ort_net.parameter_names),
        "ort_seconds": t1 - t0,
        "torch_seconds": t2 - t1,
    }


# -- 1. forward agreement --------------------------------------------------------
def bench_agreement(args: argparse.Namespace, backbone: nn.Module, data: dict) -> dict[str, Any]:
    n = args.agreement_rows
    out: dict[str, Any] = {"rows_per_family": n}
    x_train, _ = data["train"]
    x_test, y_test = data["test"]
    x_test, y_test = x_test[:n], y_test[:n]
    log("agreement: smallcnn")
    qmodel, _ = demo.starting_model(backbone, METHOD, x_train, demo.FULL)
    out["smallcnn"] = {
        "what": "demo backbone 16w8a per tensor, head trainable, shifted MNIST test",
        **agree_on(qmodel, (x_test[:4],), x_test, y_test, 1000),
    }
    per_channel = quantize_model(set_trainable(copy.deepcopy(backbone), "head"), 16, 8,
                                 per_channel=True, calibration=calibration(x_train))  # fmt: skip
    out["smallcnn_per_channel"] = {
        "what": "demo backbone 16w8a per output channel, head trainable, shifted MNIST test",
        **agree_on(per_channel.eval(), (x_test[:4],), x_test, y_test, 1000),
    }
    train = mnist_inputs("train")
    xt, yt = mnist_inputs("test")
    xt, yt = xt[:n], yt[:n]
    for family in FAMILIES:
        log(f"agreement: {family} (pretraining {args.pretrain_steps} steps if not cached)")
        t0 = time.perf_counter()
        model, info = pretrained_family(family, train, args.pretrain_steps)
        model = set_trainable(model, None)
        q = quantize_model(model, 16, 8, calibration=calibration(train[0])).eval()
        out[family] = {
            "what": f"{type(model).__name__} pretrained {args.pretrain_steps} steps, whole model "
            "trainable, 16w8a per tensor, MNIST test"
            + (" (28 frames x 28 mels)" if family in ("crnn", "dscnn") else ""),
            "pretrain_from_cache": info.from_cache,
            "pretrain_train_seconds": info.train_seconds,
            "pretrain_train_accuracy": info.train_accuracy,
            "float_accuracy": demo.accuracy(model, xt, yt),
            **agree_on(q, (xt[:4],), xt, yt, 500),
        }
        out[family]["seconds"] = time.perf_counter() - t0
    log("agreement: minilm")
    out["minilm"] = bench_minilm(args.minilm_sentences)
    return out


def bench_minilm(sentences: int) -> dict[str, Any]:
    from edgezo.data.text import TOPICS, topic_sentences
    from edgezo.integrations.hf import load_minilm

    t0 = time.perf_counter()
    tokenizer, model = load_minilm(num_labels=len(TOPICS), seed=0)
    model = set_trainable(model, "classifier")
    # fit the fresh head with backprop on the float model's pooled features (256 train sentences)
    texts, labels = topic_sentences("train", size=256, seed=0)
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        pooled = model.bert(enc["input_ids"], attention_mask=enc["attention_mask"]).pooler_output
    head_labels = torch.tensor(labels)
    opt = torch.optim.Adam(model.classifier.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(model.classifier(pooled), head_labels).backward()
        opt.step()
    calib = tokenizer(texts[:64], padding=True, return_tensors="pt")["input_ids"]
    qmodel = quantize_model(model, 16, 8, calibration=[calib]).eval()
    test_texts, test_labels = topic_sentences("test", size=sentences, seed=0)
    test = tokenizer(test_texts, padding=True, return_tensors="pt")
    ids, mask, y = test["input_ids"], test["attention_mask"], torch.tensor(test_labels)
    seq = {"input_ids": {1: "sequence"}, "attention_mask": {1: "sequence"}}
    ort_net = ort_model(qmodel, (ids[:2, :9], mask[:2, :9]), seq)
    batches = list(zip(ids.split(64), mask.split(64), strict=True))
    t1 = time.perf_counter()
    ort = logits_of(ort_net, batches)
    t2 = time.perf_counter()
    ref = logits_of(lambda i, m: qmodel(i, attention_mask=m), batches)
    t3 = time.perf_counter()
    with torch.no_grad():
        float_logits = torch.cat([model(i, attention_mask=m).logits for i, m in batches])
    return {
        "what": f"MiniLM-L6 16w8a whole model, head-only trainable; {sentences} synthetic topic "
        f"test sentences (edgezo.data.text, {len(TOPICS)} topics) padded to {ids.shape[1]} "
        "tokens; head fitted by backprop on 256 train sentences first",
        **compare(ort, ref, y),
        "float_accuracy": int((float_logits.argmax(-1) == y).sum()) / len(y),
        "graph_integer_inputs": len(ort_net.parameter_names),
        "ort_seconds": t2 - t1,
        "torch_seconds": t3 - t2,
        "seconds": time.perf_counter() - t0,
    }


# -- 2. training through ORT vs torch --------------------------------------------
def train_run(
    qmodel: nn.Module,
    opt: ZO,
    forward: Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    steps: int,
    seed: int,
) -> dict[str, Any]:
    """``steps`` steps on the demo's draws; every closure's loss, per step."""
    gen = torch.Generator().manual_seed(seed)
    per_step: list[list[float]] = []
    current: list[float] = []

    def closure() -> Tensor:
        loss = F.cross_entropy(forward(xb), yb)
        current.append(float(loss))
        return loss

    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (BATCH,), generator=gen)
        xb, yb = x[idx], y[idx]
        current = []
        with torch.no_grad():
            opt.step(closure)
        per_step.append(current)
    seconds = time.perf_counter() - t0
    return {"losses": per_step, "seconds": seconds, "seconds_per_step": seconds / steps}


def bench_training(args: argparse.Namespace, backbone: nn.Module, data: dict) -> dict[str, Any]:
    steps, seed = args.train_steps, 0
    x, y = data["train"]
    test = data["test"]
    cfg = demo.FULL
    q_torch, p_torch = demo.starting_model(backbone, METHOD, x, cfg)
    q_ort, p_ort = demo.starting_model(backbone, METHOD, x, cfg)
    before = demo.accuracy(q_torch, *test)
    opt_torch = demo.make_optimizer(METHOD, p_torch, cfg, seed)
    s = demo.settings(METHOD, cfg)
    opt_ort = ZO(p_ort, lr=s.lr, eps=s.eps, directions=Pool(s.pool_size, seed), estimator="sign",
                 queries=max(s.queries, 3), formats=DeviceFormat())  # fmt: skip
    ort_net = ort_model(q_ort, (x[:4],))
    log(f"training: torch, {steps} steps")
    torch_run = train_run(q_torch, opt_torch, q_torch, x, y, steps, seed)
    log(f"training: ORT + C step, {steps} steps")
    ort_run = train_run(q_ort, opt_ort, ort_net, x, y, steps, seed)
    acc_torch = demo.accuracy(q_torch, *test)
    acc_ort = demo.accuracy(q_ort, *test)
    acc_ort_in_ort = demo.accuracy(ort_net, *test)
    lt, lo = torch_run["losses"], ort_run["losses"]
    signs = lambda ls: [(a > b) - (a < b) for a, b in zip(ls[0::2], ls[1::2], strict=True)]  # noqa: E731
    step_agree = [signs(a) == signs(b) for a, b in zip(lt, lo, strict=True)]
    query_pairs = [(u, v) for a, b in zip(lt, lo, strict=True)
                   for u, v in zip(signs(a), signs(b), strict=True)]  # fmt: skip
    equal_losses = [a == b for a, b in zip(lt, lo, strict=True)]
    ints_equal = all(
        torch.equal(a, b)
        for a, b in zip(trainable_parameters(q_torch), trainable_parameters(q_ort), strict=True)
    )
    first_diff = next((i + 1 for i, e in enumerate(equal_losses) if not e), None)
    gap = 100 * (acc_ort - acc_torch)
    return {
        "method": METHOD,
        "settings": {"lr": s.lr, "eps": s.eps, "queries": max(s.queries, 3),
                     "pool_size": s.pool_size, "seed": seed, "batch": BATCH, "steps": steps},
        "formats": {"torch": type(opt_torch.formats[0]).__name__,
                    "ort": type(opt_ort.formats[0]).__name__},
        "test_rows": len(test[1]),
        "accuracy_before": before,
        "accuracy_torch": acc_torch,
        "accuracy_ort": acc_ort,
        "accuracy_ort_run_in_ort_forward": acc_ort_in_ort,
        "accuracy_gap_points": gap,
        "final_integers_bit_identical": ints_equal,
        "steps_with_all_coefficients_equal": sum(step_agree) / steps,
        "queries_with_equal_coefficient": sum(u == v for u, v in query_pairs) / len(query_pairs),
        "steps_with_equal_losses": sum(equal_losses) / steps,
        "first_step_with_different_losses": first_diff,
        "closures_per_step": len(lt[0]),
        "seconds_per_step": {"torch": torch_run["seconds_per_step"],
                             "ort_c": ort_run["seconds_per_step"]},
        "seconds": {"torch": torch_run["seconds"], "ort_c": ort_run["seconds"]},
        "mean_loss_first_20_steps": {"torch": _mean(lt[:20]), "ort_c": _mean(lo[:20])},
        "mean_loss_last_20_steps": {"torch": _mean(lt[-20:]), "ort_c": _mean(lo[-20:])},
    }  # fmt: skip


def _mean(rows: list[list[float]]) -> float:
    values = [v for r in rows for v in r]
    return sum(values) / len(values)


# -- 3. speed ----------------------------------------------------------------------
def vit_models(args: argparse.Namespace) -> tuple[nn.Module, Tensor, Tensor, Tensor]:
    """The pretrained ViT-small (float), a batch of 64 test images, labels, calibration input."""
    train = mnist_inputs("train")
    model, _ = pretrained_family("vit", train, args.pretrain_steps)
    xt, yt = mnist_inputs("test")
    return model.eval(), xt[:BATCH], yt[:BATCH], train[0]


def step_fns(
    qmodel: nn.Module, x: Tensor, y: Tensor, tag: str, inside: dict[str, list[float]]
) -> dict[str, Callable[[], Any]]:
    """Two ORT forwards, and ORT-driven sign-1 steps with FixedPointFormat and DeviceFormat.

    Each step call appends to ``inside[key]`` the time its closures took (the
    two forwards + loss inside the step; two ``perf_counter`` calls each).
    """
    ort_net = ort_model(qmodel, (x[:4],))
    params = trainable_parameters(qmodel)

    def closure() -> Tensor:
        return F.cross_entropy(ort_net(x), y)

    def two_forwards() -> None:
        closure()
        closure()

    def step_fn(opt: ZO, key: str) -> Callable[[], None]:
        acc = [0.0]

        def timed() -> Tensor:
            t0 = time.perf_counter()
            out = closure()
            acc[0] += time.perf_counter() - t0
            return out

        def run() -> None:
            acc[0] = 0.0
            opt.step(timed)
            inside.setdefault(key, []).append(acc[0])

        return run

    fns: dict[str, Callable[[], Any]] = {f"{tag}.two_forwards": two_forwards}
    for name, fmt in (("FixedPointFormat", FixedPointFormat), ("DeviceFormat", DeviceFormat)):
        opt = ZO(params, lr=3e-3, eps=1e-2, directions=Pool(1021, 0), estimator="sign",
                 queries=1, formats=fmt())  # fmt: skip
        fns[f"{tag}.step_{name}"] = step_fn(opt, f"{tag}.step_{name}")
    return fns


def bench_speed(args: argparse.Namespace, backbone: nn.Module, data: dict) -> dict[str, Any]:
    vit, x, y, calib_x = vit_models(args)
    out: dict[str, Any] = {"model": "ViTTiny(ViTConfig.small()) 16w8a", "batch": BATCH}
    q_head = quantize_model(set_trainable(copy.deepcopy(vit), "head"), 16, 8,
                            calibration=calibration(calib_x)).eval()  # fmt: skip
    q_whole = quantize_model(set_trainable(copy.deepcopy(vit), None), 16, 8,
                             calibration=calibration(calib_x)).eval()  # fmt: skip
    ort_head = ort_model(q_head, (x[:4],))

    log("speed: forwards")
    with torch.no_grad():
        fwd = {
            "ort": lambda: F.cross_entropy(ort_head(x), y),
            "torch_fixed_point": lambda: F.cross_entropy(q_head(x), y),
            "torch_float": lambda: F.cross_entropy(vit(x), y),
        }
        times = interleaved(fwd, args.repeats, args.warmup)
    out["forward"] = {k: summary(v) for k, v in times.items()}
    out["forward"]["ratios"] = {
        "ort_to_torch_fixed_point": ratio(times, "ort", "torch_fixed_point"),
        "ort_to_torch_float": ratio(times, "ort", "torch_float"),
        "torch_fixed_point_to_torch_float": ratio(times, "torch_fixed_point", "torch_float"),
    }

    log("speed: ZO steps (ViT head, ViT whole)")
    inside: dict[str, list[float]] = {}
    fns = {**step_fns(q_head, x, y, "head", inside), **step_fns(q_whole, x, y, "whole", inside)}
    with torch.no_grad():
        times = interleaved(fns, args.step_repeats, args.warmup)
    out["steps"] = steps_summary(times, inside, args.warmup, ("head", "whole"))
    out["trainable_parameters"] = {
        "head": sum(p.numel() for p in trainable_parameters(q_head)),
        "whole": sum(p.numel() for p in trainable_parameters(q_whole)),
    }

    log("speed: ZO steps (SmallCNN head, the demo)")
    x_train, _ = data["train"]
    xs, ys = data["test"][0][:BATCH], data["test"][1][:BATCH]
    q_cnn, _ = demo.starting_model(backbone, METHOD, x_train, demo.FULL)
    with torch.no_grad():
        times = interleaved(step_fns(q_cnn, xs, ys, "smallcnn_head", inside), args.step_repeats,
                            args.warmup)  # fmt: skip
    out["smallcnn_head_reference"] = steps_summary(times, inside, args.warmup,
                                                   ("smallcnn_head",))["smallcnn_head"]  # fmt: skip
    out["estimator"] = "sign-1-SPSA (1 query, 2 forwards), Pool(1021), forwards in ORT"
    return out


def steps_summary(
    times: dict[str, list[float]],
    inside: dict[str, list[float]],
    warmup: int,
    tags: tuple[str, ...],
) -> dict[str, Any]:
    """Per tag: two forwards, and each step with its ratio to them and its time outside the
    closures (per call: step time - time inside its closures; medians)."""
    out: dict[str, Any] = {}
    for tag in tags:
        two = times[f"{tag}.two_forwards"]
        entry: dict[str, Any] = {"two_forwards": summary(two)}
        for name in ("FixedPointFormat", "DeviceFormat"):
            key = f"{tag}.step_{name}"
            closures = inside[key][warmup:]
            outside = [t - c for t, c in zip(times[key], closures, strict=True)]
            entry[name] = {
                **summary(times[key]),
                **{f"{k}_to_two_forwards": v
                   for k, v in ratio(times, key, f"{tag}.two_forwards").items()},
                "inside_closures_median_s": statistics.median(closures),
                "outside_closures_median_s": statistics.median(outside),
                "outside_closures_to_two_forwards": statistics.median(outside)
                / statistics.median(two),
            }  # fmt: skip
        out[tag] = entry
    return out


# -- 4. memory ---------------------------------------------------------------------
def memory_child(workload: str, mode: str, iters: int) -> dict[str, Any]:
    """One mode in this (fresh) process; the peak resident set at the end."""
    g = torch.Generator().manual_seed(0)
    calib = [torch.rand(BATCH, 1, 28, 28, generator=g) for _ in range(4)]
    x = torch.rand(BATCH, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (BATCH,), generator=g)
    if workload == "smallcnn_head":
        model, _, _ = demo.pretrain(demo.FULL, progress=False)
        model = set_trainable(model, "head")
    elif workload == "vit_whole":
        torch.manual_seed(0)
        model = set_trainable(ViTTiny(ViTConfig.small(classes=10)), None)
    else:
        raise ValueError(workload)
    qmodel = quantize_model(model, 16, 8, calibration=calib).eval()
    del model
    ort_net = ort_model(qmodel, (x[:4],))
    loop: Callable[[], float] | None = None

    def closure() -> Tensor:
        return F.cross_entropy(ort_net(x), y)

    if mode == "inference":
        loop = lambda: float(closure())  # noqa: E731
    elif mode == "training":
        s = demo.settings(METHOD, demo.FULL)
        opt = ZO(trainable_parameters(qmodel), lr=s.lr, eps=s.eps, directions=Pool(s.pool_size, 0),
                 estimator="sign", queries=3, formats=DeviceFormat())  # fmt: skip
        loop = lambda: float(opt.step(closure))  # noqa: E731
    elif mode != "baseline":
        raise ValueError(mode)
    setup = proc_status_kib("VmRSS")
    last = None
    with torch.no_grad():
        for _ in range(iters if loop else 0):
            last = loop()
    hwm = proc_status_kib("VmHWM")
    return {
        "workload": workload,
        "mode": mode,
        "iters": iters,
        "peak_rss_mib": hwm / 1024.0,
        "rss_after_setup_mib": None if setup is None else setup / 1024.0,
        "last_loss": last,
    }


def bench_memory(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"iters": args.memory_iters, "measure": "VmHWM of a fresh subprocess"}
    for w in MEMORY_WORKLOADS:
        peaks, setup = {}, {}
        for mode in MEMORY_MODES:
            log(f"memory: {w} {mode}")
            cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", mode,
                   "--workload", w, "--memory-iters", str(args.memory_iters),
                   "--threads", str(args.threads)]  # fmt: skip
            cmd += ["--ort-spinning"] if args.ort_spinning else []
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"memory child {w}/{mode} failed:\n{done.stderr[-3000:]}")
            res = json.loads(done.stdout.strip().splitlines()[-1])
            peaks[mode], setup[mode] = res["peak_rss_mib"], res["rss_after_setup_mib"]
        base = peaks["baseline"]
        extra_inf, extra_train = peaks["inference"] - base, peaks["training"] - base
        out[w] = {
            "peak_rss_mib": peaks,
            "rss_after_setup_mib": setup,
            "training_to_inference": peaks["training"] / peaks["inference"],
            "extra_over_baseline_mib": {"inference": extra_inf, "training": extra_train},
            "training_to_inference_over_baseline": (
                extra_train / extra_inf if extra_inf > 0 else None
            ),
        }
    return out


# -- 5. the C step -----------------------------------------------------------------
def bench_c_step(args: argparse.Namespace) -> dict[str, Any]:
    import device_step

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the C step is single-threaded: so is the copy it is compared with
    try:
        names = ["pool 1021"] if args.quick else ["pool 1021", "rademacher (hash)"]
        sources = {}
        for name in names:
            log(f"c step: {name}")
            r = device_step.one_source(name, args.c_weights, args.c_repeats)
            r["c_update_vs_memcpy"] = r["c_update_ms"] / r["memcpy_ms"]
            sources[name] = r
        state = device_step.demo_state()
        compile_s = device_step.compile_seconds()
    finally:
        torch.set_num_threads(threads)
    return {
        "weights": args.c_weights,
        "repeats": args.c_repeats,
        "threads": 1,
        "dtype": "int16",
        "update": "sign-3 (three directions)",
        "sources": sources,
        "compile_s": compile_s,
        "demo_head_state_bytes": state,
        "tiny_training_sram_bytes": TINY_TRAINING_SRAM_BYTES,
        "state_share_of_tiny_training_sram": state / TINY_TRAINING_SRAM_BYTES,
    }


# -- environment and targets ---------------------------------------------------------
def environment(threads: int) -> dict[str, Any]:
    """step_overhead's environment, with ONNX Runtime's versions and settings."""
    import onnx
    import onnxruntime

    return {
        **torch_environment(threads),
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "ort_intra_op_threads": threads,
        "ort_allow_spinning": ORT_SPINNING["allow"],
    }


def targets(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "training" in results:
        gap = results["training"]["accuracy_gap_points"]
        out["training_accuracy_gap_le_0.5_points"] = {
            "value": gap, "limit": TARGETS["accuracy_gap_points"],
            "met": abs(gap) <= TARGETS["accuracy_gap_points"],
        }  # fmt: skip
    if "speed" in results:
        per = {}
        for tag, entry in results["speed"]["steps"].items():
            for fmt in ("FixedPointFormat", "DeviceFormat"):
                v = entry[fmt]["paired_median_ratio_to_two_forwards"]
                per[f"{tag}.{fmt}"] = {
                    "value": v,
                    "value_median_of_medians": entry[fmt]["ratio_to_two_forwards"],
                    "value_min": entry[fmt]["min_ratio_to_two_forwards"],
                    "met": v <= TARGETS["zo_step_vit"],
                }
        out["vit_ort_zo_step_le_1.10x_two_ort_forwards"] = {
            "limit": TARGETS["zo_step_vit"], "per_config": per,
            "met": all(p["met"] for p in per.values()),
        }  # fmt: skip
    if "memory" in results:
        per = {
            w: {"value": results["memory"][w]["training_to_inference"],
                "met": results["memory"][w]["training_to_inference"] <= TARGETS["memory"]}
            for w in MEMORY_WORKLOADS if w in results["memory"]
        }  # fmt: skip
        out["training_peak_rss_le_1.05x_inference"] = {
            "limit": TARGETS["memory"], "per_workload": per,
            "met": all(p["met"] for p in per.values()),
        }  # fmt: skip
    if "c_step" in results:
        b = results["c_step"]["demo_head_state_bytes"]
        out["demo_head_state_le_8KB"] = {
            "value": b, "limit": TARGETS["state_bytes"], "met": b <= TARGETS["state_bytes"],
        }  # fmt: skip
    return out


# -- main ----------------------------------------------------------------------------
SECTIONS = ("agreement", "training", "speed", "memory", "c_step")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (1-2 minutes)")
    ap.add_argument("--out", help="also write the JSON to this file")
    ap.add_argument("--threads", type=int, default=2, help="torch and ORT threads (default 2)")
    ap.add_argument("--repeats", type=int, help="timed rounds of forwards (default 30; quick 3)")
    ap.add_argument("--step-repeats", type=int, help="timed rounds of steps (default 30; quick 3)")
    ap.add_argument("--warmup", type=int, help="warm-up rounds (default 2; quick 1)")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--agreement-rows", type=int, help="test inputs per family (10000; quick 1000)")
    ap.add_argument("--minilm-sentences", type=int, help="MiniLM test sentences (512; quick 64)")
    ap.add_argument("--pretrain-steps", type=int, help="backprop steps per family (300; quick 60)")
    ap.add_argument("--train-steps", type=int, help="ZO steps of the training run (800; quick 100)")
    ap.add_argument("--memory-iters", type=int, help="forwards / steps per memory child (30; 3)")
    ap.add_argument("--c-weights", type=int, help="int16 weights of the C step (1M; quick 200k)")
    ap.add_argument("--c-repeats", type=int, help="repeats of the C step (21; quick 5)")
    ap.add_argument("--ort-spinning", action="store_true",
                    help="keep ONNX Runtime's spin-waiting pool threads (default: off)")  # fmt: skip
    ap.add_argument("--memory-child", choices=MEMORY_MODES, help=argparse.SUPPRESS)
    ap.add_argument("--workload", choices=MEMORY_WORKLOADS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    q = args.quick
    defaults = {
        "repeats": 3 if q else 30,
        "step_repeats": 3 if q else 30,
        "warmup": 1 if q else 2,
        "agreement_rows": 1000 if q else 10000,
        "minilm_sentences": 64 if q else 512,
        "pretrain_steps": 60 if q else 300,
        "train_steps": 100 if q else 800,
        "memory_iters": 3 if q else 30,
        "c_weights": 200_000 if q else 1_000_000,
        "c_repeats": 5 if q else 21,
    }
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    ORT_SPINNING["allow"] = args.ort_spinning
    if args.memory_child:
        res = memory_child(args.workload or "smallcnn_head", args.memory_child, args.memory_iters)
        print(json.dumps(res))
        return res
    t_start = time.perf_counter()
    config = {k: v for k, v in vars(args).items() if k not in ("memory_child", "workload", "out")}
    results: dict[str, Any] = {
        "benchmark": "runtime",
        "env": environment(args.threads),
        "config": {**config, "timer": "time.perf_counter"},
    }
    sections: dict[str, float] = {}
    with section(sections, "setup"):
        backbone, cached, _ = demo.pretrain(demo.FULL, progress=False)
        data = demo.load_data(demo.FULL)
        results["demo_backbone_from_cache"] = cached
    runners = {
        "agreement": lambda: bench_agreement(args, backbone, data),
        "training": lambda: bench_training(args, backbone, data),
        "speed": lambda: bench_speed(args, backbone, data),
        "memory": lambda: bench_memory(args),
        "c_step": lambda: bench_c_step(args),
    }
    for name in args.sections:
        with section(sections, name):
            results[name] = runners[name]()
    results["section_wall_s"] = sections
    results["targets"] = targets(results)
    results["env"]["loadavg_at_end"] = list(os.getloadavg())
    results["wall_s"] = time.perf_counter() - t_start
    emit_json(results, args.out)
    return results


if __name__ == "__main__":
    main()

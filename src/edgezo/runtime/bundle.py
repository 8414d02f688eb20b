"""Write what a device needs to run one model's QZO-FF step: C sources, a header, weights, manifest.

:func:`write_device_sources` takes a :class:`~edgezo.ZO` optimizer over fixed-point
weights (sign-m-SPSA, plain SGD: the step QZO-FF runs on an NPU) and writes into
``out_dir``:

* ``edgezo_step.h``, ``edgezo_step.c``: the portable C99 step (:mod:`.device`);
* ``edgezo_model.h``: generated for this model: tensor sizes and offsets, per-tensor
  or per-channel ``eps_q``, the update's ``(m, k)`` (fixed for sign-m-SPSA:
  ``lr * dz / (m * dw)``), the source (pool table, or register seeds and taps);
* ``main.c``: loads ``weights.bin``, makes the perturbed reads of one step and
  applies the update for loss signs given on the command line (the forwards run
  elsewhere), prints checksums;
* ``weights.bin``: the current integers, tensor after tensor, native byte order;
* ``manifest.json``: names, shapes, dtypes, scales, files, settings, edgezo version.

Build and run: ``cc -std=c99 -O2 main.c edgezo_step.c -o step && ./step weights.bin
STEP s_0 .. s_{m-1} out.bin``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

from .. import __version__
from ..formats.fixedpoint import FixedPointFormat, Requant
from ..optim import ZO
from ..params import Segment
from .clib import SOURCE_DIR
from .zsource import DeviceSource

FILES = {"header": "edgezo_model.h", "main": "main.c", "weights": "weights.bin",
         "manifest": "manifest.json", "sources": ["edgezo_step.h", "edgezo_step.c"]}  # fmt: skip


def write_device_sources(
    optimizer: ZO, out_dir: str | Path, model: nn.Module | None = None
) -> Path:
    """Write the C sources, model header, ``main.c``, weights and manifest; returns ``out_dir``.

    ``model`` (optional) names the tensors in the manifest. Raises ``ValueError``
    for a configuration ``main.c`` cannot step: float weights, an estimator
    other than ``"sign"``, momentum or weight decay.
    """
    fmt = fixed_format(optimizer)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in FILES["sources"]:
        shutil.copyfile(SOURCE_DIR / name, out / name)
    shutil.copyfile(SOURCE_DIR / "edgezo_main.c", out / FILES["main"])
    source = DeviceSource.of(fmt.directions, fmt.zf)
    lrs = [optimizer.param_groups[seg.group]["lr"] for seg in fmt.segments]
    factors = [
        update_requant(fmt, seg, lr, optimizer.queries)
        for seg, lr in zip(fmt.segments, lrs, strict=True)
    ]
    (out / FILES["header"]).write_text(model_header(optimizer, fmt, source, factors))
    with open(out / FILES["weights"], "wb") as f:
        for seg in fmt.segments:
            f.write(seg.param.data.contiguous().numpy().tobytes())
    info = manifest(optimizer, fmt, factors, names(fmt, model))
    (out / FILES["manifest"]).write_text(json.dumps(info, indent=1))
    return out


def fixed_format(optimizer: ZO) -> FixedPointFormat:
    """The optimizer's one fixed-point format, checked to be a step ``main.c`` can run."""
    fixed = [f for f in optimizer.formats if isinstance(f, FixedPointFormat)]
    if len(fixed) != 1 or len(fixed[0].segments) != len(optimizer.space.segments):
        raise ValueError(
            "A device bundle needs every trained tensor in fixed point: train the integers of "
            "edgezo.fixedpoint.quantize_model(...) only (trainable_parameters(model))."
        )
    problems = []
    if optimizer.estimator.name != "sign":
        problems.append(f"estimator={optimizer.estimator.name!r} (use 'sign': sign-m-SPSA)")
    if type(optimizer.update_rule).__name__ != "SGD":
        problems.append("momentum (use momentum=0: main.c applies one step's terms)")
    if any(g["weight_decay"] for g in optimizer.param_groups):
        problems.append("weight_decay (use 0)")
    if problems:
        raise ValueError(
            "main.c runs QZO-FF's sign-m-SPSA step, whose update factor is fixed; this "
            "optimizer has " + ", ".join(problems) + "."
        )
    return fixed[0]


def update_requant(fmt: FixedPointFormat, seg: Segment, lr: float, queries: int) -> Requant:
    """The sign-m-SPSA update's ``(m, k)``: the Python path's factor for weights ``+/-1/m``
    (:meth:`FixedPointFormat.update`, the same float operations in the same order)."""
    delta = abs(1.0 / queries)
    factor = lr * delta * fmt.zf.dz / seg.param.fixed.scale
    return Requant.of(torch.as_tensor(factor, dtype=torch.float64).reshape(-1, 1))


def c_array(ctype: str, name: str, values: list[int]) -> str:
    """``static const ctype name[] = {...};`` with 16 values a line."""
    wrap = {"int64_t": "INT64_C({})", "uint64_t": "UINT64_C({})"}.get(ctype, "{}")
    items = [wrap.format(int(v)) for v in values] or ["0"]
    lines = [", ".join(items[i : i + 16]) for i in range(0, len(items), 16)]
    return f"static const {ctype} {name}[] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


def source_lines(source: DeviceSource) -> list[str]:
    """The header's ``ez_src`` with its seeds and table."""
    s = source.source
    lines = [c_array("uint32_t", "ez_seeds", source.seeds.tolist())]
    table = "NULL"
    if source.table is not None:
        lines.append(c_array("int8_t", "ez_table", source.table.tolist()))
        table = "ez_table"
    edges = "NULL"
    if source.edges is not None:
        lines.append(c_array("uint32_t", "ez_edges", source.edges.tolist()))
        edges = "ez_edges"
    lines.append(
        f"static const ez_source ez_src = {{{s.kind}, {s.bits}u, {s.width}u, {s.taps}u, "
        f"{s.steps}u, {s.n_regs}u, ez_seeds, {table}, UINT64_C({s.size}), {edges}, "
        f"{s.n_edges}u, {s.z_min}, NULL}};\n"
    )
    return lines


def tensor_lines(fmt: FixedPointFormat, factors: list[Requant]) -> tuple[list[str], list[str]]:
    """Per tensor: its arrays, and its ``(ez_tensor, read buffer, read consts, factors)`` rows."""
    arrays, rows = [], []
    ctype = {torch.int8: "int8_t", torch.int16: "int16_t"}
    for t, (seg, eps_q, f) in enumerate(zip(fmt.segments, fmt.eps_q, factors, strict=True)):
        p = seg.param
        if p.dtype not in ctype:
            raise ValueError(f"Only int8/int16 weights go on the device, got {p.dtype}")
        n = p.numel()
        r = p.shape[0] if p.fixed.per_channel and p.dim() >= 2 else 1
        arrays.append(
            f"static {ctype[p.dtype]} ez_w{t}[{n}];\nstatic {ctype[p.dtype]} ez_r{t}[{n}];\n"
        )
        arrays.append(c_array("int32_t", f"ez_eps{t}", eps_q.reshape(-1).tolist()))
        arrays.append(c_array("int64_t", f"ez_m{t}", f.m.reshape(-1).tolist()))
        arrays.append(c_array("int32_t", f"ez_k{t}", f.k.reshape(-1).tolist()))
        mask = "NULL"
        if seg.mask is not None:
            packed = seg.mask.bits.cpu().numpy()  # 1 bit per weight, LSB first
            arrays.append(c_array("uint8_t", f"ez_mask{t}", packed.tolist()))
            mask = f"ez_mask{t}"
        rows.append(
            (
                f"{{ez_w{t}, {p.element_size()}u, {r}u, {n // r}u, {(1 << (p.fixed.bits - 1)) - 1}, {mask}}}",
                f"ez_r{t}",
                f"{{EZ_ONE, INT64_C({int(fmt.requant_dz.m)}), {int(fmt.requant_dz.k)}, ez_eps{t}, "
                f"{eps_q.numel()}u}}",
                f"{{ez_m{t}, ez_k{t}, {f.m.numel()}u}}",
            )
        )
    return arrays, rows


def model_header(optimizer: ZO, fmt: FixedPointFormat, source: DeviceSource, factors) -> str:
    """``edgezo_model.h``: everything of this model the step needs, as C data."""
    arrays, rows = tensor_lines(fmt, factors)
    n, words = len(rows), optimizer.queries * int(source.source.n_regs)
    offsets = [seg.offset for seg in fmt.segments]
    text = [
        f"/* edgezo_model.h -- generated by edgezo {__version__} (runtime.bundle); do not edit. */\n",
        '#ifndef EDGEZO_MODEL_H\n#define EDGEZO_MODEL_H\n\n#include "edgezo_step.h"\n\n',
        f"#define EZ_N_TENSORS {n}\n#define EZ_DIM UINT64_C({fmt.directions.dim})\n",
        f"#define EZ_SLOTS UINT64_C({fmt.directions.queries})\n#define EZ_QUERIES {optimizer.queries}\n",
        f"#define EZ_Z_BITS {fmt.zf.bits}\n#define EZ_ONE {fmt.zf.one}\n",
        f"#define EZ_COUNTER {int(source.counter)}\n\n",
        *source_lines(source),
        *arrays,
        c_array("uint64_t", "ez_offsets", offsets),
        "static ez_tensor ez_tensors[] = {\n    " + ",\n    ".join(r[0] for r in rows) + "\n};\n",
        "static void *const ez_reads[] = {" + ", ".join(r[1] for r in rows) + "};\n",
        "static const ez_read_params ez_read_consts[] = {\n    "
        + ",\n    ".join(r[2] for r in rows)
        + "\n};\n",
        "static const ez_factors ez_update_factors[] = {\n    "
        + ",\n    ".join(r[3] for r in rows)
        + "\n};\n",
        f"static ez_cursor ez_cursors[EZ_QUERIES];\nstatic uint32_t ez_words[{max(1, words)}];\n",
        "\n#endif /* EDGEZO_MODEL_H */\n",
    ]
    return "".join(text)


def names(fmt: FixedPointFormat, model: nn.Module | None) -> list[str]:
    """The tensors' names in ``model`` (``tensor<i>`` without a model)."""
    known = {} if model is None else {id(p): n for n, p in model.named_parameters()}
    return [known.get(id(seg.param), f"tensor{i}") for i, seg in enumerate(fmt.segments)]


def manifest(optimizer: ZO, fmt: FixedPointFormat, factors: list[Requant], labels) -> dict:
    """``manifest.json``: what each file holds and the settings that made the numbers."""
    tensors = []
    for seg, label, eps_q, f in zip(fmt.segments, labels, fmt.eps_q, factors, strict=True):
        p = seg.param
        tensors.append({
            "name": label, "shape": list(p.shape), "dtype": str(p.dtype).removeprefix("torch."),
            "bits": p.fixed.bits, "per_channel": bool(p.fixed.per_channel), "offset": seg.offset,
            "scale": p.fixed.scale.reshape(-1).tolist(), "eps_q": eps_q.reshape(-1).tolist(),
            "update_m": f.m.reshape(-1).tolist(), "update_k": f.k.reshape(-1).tolist(),
            "masked": seg.mask is not None,
        })  # fmt: skip
    return {
        "edgezo_version": __version__, "files": FILES, "tensors": tensors,
        "directions": fmt.directions.config(), "format": fmt.config(),
        "estimator": optimizer.estimator.name, "queries": optimizer.queries,
        "eps": optimizer.eps, "lr": [g["lr"] for g in optimizer.param_groups],
        "z": {"dz": fmt.zf.dz, "bits": fmt.zf.bits, "native": fmt.zf.native, "one": fmt.zf.one},
        "requant_dz": {"m": int(fmt.requant_dz.m), "k": int(fmt.requant_dz.k)},
        "byte_order": sys.byteorder, "step": optimizer.steps,
        "run": "cc -std=c99 -O2 main.c edgezo_step.c -o step && ./step weights.bin STEP s_0 .. "
               "s_{m-1} out.bin",
    }  # fmt: skip

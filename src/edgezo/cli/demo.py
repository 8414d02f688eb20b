"""``edgezo demo``: pretrain, shift, adapt with MeZO, PeZO and QZO-FF (:mod:`edgezo.studies.demo`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .args import make_dir, nonnegative_int, positive_int, writable_dir, writable_file
from .run import seed_list


def add_cli(subparsers: Any) -> None:
    """Register ``edgezo demo`` on the main CLI's subparsers."""
    p = subparsers.add_parser(
        "demo",
        help="pretrain a small CNN on MNIST, shift the domain, adapt it with MeZO, PeZO, QZO-FF",
        description=(
            "Last-mile adaptation with forward passes only: a SmallCNN pretrained with backprop "
            "on MNIST (cached after the first run) meets a washed-out, noisy camera; its "
            "classifier head is adapted with zeroth-order SGD (MeZO: Gaussian directions; PeZO: "
            "a pre-generated uniform pool; QZO-FF: 16-bit integer weights, 8-bit activations) "
            "on the same batches. Prints accuracy before and "
            "after, steps, forward passes and wall time. Cache: $EDGEZO_CACHE or ~/.cache/edgezo."
        ),
    )
    steps_help, seed_help = (
        "ZO steps per method (default 800)",
        ("seed of the adaptation: batch order and ZO directions (default 0)"),
    )
    p.add_argument("--steps", type=positive_int, default=None, metavar="N", help=steps_help)
    p.add_argument("--seed", type=nonnegative_int, metavar="S", default=0, help=seed_help)
    p.add_argument(
        "--seeds",
        type=seed_list,
        metavar="S,S,...",
        default=None,
        help="run the demo once per seed (e.g. 0,1,2; replaces --seed) and write DIR/demo.json: "
        "every seed's results, with provenance (the README's demo block is made from it)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=(
            "a much smaller run, a smoke test: 150 steps, 3000 images (about 25 s on 2 quiet "
            "cores with a cached backbone; use --threads 1 on a busy machine)"
        ),
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        metavar="T",
        default=None,
        help="torch CPU threads (default: torch's choice; use 1 on a busy machine)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument(
        "--json", metavar="FILE", type=writable_file, help="also write the results as JSON to FILE"
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        type=writable_dir,
        default="results/demo",
        help="directory of curves.png (and demo.json with --seeds), created if missing "
        "(default results/demo)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo with the parsed arguments; optionally write its results as JSON."""
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    from ..cache import atomic_write
    from ..studies.demo import demo_record, run_demo_seeds
    from ..studies.results import provenance

    make_dir(args.out)  # checked when parsed: a bad path fails before the run
    if args.json:
        make_dir(args.json.parent)
    seeds, made_by = args.seeds or (args.seed,), provenance()  # the code and tree that run
    runs = run_demo_seeds(
        seeds,
        steps=args.steps,
        quick=args.quick,
        progress=not args.no_progress,
        out=args.out,
    )
    if args.seeds:  # only when asked: a plain `make demo` must not replace the committed record
        text = json.dumps(demo_record(seeds, runs, made_by), indent=2, sort_keys=True) + "\n"
        atomic_write(args.out / "demo.json", lambda f: f.write(text.encode("utf-8")))
    if args.json:  # the first seed's whole result, loss histories included
        payload = {k: v for k, v in runs[0].items() if k != "table"}
        one = json.dumps(payload, indent=2, sort_keys=True) + "\n"
        atomic_write(args.json, lambda f: f.write(one.encode("utf-8")))
    return 0

"""``edgezo landscape [--quick] [--grid N] [--out DIR] [--directions pca|random]
[--seeds S,S,...]``: Figure 6.

The training and the figure are :func:`edgezo.studies.landscape.run`; it is
imported when the command runs.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from .args import int_at_least, make_dir, writable_dir
from .run import seed_list

#: The planes :mod:`edgezo.studies.landscape` draws (its ``DIRECTIONS``).
DIRECTIONS = ("pca", "random")


def add_cli(subparsers: Any) -> None:
    """Register ``edgezo landscape`` on the main CLI's subparsers."""
    p = subparsers.add_parser(
        "landscape",
        help="loss-landscape grid (QZO-FF Figure 6): BP, ZO, QZO-FF 16w8a / 8w8a; LP and VPT",
        description=(
            "Adapt the cross-domain study's ViT (pretrained on MNIST, cached) to Fashion-MNIST "
            "with backprop, ZO, QZO-FF 16w8a and QZO-FF 8w8a, by linear probing and by deep "
            "prompt tuning, recording each weight path; evaluate the training loss on a grid "
            "of the path's PCA plane around the final weights (Li et al. 2018). Writes "
            "landscape.png, landscape.md and landscape.json under --out."
        ),
    )
    p.add_argument("--quick", action="store_true", help="small data, few steps, small grid")
    p.add_argument(
        "--grid", type=int_at_least(2), default=None, metavar="N",
        help="points per axis (default 31, quick 15)",
    )  # fmt: skip
    p.add_argument(
        "--directions", choices=DIRECTIONS, default="pca", metavar="|".join(DIRECTIONS),
        help="the plane: the path's PCA directions (default) or random filter-normalized ones",
    )  # fmt: skip
    p.add_argument(
        "--out",
        metavar="DIR",
        type=writable_dir,
        default="results/landscape",
        help="output directory, created if missing (default results/landscape)",
    )
    p.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of everything random (default 0)"
    )
    p.add_argument(
        "--seeds", type=seed_list, default=None, metavar="S,S,...",
        help="one landscape per seed under OUT/seed-S (finished ones kept), merged into "
        "OUT/landscape.json: the first seed's figure, every seed's numbers for the claims",
    )  # fmt: skip
    p.add_argument(
        "--threads", type=int_at_least(1), default=None, metavar="T", help="torch CPU threads"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Train and draw Figure 6 with the parsed options; print its summary as JSON."""
    import torch

    from ..studies import landscape

    make_dir(args.out)  # checked when parsed: a bad path fails before the training
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cfg = landscape.QUICK if args.quick else landscape.FULL
    cfg = replace(cfg, grid=args.grid or cfg.grid, directions=args.directions)
    if not args.seeds:
        summary = landscape.run(args.quick, args.out, args.seed, not args.no_progress, cfg)
        print(json.dumps(summary, indent=2))
        return 0
    for seed in args.seeds:
        folder = Path(args.out) / f"seed-{seed}"
        if (folder / "landscape.json").is_file():
            print(f"landscape seed {seed}: kept, finished in {folder} (delete it to run it again)")
            continue
        landscape.run(args.quick, folder, seed, not args.no_progress, cfg)
    print(json.dumps(landscape.merge_seeds(Path(args.out), args.seeds), indent=2))
    return 0

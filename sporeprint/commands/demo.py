"""Run the whole job on simulated data: simulate a FungiCLEF-like dataset,
ingest it into a DuckDB store, encode metadata, split, index, train a two-fold
head ensemble, embed a few hundred photos with a tiny DINOv2 built locally,
score the held-out batch with poison-safe decisions, evaluate, and print a
report. Needs no downloads. The store is kept for further queries."""

from __future__ import annotations

HELP = "run the end-to-end demo on simulated data (start here)"
EXAMPLE = "sporeprint demo --dir demo-run --scale small"


def add_arguments(parser) -> None:
    parser.add_argument("--dir", default="demo-run", help="working directory (default: demo-run)")
    parser.add_argument("--scale", choices=["small", "medium", "full"], default="small",
                        help="small: a few thousand observations, a few minutes on 2 cores")
    parser.add_argument("--seed", type=int, default=0, help="simulation and training seed")
    parser.add_argument("--epochs", type=int, help="epochs per fold (default depends on scale)")
    parser.add_argument("--photos", type=int,
                        help="held-out observations that get real JPEGs (default depends on scale)")


def run(args) -> int:
    import logging

    from sporeprint.demo import run_demo

    if not args.verbose:  # the demo prints its own progress
        logging.getLogger().setLevel(logging.WARNING)
    report = run_demo(args.dir, args.scale, args.seed, args.epochs, args.photos)
    print()
    print("\n".join(report.lines))
    return 0

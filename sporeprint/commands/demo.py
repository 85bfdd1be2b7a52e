"""Run the whole job on simulated data: simulate a FungiCLEF-like dataset with a
photo of every image, ingest it into a DuckDB store, encode metadata, split,
index, train a two-fold head ensemble on the simulator's vectors and another on
the photos embedded by a tiny DINOv2 built locally, score the held-out batch
both ways with poison-safe decisions, evaluate, and print a report. Needs no
downloads. The store is kept for further queries; its default run (score, serve,
report) is the photo ensemble, so `sporeprint serve` identifies dropped photos."""

from __future__ import annotations

HELP = "run the end-to-end demo on simulated data (start here)"
EXAMPLE = "sporeprint demo --dir demo-run --scale small"


def add_arguments(parser) -> None:
    parser.add_argument("--dir", default="demo-run", help="working directory (default: demo-run)")
    parser.add_argument("--scale", choices=["small", "medium", "full"], default="small",
                        help="small: a few thousand observations, about a minute on 2 cores")
    parser.add_argument("--seed", type=int, default=0, help="simulation and training seed")
    parser.add_argument("--epochs", type=int, help="epochs per fold (default depends on scale)")
    parser.add_argument("--photos", type=int,
                        help="held-out observations that get photos (default: all of them at small and "
                             "medium scale, 1000 at full); training and validation images "
                             "always get one")


def run(args) -> int:
    import logging

    from sporeprint.demo import run_demo

    if not args.verbose:  # the demo prints its own progress
        logging.getLogger().setLevel(logging.WARNING)
    report = run_demo(args.dir, args.scale, args.seed, args.epochs, args.photos)
    print()
    print("\n".join(report.lines))
    return 0

"""Write one self-contained HTML report of a store. It leads with the scored batch's
safety (poisonous mushrooms answered edible, poison-risk answers, the unknown rate, the
decision rule, recall per poisonous species), then the data (class long tail, poisonous
shares, months, regions, missing values), an embedding map of training observations, a
run's recorded scores, training curves and calibration, held-out decisions per rule, the
batch's answers and poison-risk flags with their evidence, the danger frontier where
edible and poisonous look-alikes meet, and the poisonous/edible/unknown confusion of
labelled predictions. Images are embedded; the file opens without a network. The store
is opened read-only."""

from __future__ import annotations

HELP = "write an HTML report of the store, a run and a scored batch"
EXAMPLE = "sporeprint report --store demo-run/fungi.duckdb --out demo-run/report.html"


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="the store (DuckDB file)")
    parser.add_argument("--out", default="report.html", help="HTML file to write (default: report.html)")
    parser.add_argument("--run", help="ensemble or fold run id (default: the newest ensemble run)")
    parser.add_argument("--batch", help="scored batch in the predictions table (default: the newest)")
    parser.add_argument("--space", help="embedding space of the map and the frontier "
                                        "(default: the run's space)")
    parser.add_argument("--map-points", type=_positive, default=2000,
                        help="training observations on the embedding map (default: 2000)")
    parser.add_argument("--frontier-points", type=_positive, default=10000,
                        help="training observations searched for cross-toxicity neighbours "
                             "(default: 10000)")
    parser.add_argument("--heldout-points", type=_positive, default=500,
                        help="held-out test observations decided for the run's Track 1-3, "
                             "reliability and unknown-score figures (default: 500)")
    parser.add_argument("--truth", help="CSV of the batch's true classes (observation id, class_id) "
                                        "for the safety panel's missed poisonous count and the "
                                        "poisonous/edible/unknown confusion, when the store "
                                        "holds no labels for it")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")


def _positive(value: str) -> int:
    import argparse

    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 10:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 10")
    return n


def run(args) -> int:
    from sporeprint.report import ReportOptions, build_report
    from store import FeatureStore

    options = ReportOptions(run=args.run, batch=args.batch, space=args.space,
                            map_points=args.map_points, frontier_points=args.frontier_points,
                            heldout_points=args.heldout_points,
                            seed=args.seed, truth=args.truth)
    with FeatureStore(args.store, read_only=True) as fs:
        summary = build_report(fs, args.out, options)
    print("\n".join(summary.lines()))
    print(f"open it with: xdg-open {args.out}   (or any browser; no network needed)")
    return 0

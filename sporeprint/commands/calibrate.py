"""Fit the calibration of trained heads and record it in the store's runs table:
the temperature, the unknown-species detector and its threshold, P(unknown) and
the poison prior shift (and, for heads trained with `--calibration holdout`, the
conformal scores behind `score --coverage`), on the validation observations the runs' calibration
mode names (docs/scoring.md). `sporeprint train` already does this for the runs
it trains; run it for runs trained before training did, or after the labels of
the validation observations changed. Scoring only reads the record."""

from __future__ import annotations

import argparse

HELP = "(re)fit and record the calibration of trained heads"
EXAMPLE = """
  sporeprint calibrate --store fungi.duckdb --run dinov2_l-mlp-ensemble-20250101-120000-s0"""


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True,
                        help="the store (DuckDB file), opened writable")
    parser.add_argument("--run", nargs="+", metavar="RUN", default=argparse.SUPPRESS,
                        help="run id(s): an ensemble run or fold heads, scored together (default: "
                             "the most recently trained ensemble, else head; what `sporeprint "
                             "score` uses)")


def run(args) -> int:
    from sporeprint.errors import CommandError
    from sporeprint.scoring.calibration import fit_and_record, record_id
    from sporeprint.scoring.runs import resolve_runs
    from store import FeatureStore

    with FeatureStore(args.store, create=False) as fs:
        run_ids = [r.strip() for arg in getattr(args, "run", []) for r in arg.split(",")
                   if r.strip()]
        if not run_ids:
            default = fs.default_run()
            if default is None:
                raise CommandError(f"store {args.store} has no trained heads; run `sporeprint "
                                   "train` first")
            run_ids = [default]
        cal = fit_and_record(fs, run_ids)
        key = record_id([r["run_id"] for r in resolve_runs(fs, run_ids)])
    print(f"{key}\t{cal.summary()}")
    return 0

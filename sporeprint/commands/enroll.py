"""Enroll species the trained heads never saw, from expert-labelled observations already
in the store (a scored batch, validation or test observations), so that `score`, the
Python API and `serve` answer them at once, without retraining (docs/enrollment.md).
Every enrollment is recorded (who, when, which file and its SHA-256 digest) and can be
undone, which restores the previous answers exactly."""

from __future__ import annotations

HELP = "enroll new species from expert-labelled stored observations (or list / undo)"
EXAMPLE = """
  sporeprint enroll --store fungi.duckdb --labels experts.csv
  sporeprint enroll --store fungi.duckdb --list
  sporeprint enroll --store fungi.duckdb --undo 1"""


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="the store (DuckDB file)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--labels", metavar="FILE",
                      help="CSV or Parquet: observation_id, species, and optionally genus, "
                           "family, poisonous (yes/no; empty = unknown, treated as possibly "
                           "poisonous)")
    what.add_argument("--undo", type=int, metavar="ID",
                      help="undo enrollment ID (its record stays)")
    what.add_argument("--list", action="store_true",
                      help="list the enrollments and the enrolled species in force")
    parser.add_argument("--by", default=None,
                        help="who enrolls or undoes, as recorded (default: the login name)")


def run(args) -> int:
    from sporeprint import enrollment
    from store import FeatureStore

    if args.list:
        with FeatureStore(args.store, read_only=True, create=False) as fs:
            print("\n".join(enrollment.list_lines(fs)))
        return 0
    with FeatureStore(args.store, create=False) as fs:
        if args.undo is not None:
            done = enrollment.undo(fs, args.undo, args.by)
            print(f"enrollment {done['enrollment_id']} undone ({done['n_observations']} "
                  "observations no longer enrolled); restart `sporeprint serve` to answer as "
                  "before")
            return 0
        report, warnings = enrollment.enroll(fs, args.labels, args.by)
    for line in report.lines() + [f"  warning: {w}" for w in warnings]:
        print(line)
    print(f"  undo with: sporeprint enroll --store {args.store} --undo {report.enrollment_id}")
    return 0

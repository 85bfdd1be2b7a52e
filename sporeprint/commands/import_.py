"""Import Parquet into a store. Without --table: a folder written by `sporeprint
export` (every table) is restored into a new, empty store — the store id, splits,
runs and predictions included. With --table: a Parquet file or folder is added to
that table; rows whose key is already stored are skipped, so importing twice adds
nothing. One transaction: a failure changes nothing."""

from __future__ import annotations

HELP = "import Parquet (a whole export, or one table) into a store"


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True,
                        help="DuckDB store file (a whole export needs a new store)")
    parser.add_argument("--table", help="table to insert into (default: restore a whole export)")
    parser.add_argument("--path", required=True, help="Parquet file or folder")


def run(args) -> int:
    from store import FeatureStore

    with FeatureStore(args.store) as fs:  # importing into a new store creates it
        if args.table:
            n = fs.import_parquet(args.table, args.path)
            print(f"imported {n:,} new rows into {args.table} from {args.path}")
            return 0
        added = fs.import_all(args.path)
    print(f"restored {sum(added.values()):,} rows into {args.store}: " +
          ", ".join(f"{t} {n:,}" for t, n in sorted(added.items())))
    return 0

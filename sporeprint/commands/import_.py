"""Import Parquet files (a file or a folder written by `sporeprint export`) into a
store table. Rows whose key is already stored are skipped, so importing twice
adds nothing. One transaction: a failure changes nothing."""

from __future__ import annotations

HELP = "import Parquet files into a store table"


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="DuckDB store file")
    parser.add_argument("--table", required=True, help="table to insert into")
    parser.add_argument("--path", required=True, help="Parquet file or folder")


def run(args) -> int:
    from store import FeatureStore

    with FeatureStore(args.store) as fs:  # importing into a new store creates it
        n = fs.import_parquet(args.table, args.path)
    print(f"imported {n:,} new rows into {args.table} from {args.path}")
    return 0

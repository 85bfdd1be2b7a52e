"""Export a store table as Parquet (optionally hive-partitioned by columns), for
interchange and for batch jobs that run elsewhere. The store is opened read-only."""

from __future__ import annotations

HELP = "export a store table to Parquet"


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="DuckDB store file")
    parser.add_argument("--table", required=True, help="table name, e.g. observations, emb_dinov2_l")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--partition-by", nargs="+", metavar="COLUMN",
                        help="hive-partition the files by these columns")


def run(args) -> int:
    from store import FeatureStore

    with FeatureStore(args.store, read_only=True, create=False) as fs:
        n = fs.export_parquet(args.table, args.out, partition_by=args.partition_by)
    print(f"exported {n:,} rows of {args.table} to {args.out}")
    return 0

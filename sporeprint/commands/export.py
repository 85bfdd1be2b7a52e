"""Export a store as Parquet for interchange and for batch jobs that run elsewhere
(Ray Data, Spark, DuckDB, pandas — no sporeprint needed to read it). Without
--table every table is written (observations, images, species, each embedding
space with its spec, features, encoders, splits, runs, predictions partitioned by
batch, rejects, embedding failures, meta; docs/parquet.md describes each file);
with --table just that one, optionally hive-partitioned. The store is opened
read-only."""

from __future__ import annotations

HELP = "export the store (or one table) to Parquet"
EXAMPLE = "sporeprint export --store fungi.duckdb --out export/"


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="DuckDB store file")
    parser.add_argument("--table", help="one table, e.g. observations, emb_dinov2_l "
                                        "(default: every table)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--partition-by", nargs="+", metavar="COLUMN",
                        help="with --table: hive-partition the files by these columns")


def run(args) -> int:
    from sporeprint.errors import CommandError
    from store import FeatureStore

    if args.partition_by and not args.table:
        raise CommandError("--partition-by applies to one --table; drop it to export everything")
    with FeatureStore(args.store, read_only=True, create=False) as fs:
        if args.table:
            n = fs.export_parquet(args.table, args.out, partition_by=args.partition_by)
            print(f"exported {n:,} rows of {args.table} to {args.out}")
            return 0
        files = fs.export_all(args.out)
    print(f"exported {len(files)} tables to {args.out}: " + ", ".join(sorted(files)))
    return 0

"""Run one SQL statement against a store and print or save the result. The store
is opened read-only unless --write is given; read-only SQL cannot read or write
files (COPY, read_csv, glob, ATTACH ...) or install/load extensions — use
--format/--out to save a result. With --write the statement may change the store
and use DuckDB's file functions. Tables: species, observations,
images, embedding_spaces, emb_<space>, embedding_failures, rejects, encoders,
features, splits, runs, predictions."""

from __future__ import annotations

HELP = "run SQL on a store (read-only unless --write)"
EXAMPLE = (
    'sporeprint sql --store fungi.duckdb "SELECT role, count(*) AS n FROM observations GROUP BY 1"'
    '\nsporeprint sql --store fungi.duckdb --timeout 600 --memory-limit 8GB "SELECT count(*) FROM images"'
)
DEFAULT_TIMEOUT = 60.0


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="DuckDB store file")
    parser.add_argument("query", help='SQL, e.g. "SELECT role, count(*) FROM observations GROUP BY 1"')
    parser.add_argument("--format", default="table", choices=["table", "csv", "json", "parquet"],
                        help="output format; parquet needs --out")
    parser.add_argument("--out", metavar="FILE", help="write the result to FILE instead of stdout")
    parser.add_argument("--write", action="store_true", help="open the store for writing")
    parser.add_argument("--max-rows", type=int, default=50, help="rows shown by --format table")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help="stop the statement after this many seconds (it then changes "
                             "nothing)")
    parser.add_argument("--memory-limit", metavar="SIZE",
                        help="DuckDB's memory limit, e.g. 4GB or 512MiB (default: DuckDB's, "
                             "80%% of RAM)")


def format_table(table, max_rows: int = 50, max_width: int = 40) -> str:
    """Aligned plain-text rendering of an Arrow table."""
    rows = table.slice(0, max_rows).to_pylist()
    names = table.column_names

    def cell(v) -> str:
        s = "NULL" if v is None else str(v)
        return s if len(s) <= max_width else s[: max_width - 1] + "…"

    grid = [[cell(r[n]) for n in names] for r in rows]
    widths = [max([len(n)] + [len(g[i]) for g in grid]) for i, n in enumerate(names)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(g, widths, strict=True)) for g in grid]
    if table.num_rows > max_rows:
        lines.append(f"... {table.num_rows - max_rows:,} more rows ({table.num_rows:,} in all)")
    else:
        lines.append(f"({table.num_rows:,} rows)")
    return "\n".join(lines)


def run(args) -> int:
    import io
    import json
    import sys

    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from sporeprint.errors import CommandError
    from store import FeatureStore

    if args.format == "parquet" and not args.out:
        raise CommandError("--format parquet needs --out FILE")
    if args.max_rows < 0:
        raise CommandError(f"--max-rows {args.max_rows} is negative; pass 0 or more")
    if not 0 < args.timeout < float("inf"):
        raise CommandError(f"--timeout {args.timeout:g} must be a positive number of seconds")
    with FeatureStore(args.store, read_only=not args.write, create=False,
                      memory_limit=args.memory_limit) as fs:
        table = fs.sql(args.query, timeout=args.timeout)
    if args.format == "parquet":
        pq.write_table(table, args.out)
        print(f"wrote {table.num_rows:,} rows to {args.out}")
        return 0
    if args.format == "csv":
        buf = io.BytesIO()
        pacsv.write_csv(table, buf)
        text = buf.getvalue().decode("utf-8")
    elif args.format == "json":
        text = json.dumps(table.to_pylist(), default=str, indent=1) + "\n"
    else:
        text = format_table(table, args.max_rows) + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote {table.num_rows:,} rows to {args.out}")
    else:
        sys.stdout.write(text)
    return 0

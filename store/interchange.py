"""Parquet export / import of store tables, and the predictions writer.

File IO goes through pyarrow, never through DuckDB's COPY or file readers, so it
also works on a sandboxed (read-only) store.
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .errors import StoreError
from .schema import q

log = logging.getLogger(__name__)

AUTO_COLUMNS = ("ingested_at", "created_at", "recorded_at", "split_seed", "relative_path")


def table_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND NOT temporary ORDER BY 1").fetchall()]


def _check_table(con: duckdb.DuckDBPyConnection, table: str) -> None:
    names = table_names(con)
    if table not in names:
        raise StoreError(f"table {table!r} does not exist; choose one of {', '.join(names)}")


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = ? ORDER BY column_index", [table]).fetchall()]


BATCH_ROWS = 65_536


def _arrow_schema(schema: pa.Schema) -> pa.Schema:
    """Name list children ``element`` (DuckDB leaves them unnamed), as Parquet tools expect."""
    fields = []
    for f in schema:
        t = f.type
        if pa.types.is_fixed_size_list(t):
            t = pa.list_(pa.field("element", t.value_type), t.list_size)
        elif pa.types.is_list(t):
            t = pa.list_(pa.field("element", t.value_type))
        fields.append(pa.field(f.name, t, f.nullable))
    return pa.schema(fields)


def table_reader(con: duckdb.DuckDBPyConnection, table: str,
                 batch_rows: int = BATCH_ROWS) -> pa.RecordBatchReader:
    """A stream of a table's rows as Arrow record batches (memory of one batch at a time)."""
    reader = con.sql(f"SELECT * FROM {q(table)}").to_arrow_reader(batch_rows)
    schema = _arrow_schema(reader.schema)
    if schema == reader.schema:
        return reader
    return pa.RecordBatchReader.from_batches(
        schema, (b.cast(schema) for b in reader))


def export_parquet(con: duckdb.DuckDBPyConnection, table: str, out_dir: str | Path,
                   partition_by: list[str] | str | None = None) -> int:
    """Write ``table`` to ``out_dir`` (``<table>.parquet``, or hive partitions
    ``col=value/part-0.parquet``); returns rows written.

    The rows stream from DuckDB as Arrow batches and pyarrow writes the files, so this
    works on a store whose SQL may not touch files."""
    _check_table(con, table)
    cols = _columns(con, table)
    if isinstance(partition_by, str):
        partition_by = [partition_by]
    partition_by = list(partition_by or [])
    bad = [c for c in partition_by if c not in cols]
    if bad:
        raise StoreError(f"cannot partition {table!r} by {bad}: no such column; columns are "
                         f"{', '.join(cols)}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        reader = table_reader(con, table)
        n = 0
        if partition_by:
            counted = _counting(reader)
            ds.write_dataset(
                counted.reader, out, format="parquet",
                partitioning=ds.partitioning(
                    pa.schema([reader.schema.field(c) for c in partition_by]), flavor="hive"),
                basename_template="part-{i}.parquet", existing_data_behavior="overwrite_or_ignore",
                max_partitions=1_000_000, max_open_files=512)
            n = counted.rows
            target = out
        else:
            target = out / f"{table}.parquet"
            tmp = target.with_name(target.name + ".tmp")
            with pq.ParquetWriter(tmp, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    n += batch.num_rows
            tmp.replace(target)
    except OSError as exc:
        raise StoreError(f"cannot write {table!r} to {str(out)!r}: {exc}; pass a folder you "
                         "can write to") from exc
    log.info("exported %d rows of %s to %s", n, table, target)
    return n


class _counting:
    """Wrap a reader and count the rows that pass through it."""

    def __init__(self, reader: pa.RecordBatchReader) -> None:
        self.rows = 0

        def batches():
            for b in reader:
                self.rows += b.num_rows
                yield b
        self.reader = pa.RecordBatchReader.from_batches(reader.schema, batches())


def parquet_files(path: str | Path) -> list[str]:
    path = Path(path)
    if path.is_dir():
        return sorted(str(p) for p in path.rglob("*.parquet"))
    return [str(path)] if path.is_file() else []


def open_parquet(path: str | Path) -> ds.Dataset:
    """A pyarrow dataset over a Parquet file or a (hive-partitioned) folder."""
    path = Path(path)
    files = parquet_files(path)
    if not files:
        raise StoreError(f"no Parquet files at {str(path)!r}; pass a .parquet file or a folder "
                         "written by export")
    try:
        if path.is_dir():
            return ds.dataset(files, format="parquet", partitioning="hive",
                              partition_base_dir=str(path))
        return ds.dataset(files, format="parquet")
    except (pa.ArrowException, OSError) as exc:
        raise StoreError(f"{str(path)!r} is not readable Parquet ({exc}); pass files written "
                         "by export") from exc


def import_parquet(con: duckdb.DuckDBPyConnection, table: str, path: str | Path) -> int:
    """Insert rows of a Parquet file or folder into ``table``; returns rows added.

    Rows whose primary key is already present are skipped (tables without a key
    skip rows identical to a stored one), so importing twice adds nothing. The
    files are read with pyarrow, batch by batch."""
    _check_table(con, table)
    dataset = open_parquet(path)
    cols = _columns(con, table)
    names = dataset.schema.names
    missing = [c for c in cols if c not in names and c not in AUTO_COLUMNS]
    if missing:
        raise StoreError(f"Parquet at {str(path)!r} lacks columns {missing} of table {table!r}; "
                         "import files exported from the same table")
    take = [c for c in cols if c in names]
    select = ", ".join(q(c) for c in take)
    has_key = con.execute(
        "SELECT count(*) FROM duckdb_constraints() WHERE table_name = ? AND "
        "constraint_type = 'PRIMARY KEY' AND database_name = current_database()",
        [table]).fetchall()[0][0] > 0
    before = con.execute(f"SELECT count(*) FROM {q(table)}").fetchall()[0][0]
    try:
        for batch in dataset.to_batches(columns=take, batch_size=BATCH_ROWS):
            con.register("_import_rows", pa.Table.from_batches([batch]))
            try:
                if has_key:
                    con.execute(f"INSERT OR IGNORE INTO {q(table)} ({select}) "
                                f"SELECT {select} FROM _import_rows")
                else:
                    con.execute(f"INSERT INTO {q(table)} ({select}) SELECT {select} FROM "
                                f"_import_rows EXCEPT SELECT {select} FROM {q(table)}")
            finally:
                con.unregister("_import_rows")
    except (pa.ArrowException, OSError) as exc:
        raise StoreError(f"cannot read {str(path)!r} ({exc}); pass files written by "
                         "export") from exc
    added = con.execute(f"SELECT count(*) FROM {q(table)}").fetchall()[0][0] - before
    log.info("imported %d rows into %s from %s", added, table, path)
    return added


def write_predictions(con: duckdb.DuckDBPyConnection, run_key: str, batch: str,
                      table: pa.Table) -> int:
    """Delete the ``(run_key, batch)`` predictions and insert ``table``'s rows."""
    cols = _columns(con, "predictions")
    extra = [c for c in table.column_names if c not in cols]
    if extra:
        raise StoreError(f"prediction columns {extra} are not in the predictions table; "
                         f"allowed: {', '.join(cols)}")
    if "observation_id" not in table.column_names:
        raise StoreError("predictions need an observation_id column")
    given = [c for c in table.column_names if c not in ("run_key", "batch")]
    con.execute("DELETE FROM predictions WHERE run_key = ? AND batch = ?", [run_key, batch])
    con.register("_pred_rows", table)
    try:
        names = ", ".join(q(c) for c in given)
        con.execute(f"INSERT INTO predictions (run_key, batch, {names}) "
                    f"SELECT $run_key, $batch, {names} FROM _pred_rows",
                    {"run_key": run_key, "batch": batch})
    finally:
        con.unregister("_pred_rows")
    return table.num_rows

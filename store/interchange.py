"""Parquet export / import of store tables, and the predictions writer."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pyarrow as pa

from .errors import StoreError
from .schema import q

log = logging.getLogger(__name__)


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


def export_parquet(con: duckdb.DuckDBPyConnection, table: str, out_dir: str | Path,
                   partition_by: list[str] | str | None = None) -> int:
    """Write ``table`` to ``out_dir`` (one file, or hive partitions); returns rows written."""
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
    out.mkdir(parents=True, exist_ok=True)
    n = con.execute(f"SELECT count(*) FROM {q(table)}").fetchall()[0][0]
    target = str(out) if partition_by else str(out / f"{table}.parquet")
    options = "FORMAT parquet"
    if partition_by:
        options += f", PARTITION_BY ({', '.join(q(c) for c in partition_by)}), OVERWRITE_OR_IGNORE"
    # the target path is a COPY option that cannot be bound; quote it as a string literal
    literal = "'" + target.replace("'", "''") + "'"
    con.execute(f"COPY (SELECT * FROM {q(table)}) TO {literal} ({options})")
    log.info("exported %d rows of %s to %s", n, table, target)
    return n


def import_parquet(con: duckdb.DuckDBPyConnection, table: str, path: str | Path) -> int:
    """Insert rows of a Parquet file or folder into ``table``; returns rows added.

    Rows whose primary key is already present are skipped (tables without a key
    skip rows identical to a stored one), so importing twice adds nothing."""
    _check_table(con, table)
    path = Path(path)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*.parquet"))
    elif path.is_file():
        files = [str(path)]
    else:
        files = []
    if not files:
        raise StoreError(f"no Parquet files at {str(path)!r}; pass a .parquet file or a folder "
                         "written by export")
    cols = _columns(con, table)
    rel = con.read_parquet(files, hive_partitioning=path.is_dir(), union_by_name=True)
    missing = [c for c in cols if c not in rel.columns and c not in ("ingested_at", "created_at",
                                                                      "recorded_at")]
    if missing:
        raise StoreError(f"Parquet at {str(path)!r} lacks columns {missing} of table {table!r}; "
                         "import files exported from the same table")
    take = [c for c in cols if c in rel.columns]
    select = ", ".join(q(c) for c in take)
    con.register("_import_rows", rel.select(select).to_arrow_table())
    try:
        before = con.execute(f"SELECT count(*) FROM {q(table)}").fetchall()[0][0]
        has_key = con.execute(
            "SELECT count(*) FROM duckdb_constraints() WHERE table_name = ? AND "
            "constraint_type = 'PRIMARY KEY' AND database_name = current_database()",
            [table]).fetchall()[0][0] > 0
        if has_key:
            con.execute(f"INSERT OR IGNORE INTO {q(table)} ({select}) "
                        f"SELECT {select} FROM _import_rows")
        else:
            con.execute(f"INSERT INTO {q(table)} ({select}) SELECT {select} FROM _import_rows "
                        f"EXCEPT SELECT {select} FROM {q(table)}")
        added = con.execute(f"SELECT count(*) FROM {q(table)}").fetchall()[0][0] - before
    finally:
        con.unregister("_import_rows")
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

"""Parquet export / import of store tables, and the predictions writer.

File IO goes through pyarrow, never through DuckDB's COPY or file readers, so it
also works on a sandboxed (read-only) store.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .errors import StoreError
from .reference import poison_status
from .schema import embedding_table_ddl, q
from .spaces import EmbeddingSpace

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
            # partition values stay strings (a batch called "007" must not become 7);
            # the insert casts them to the column's type
            keys = sorted({seg.split("=", 1)[0] for f in files
                           for seg in Path(f).relative_to(path).parts[:-1] if "=" in seg})
            partitioning = ds.partitioning(pa.schema([(k, pa.string()) for k in keys]),
                                           flavor="hive")
            return ds.dataset(files, format="parquet", partitioning=partitioning,
                              partition_base_dir=str(path))
        return ds.dataset(files, format="parquet")
    except (pa.ArrowException, OSError) as exc:
        raise StoreError(f"{str(path)!r} is not readable Parquet ({exc}); pass files written "
                         "by export") from exc


def import_parquet(con: duckdb.DuckDBPyConnection, table: str, path: str | Path,
                   append: bool = False) -> int:
    """Insert rows of a Parquet file or folder into ``table``; returns rows added.

    Rows whose primary key is already present are skipped (tables without a key
    skip rows identical to a stored one), so importing twice adds nothing; with
    ``append`` every row is inserted as it is (restoring into an empty table). The
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
                if append:
                    con.execute(f"INSERT INTO {q(table)} ({select}) "
                                f"SELECT {select} FROM _import_rows")
                elif has_key:
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


# -- the whole store as Parquet --------------------------------------------------------

# Plain tables in the order import_all loads them; emb_<space> tables come from the
# embedding_spaces rows. Tables partitioned by a column get a folder of hive partitions.
EXPORT_TABLES = ("meta", "species", "observations", "images", "embedding_spaces",
                 "embedding_failures", "rejects", "encoders", "features", "splits", "runs",
                 "predictions")
PARTITIONS = {"predictions": ["batch"]}
MANIFEST = "manifest.json"


def export_all(con: duckdb.DuckDBPyConnection, out_dir: str | Path) -> dict[str, list[str]]:
    """Write every table as Parquet under ``out_dir``; returns ``{table: [files]}``.

    ``<table>.parquet`` for each table, ``emb_<space>.parquet`` plus ``emb_<space>.json``
    (the space's spec) per embedding space, ``predictions/batch=<batch>/part-0.parquet``,
    and ``manifest.json`` (store id, schema version, files and row counts)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spaces = con.execute("SELECT space, model_id, revision, dim, pooling, dtype, preprocessing, "
                         "table_name FROM embedding_spaces ORDER BY 1").fetchall()
    files: dict[str, list[str]] = {}
    rows: dict[str, int] = {}
    for table in EXPORT_TABLES:
        partition = PARTITIONS.get(table)
        target = out / table if partition else out
        if partition and target.exists():  # a new export replaces the old partitions
            for old in target.rglob("*.parquet"):
                old.unlink()
        rows[table] = export_parquet(con, table, target, partition)
        files[table] = (sorted(str(p) for p in target.rglob("*.parquet")) if partition
                        else [str(out / f"{table}.parquet")])
    for space, model_id, revision, dim, pooling, dtype, preprocessing, table in spaces:
        rows[table] = export_parquet(con, table, out)
        spec = {"name": space, "model_id": model_id, "revision": revision, "dim": dim,
                "pooling": pooling, "dtype": dtype,
                "preprocessing": json.loads(preprocessing) if preprocessing else {}}
        sidecar = out / f"{table}.json"
        sidecar.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        files[table] = [str(out / f"{table}.parquet"), str(sidecar)]
    meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    manifest = {"format": "sporeprint-store-parquet", "store_id": meta.get("store_id"),
                "schema_version": meta.get("schema_version"),
                "tables": {t: {"files": [str(Path(f).relative_to(out)) for f in fs],
                               "rows": rows[t]} for t, fs in files.items()}}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("exported %d tables to %s", len(files), out)
    return files


def import_all(con: duckdb.DuckDBPyConnection, in_dir: str | Path) -> dict[str, int]:
    """Load a folder written by :func:`export_all` into this (new, empty) store; returns
    rows added per table. The store takes the exported store's id and current split."""
    src = Path(in_dir)
    manifest_path = src / MANIFEST
    if not manifest_path.is_file():
        raise StoreError(f"{str(src)!r} has no {MANIFEST}; pass a folder written by "
                         "`sporeprint export` (export_all)")
    try:
        manifest = json.loads(manifest_path.read_text())
        tables = manifest["tables"]
    except (ValueError, KeyError) as exc:
        raise StoreError(f"{str(manifest_path)!r} is not a sporeprint export manifest "
                         f"({exc}); export the store again") from exc
    used = con.execute("SELECT (SELECT count(*) FROM observations) + (SELECT count(*) FROM "
                       "images) + (SELECT count(*) FROM embedding_spaces) + (SELECT count(*) "
                       "FROM runs)").fetchall()[0][0]
    if used:
        raise StoreError("import_all restores an export into a new, empty store, and this one "
                         "holds data; import into a new file, or merge single tables with "
                         "import_parquet")
    added: dict[str, int] = {}
    for table in EXPORT_TABLES:
        if table not in tables:
            continue
        if table == "meta":
            added[table] = _import_meta(con, src / "meta.parquet")
            continue
        if table == "species":
            con.execute("DELETE FROM species")  # the exported list replaces the seeded one
        path = src / table if table in PARTITIONS else src / f"{table}.parquet"
        if not parquet_files(path):
            added[table] = 0
            continue
        added[table] = import_parquet(con, table, path, append=True)
        if table == "species":
            _check_poison_list(con, path)
        if table == "embedding_spaces":
            for space, table_name, dim in con.execute(
                    "SELECT space, table_name, dim FROM embedding_spaces ORDER BY 1").fetchall():
                expected = EmbeddingSpace(space, model_id="-", dim=dim).table_name
                if table_name != expected:
                    raise StoreError(f"{str(path)!r} names table {table_name!r} for space "
                                     f"{space!r}; expected {expected!r}. Export the store again")
                con.execute(embedding_table_ddl(table_name, dim))
                added[table_name] = import_parquet(con, table_name,
                                                   src / f"{table_name}.parquet", append=True)
    log.info("imported %s from %s", added, src)
    return added


def _check_poison_list(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """The official poisonous list governs: an export that changes it is refused."""
    official = pa.table({"class_id": pa.array(list(poison_status()), pa.int32()),
                         "official": pa.array(list(poison_status().values()), pa.bool_())})
    con.register("_official", official)
    try:
        differ = [r[0] for r in con.execute(
            "SELECT coalesce(s.class_id, o.class_id) FROM species s FULL JOIN _official o "
            "USING (class_id) WHERE s.poisonous IS DISTINCT FROM o.official ORDER BY 1"
            ).fetchall()]
    finally:
        con.unregister("_official")
    if differ:
        raise StoreError(f"{str(path)!r} disagrees with the official poisonous list for class "
                         f"ids {differ[:10]}{' ...' if len(differ) > 10 else ''}; nothing was "
                         "imported. Export the store again from an unmodified store")


def _import_meta(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Take the exported store id and current split seed; keep this store's schema version."""
    rows = pq.read_table(path).to_pylist()
    n = 0
    for row in rows:
        if row["key"] == "schema_version":
            continue
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [row["key"], row["value"]])
        n += 1
    return n

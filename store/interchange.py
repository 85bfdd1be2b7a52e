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

from . import validation
from .errors import StoreError
from .schema import embedding_table_ddl, q
from .temporary import registered
from .vectors import check_vectors

log = logging.getLogger(__name__)

AUTO_COLUMNS = validation.AUTO_COLUMNS


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


# -- import: stage every row, check it, then write ------------------------------------
#
# Rows are first copied into TEMP tables (held by DuckDB in memory, never in the store
# file), checked there against the rules ingest applies (store/validation.py), and only
# then written; the first broken rule refuses the whole import, so a refused import
# leaves the store file as it was.

MAX_MANIFEST_BYTES = 16 << 20
FIX = "Fix the file, or export the store again with `sporeprint export`"


def import_parquet(con: duckdb.DuckDBPyConnection, table: str, path: str | Path) -> int:
    """Add the rows of a Parquet file or folder to ``table``; returns rows added.

    Every row is checked first, as ingest checks its rows (value ranges, the official
    poisonous list, vectors, keys, references to stored rows); one broken rule refuses
    the file. A row whose key is already stored with the same content is skipped (so
    importing twice adds nothing); with other content it refuses the file (tables
    without a key skip rows identical to a stored one)."""
    _check_table(con, table)
    if table in ("meta", "embedding_spaces"):
        raise StoreError(f"table {table!r} cannot be merged from a file: it holds store "
                         "settings; restore a whole export into a new store (`sporeprint "
                         "import` without --table), or make spaces with `sporeprint embed` / "
                         "`sporeprint ingest --embeddings`")
    try:
        stage, _ = _stage(con, table, Path(path))
        validation.check_staged(con, {table: stage}, str(path), FIX)
        added = _insert(con, table, stage, merge=True, path=str(path))
    finally:
        _drop_stages(con)
    log.info("imported %d rows into %s from %s", added, table, path)
    return added


def import_all(con: duckdb.DuckDBPyConnection, in_dir: str | Path) -> dict[str, int]:
    """Load a folder written by :func:`export_all` into this (new, empty) store; returns
    rows added per table. The store takes the exported store's id and current split.

    Every table the manifest lists must be there with the rows it counts, and every row
    must pass the checks of :func:`import_parquet`; otherwise nothing is imported. The
    species table must be the official DF20 list."""
    src = Path(in_dir)
    tables = _read_manifest(src)
    used = con.execute("SELECT (SELECT count(*) FROM observations) + (SELECT count(*) FROM "
                       "images) + (SELECT count(*) FROM embedding_spaces) + (SELECT count(*) "
                       "FROM runs)").fetchall()[0][0]
    if used:
        raise StoreError("import_all restores an export into a new, empty store, and this one "
                         "holds data; import into a new file, or merge single tables with "
                         "import_parquet")
    stages: dict[str, str] = {}
    try:
        for table in EXPORT_TABLES:
            stages[table] = _stage_listed(con, src, table, tables)
            if table == "embedding_spaces":
                for space in validation.staged_spaces(con, stages[table], str(src)):
                    con.execute(embedding_table_ddl(space.table_name, space.dim))
                    stages[space.table_name] = _stage_listed(con, src, space.table_name, tables)
        extra = sorted(set(tables) - set(stages))
        if extra:
            raise StoreError(f"{str(src / MANIFEST)!r} lists tables {extra} that are not in the "
                             f"export's embedding_spaces.parquet nor this sporeprint's schema; "
                             f"nothing was imported. {FIX}")
        validation.check_staged(con, stages, str(src), FIX, whole=True)
        added = {"meta": _insert_meta(con, stages["meta"])}
        con.execute("DELETE FROM species")  # the exported list (checked: the official one)
        for table, stage in stages.items():
            if table != "meta":
                added[table] = _insert(con, table, stage, merge=False, path=str(src))
    finally:
        _drop_stages(con)
    validation.require_official_species(
        con, f"the store imported from {str(src)!r}", "Nothing was imported; " + FIX)
    log.info("imported %s from %s", added, src)
    return added


def _read_manifest(src: Path) -> dict[str, dict]:
    """``{table: {"files": [...], "rows": n}}`` of an export's checked manifest."""
    path = src / MANIFEST
    where = repr(str(path))
    if not path.is_file():
        raise StoreError(f"{str(src)!r} has no {MANIFEST}; pass a folder written by "
                         "`sporeprint export` (export_all)")
    bad = f"{where} is not a sporeprint export manifest"
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise StoreError(f"{bad} (over {MAX_MANIFEST_BYTES >> 20} MiB); export the store "
                             "again")
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError, OSError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else \
            (str(exc).splitlines() or [type(exc).__name__])[0]
        raise StoreError(f"{bad} ({detail}); export the store again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "sporeprint-store-parquet":
        raise StoreError(f"{bad} (no \"format\": \"sporeprint-store-parquet\"); export the "
                         "store again")
    tables = manifest.get("tables")
    if not isinstance(tables, dict):
        raise StoreError(f"{bad} (\"tables\" is a JSON {type(tables).__name__}, not an object "
                         "of table entries); export the store again")
    for name, entry in tables.items():
        rows = entry.get("rows") if isinstance(entry, dict) else None
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise StoreError(f"{bad} (table {name!r}: \"rows\" should be a count, got "
                             f"{_short(rows if isinstance(entry, dict) else entry)}); export "
                             "the store again")
    missing = [t for t in EXPORT_TABLES if t not in tables]
    if missing:
        raise StoreError(f"{bad}: it lists no {', '.join(missing)}; nothing was imported. "
                         "Export the store again")
    return tables


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _stage_listed(con: duckdb.DuckDBPyConnection, src: Path, table: str,
                  tables: dict[str, dict]) -> str:
    """Stage a table the manifest lists: its files must be there, with the rows counted."""
    if table not in tables:
        raise StoreError(f"{str(src / MANIFEST)!r} lists no {table!r}, but the export's "
                         f"embedding_spaces.parquet names it; nothing was imported. {FIX}")
    expected = tables[table]["rows"]
    path = src / table if table in PARTITIONS else src / f"{table}.parquet"
    if not parquet_files(path):
        if table in PARTITIONS and expected == 0:  # no batch was scored: no folder
            return _empty_stage(con, table)
        raise StoreError(f"{str(path)!r} is missing, but {MANIFEST} lists table {table!r} "
                         f"({expected} rows); nothing was imported. {FIX}")
    stage, rows = _stage(con, table, path)
    if rows != expected:
        raise StoreError(f"{str(path)!r} holds {rows} rows of {table!r}, but {MANIFEST} "
                         f"counts {expected}; nothing was imported. {FIX}")
    return stage


def _targets(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str, bool]]:
    """``(column, DuckDB type, nullable)`` of a store table, in order."""
    return con.execute(
        "SELECT column_name, data_type, is_nullable FROM duckdb_columns() WHERE "
        "database_name = current_database() AND schema_name = 'main' AND table_name = ? "
        "ORDER BY column_index", [table]).fetchall()


def _stage_ddl(con: duckdb.DuckDBPyConnection, targets: list[tuple[str, str, bool]],
               stage: str, columns: list[str]) -> None:
    types = {c: t for c, t, _ in targets}
    # JSON is checked as text (json_valid), so a bad value is reported, not a cast error
    cols = ", ".join(f"{q(c)} {'VARCHAR' if types[c] == 'JSON' else types[c]}"
                     for c in columns)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {q(stage)} ({cols})")


def _empty_stage(con: duckdb.DuckDBPyConnection, table: str) -> str:
    stage = validation.STAGE + table
    targets = _targets(con, table)
    _stage_ddl(con, targets, stage, [c for c, _, _ in targets if c not in AUTO_COLUMNS])
    return stage


def _stage(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> tuple[str, int]:
    """Copy a Parquet file or folder into a TEMP table shaped like ``table``, checking
    columns, types, nulls and (for vectors) values on the way; ``(temp table, rows)``."""
    where = f"{str(path)!r} (table {table})"
    dataset = open_parquet(path)
    targets = _targets(con, table)
    columns = [c for c, _, _ in targets]
    names = dataset.schema.names
    missing = [c for c in columns if c not in names and c not in AUTO_COLUMNS]
    extra = [c for c in names if c not in columns]
    if missing or extra:
        what = (f"lacks columns {missing}" if missing else "") + \
            (" and " if missing and extra else "") + (f"has columns {extra} that table "
                                                      f"{table!r} does not" if extra else "")
        raise StoreError(f"{where} {what}; nothing was imported. Import files exported from "
                         "the same table by `sporeprint export`")
    take = [c for c in columns if c in names]
    partitioning = getattr(dataset, "partitioning", None)
    # hive partition values are read as text (a batch "007" stays "007"); the cast below
    # parses them into the column's type
    from_path = set(partitioning.schema.names) if partitioning is not None else set()
    want = _arrow_schema(con.sql(f"SELECT {', '.join(q(c) for c in take)} FROM {q(table)} "
                                 "LIMIT 0").to_arrow_table().schema)
    for c in take:
        got, expected = dataset.schema.field(c).type, want.field(c).type
        if not _compatible(got, expected) and not (c in from_path and _kind(got) == "string"):
            raise StoreError(f"{where}: column {c} has type {got}, expected {expected}; "
                             f"nothing was imported. {FIX}")
    not_null = [c for c, _, nullable in targets if not nullable and c in take]
    vectors = table.startswith("emb_") and "vector" in take
    stage = validation.STAGE + table
    _stage_ddl(con, targets, stage, take)
    select = ", ".join(q(c) for c in take)
    rows = 0
    try:
        for batch in dataset.to_batches(columns=take, batch_size=BATCH_ROWS):
            batch = _cast(batch, want, where)
            for c in not_null:
                if batch.column(c).null_count:
                    raise StoreError(f"{where}: column {c} is null in {batch.column(c).null_count}"
                                     f" rows, and {table} requires a value; nothing was "
                                     f"imported. {FIX}")
            if vectors and batch.num_rows:
                _check_vector_batch(batch, want.field("vector").type.list_size, where)
            with registered(con, "_import_rows", pa.Table.from_batches([batch])):
                con.execute(f"INSERT INTO {q(stage)} ({select}) SELECT {select} "
                            "FROM _import_rows")
            rows += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise StoreError(f"cannot read {where} ({_first_line(exc)}); nothing was imported. "
                         f"{FIX}") from exc
    return stage, rows


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _kind(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return "list of " + _kind(t.value_type)
    return str(t)


def _compatible(got: pa.DataType, expected: pa.DataType) -> bool:
    """May a column of type ``got`` fill one of ``expected`` (a safe cast decides values)?"""
    if pa.types.is_null(got):
        return True
    a, b = _kind(got), _kind(expected)
    return a == b or (a, b) in (("integer", "number"), ("list of integer", "list of number"))


def _cast(batch: pa.RecordBatch, want: pa.Schema, where: str) -> pa.RecordBatch:
    """``batch`` in the store's column types; a value that does not fit refuses the file."""
    arrays = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        target = want.field(name).type
        try:
            arrays.append(column if column.type == target else column.cast(target, safe=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            size = (f" of dimension {target.list_size}"
                    if pa.types.is_fixed_size_list(target) else "")
            raise StoreError(f"{where}: column {name} holds values that do not fit {target}"
                             f"{size} ({_first_line(exc)}); nothing was imported. {FIX}") \
                from None
    return pa.RecordBatch.from_arrays(arrays, schema=want)


def _check_vector_batch(batch: pa.RecordBatch, dim: int, where: str) -> None:
    """The checks ingest gives vectors (``spaces.check_vectors``), for one batch."""
    column = batch.column("vector")
    values = column.flatten()
    if values.null_count:
        raise StoreError(f"{where}: column vector has null elements; nothing was imported. "
                         f"{FIX}")
    matrix = values.to_numpy(zero_copy_only=False).astype("float32", copy=False)
    ids = batch.column("image_id").to_numpy(zero_copy_only=False)
    check_vectors(matrix.reshape(len(column), dim), dim, ids, f"{where}, column vector",
                  outcome="nothing was imported")


def _insert(con: duckdb.DuckDBPyConnection, table: str, stage: str, merge: bool,
            path: str) -> int:
    """Write a checked stage into its table; returns rows added. ``merge``: a row whose
    key is stored is skipped when equal (``check_staged`` refused it otherwise)."""
    cols = validation.staged_columns(con, stage)
    select = ", ".join(q(c) for c in cols)
    before = con.execute(f"SELECT count(*) FROM {q(table)}").fetchall()[0][0]
    if not merge:
        con.execute(f"INSERT INTO {q(table)} ({select}) SELECT {select} FROM {q(stage)}")
    elif validation.keys(con, table):
        con.execute(f"INSERT OR IGNORE INTO {q(table)} ({select}) SELECT {select} "
                    f"FROM {q(stage)}")
    else:
        con.execute(f"INSERT INTO {q(table)} ({select}) SELECT {select} FROM {q(stage)} "
                    f"EXCEPT SELECT {select} FROM {q(table)}")
    return con.execute(f"SELECT count(*) FROM {q(table)}").fetchall()[0][0] - before


def _insert_meta(con: duckdb.DuckDBPyConnection, stage: str) -> int:
    """Take the exported store id and current split seed; keep this store's schema version."""
    rows = con.execute(f"SELECT key, value FROM {q(stage)} WHERE key <> 'schema_version'"
                       ).fetchall()
    for key, value in rows:
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])
    return len(rows)


def _drop_stages(con: duckdb.DuckDBPyConnection) -> None:
    try:
        for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'temp' AND "
                "starts_with(table_name, ?)", [validation.STAGE]).fetchall():
            con.execute(f"DROP TABLE IF EXISTS {q(name)}")
    except duckdb.Error:  # an aborted transaction: the caller's rollback drops them
        pass

"""Ingesting a precomputed-embedding Parquet file (``image_path`` or ``image_id`` +
``embedding``) into a space, all or nothing, inside the caller's transaction.

Two engines, one rule (``store.vectors``): where DuckDB may read files, its own
Parquet reader scans the vectors once, inside the ``INSERT`` that stores them,
with the rule written as SQL that raises on the first bad row; a sandboxed store
streams the file through Arrow in record batches instead. Either way a file with
bad vectors is read again in record batches and checked with
:func:`~store.vectors.vector_problems`, so both engines name the same images with
the same message. ``ingest_memory_cap`` bounds DuckDB's memory meanwhile.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import StoreError
from .schema import q
from .spaces import (
    EmbeddingIngestReport,
    EmbeddingSpace,
    ensure_space,
    fixed_size_list,
    get_space,
    row_count,
)
from .temporary import changed_settings, registered, setting
from .vectors import FLOAT32_MAX, FLOAT32_TINY, PROBLEMS, vector_message, vector_problems

log = logging.getLogger(__name__)

BATCH_BYTES = 16 << 20  # vector bytes per batch when streaming an embedding file


@dataclass
class EmbeddingFile:
    """An opened embedding Parquet file: its key column, vector column and dimension."""

    path: Path
    parquet: pq.ParquetFile
    key: str  # image_path or image_id
    dim: int
    rows: int


def open_embedding_file(path: str | Path) -> EmbeddingFile:
    """Open and check the schema of a Parquet file of ``image_path`` (or ``image_id``) +
    ``embedding`` (list or fixed-size list of floats); reads no vectors yet."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"embedding file {str(path)!r} does not exist; pass a Parquet file with "
                         "columns image_path and embedding")
    try:
        # no pre-buffering of whole column chunks: memory tracks one batch, even for files
        # written with very large row groups
        parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=8 << 20)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise StoreError(f"{str(path)!r} is not a readable Parquet file ({exc}); expected "
                         "columns image_path and embedding") from exc
    names = schema.names
    key = "image_path" if "image_path" in names else ("image_id" if "image_id" in names else None)
    if key is None or "embedding" not in names:
        raise StoreError(f"{str(path)!r} has columns {names}; expected image_path "
                         "(or image_id) and embedding (a list of floats per image)")
    col = schema.field("embedding").type
    if not (pa.types.is_list(col) or pa.types.is_large_list(col)
            or pa.types.is_fixed_size_list(col)) or not (
            pa.types.is_floating(col.value_type) or pa.types.is_integer(col.value_type)):
        raise StoreError(f"column embedding of {str(path)!r} has type {col}; expected a "
                         "list or fixed-size list of float32")
    rows = parquet.metadata.num_rows
    if rows == 0:
        raise StoreError(f"{str(path)!r} holds no rows; nothing to ingest")
    if pa.types.is_fixed_size_list(col):
        dim = col.list_size
    else:  # the first vector's length; every later batch is checked against it
        first = next(parquet.iter_batches(batch_size=1, columns=["embedding"]))
        if first.column(0).null_count:
            raise StoreError(f"{str(path)!r} has rows with a null embedding; drop them or record "
                             "them as failures")
        dim = len(first.column(0)[0])
    if dim <= 0:
        raise StoreError(f"embeddings in {str(path)!r} are empty lists; expected vectors")
    return EmbeddingFile(path, parquet, key, dim, rows)


@dataclass(frozen=True)
class EmbeddingFileInfo:
    """What an embedding file holds, from its schema (and first row): no vectors read."""

    path: Path
    key: str  # image_path or image_id
    dim: int
    rows: int


def embedding_file_info(path: str | Path) -> EmbeddingFileInfo:
    """Check an embedding file's columns and read its key column name, dimension and row
    count; StoreError naming the problem when the store could not ingest it. The vectors
    themselves are checked when the file is ingested."""
    ef = open_embedding_file(path)
    ef.parquet.close()
    return EmbeddingFileInfo(ef.path, ef.key, ef.dim, ef.rows)


def _batch_matrix(chunk: pa.Array, dim: int, where: str) -> np.ndarray:
    """(n, dim) float32 view/copy of one batch of the embedding column."""
    if chunk.null_count:
        raise StoreError(f"{where} has {chunk.null_count} rows with a null embedding; drop "
                         "them or record them as failures")
    if not pa.types.is_fixed_size_list(chunk.type):
        lengths = pc.list_value_length(chunk)
        lo, hi = pc.min(lengths).as_py(), pc.max(lengths).as_py()
        if lo != dim or hi != dim:
            raise StoreError(f"embeddings in {where} have lengths {min(lo, dim)}..{max(hi, dim)}; "
                             "every vector of a space must have the same dimension")
    values = chunk.flatten()
    if values.null_count:
        raise StoreError(f"{where} has vectors with null elements; nothing was stored")
    flat = values.to_numpy(zero_copy_only=False)
    return flat.astype(np.float32, copy=False).reshape(len(chunk), dim)


def _file_image_ids(con: duckdb.DuckDBPyConnection, ef: EmbeddingFile) -> tuple[np.ndarray,
                                                                                pa.Array]:
    """``(image id per row, key per row)``; every key must be a stored image."""
    keys = ef.parquet.read(columns=[ef.key]).column(0)
    if keys.null_count:
        raise StoreError(f"{str(ef.path)!r} has {keys.null_count} rows without {ef.key}; "
                         "every vector needs its image")
    if ef.key == "image_id":
        ids = keys.to_numpy().astype(np.int64)
        with registered(con, "_keys", pa.table({"image_id": pa.array(np.unique(ids))})):
            missing = con.execute("SELECT image_id FROM _keys ANTI JOIN images USING (image_id) "
                                  "ORDER BY 1 LIMIT 5").fetchall()
        if missing:
            raise StoreError(f"image ids {[m[0] for m in missing]} of {str(ef.path)!r} are not "
                             "in the store; ingest their metadata first")
        return ids, keys
    positions = pa.array(np.arange(len(keys), dtype=np.int64))
    with registered(con, "_keys", pa.table({"image_path": keys.cast(pa.string()),
                                            "_pos": positions})):
        found = con.sql("SELECT k._pos, i.image_id FROM _keys k JOIN images i USING "
                        "(image_path)").to_arrow_table()
        if found.num_rows < len(keys):
            missing = con.execute("SELECT k.image_path FROM _keys k ANTI JOIN images i USING "
                                  "(image_path) ORDER BY k._pos LIMIT 5").fetchall()
            raise StoreError(f"image paths {[m[0] for m in missing]} of {str(ef.path)!r} are "
                             "not in the store; ingest their metadata first")
    ids = np.empty(len(keys), dtype=np.int64)
    ids[found.column(0).to_numpy()] = found.column(1).to_numpy()
    return ids, keys


def ingest_embedding_file(con: duckdb.DuckDBPyConnection, path: str | Path, name: str,
                          model_id: str | None = None) -> EmbeddingIngestReport:
    """Load precomputed vectors into a space (inside the caller's transaction).

    Nothing of a bad file is stored: every key must be a stored image, and every vector must
    have the space's dimension, no null, NaN or inf, and a squared length float32 can hold
    (so no all-zero vector); an image twice in the file must come with one vector. An image
    that already has a vector keeps it: the same vector counts as a duplicate, a different
    one as a conflict (reported, not overwritten).

    When DuckDB may read files (any store not opened with ``safe_sql``), DuckDB's own
    multi-threaded Parquet reader scans the vectors once, in the very ``INSERT`` that stores
    them, and the checks run inside that statement, raising on the first bad row; the file
    is re-read only then, to say what is wrong and where. A sandboxed store streams the file
    in record batches through Arrow instead, checking each batch in numpy. Under
    ``ingest_memory_cap`` (``FeatureStore.ingest_embeddings`` applies it) memory tracks
    DuckDB's row groups in flight, not the file."""
    ef = open_embedding_file(path)
    try:
        space = _file_space(con, ef, name, model_id)
        if _duckdb_can_read(con, ef.path):
            return _ingest_sql(con, ef, space)
        return _ingest_file(con, ef, space)
    finally:
        ef.parquet.close()


ROW_GROUP_ROWS = 122_880  # DuckDB's rows per row group: each inserting thread fills one
# row groups of vectors per inserting DuckDB thread that an ingest lets DuckDB hold in memory
ROW_GROUPS_PER_THREAD = 2
MIN_INGEST_MEMORY = 1 << 30


@contextmanager
def ingest_memory_cap(con: duckdb.DuckDBPyConnection, path: str | Path) -> Iterator[None]:
    """Cap DuckDB's memory while an embedding file is ingested, then restore the setting.

    Left alone, DuckDB keeps the blocks it writes in its buffer pool, up to 80% of RAM, so
    an ingest's memory grows with the file. Capped at a few row groups of vectors per
    thread, DuckDB drops written blocks (they are on disk) instead, and memory tracks the
    row groups being filled, not the file. Wrap the whole transaction: after a failed
    statement DuckDB accepts no SET until the rollback."""
    with ExitStack() as stack:
        try:
            limit = _ingest_memory_bytes(con, path)
            if limit is not None and limit < _size_bytes(setting(con, "memory_limit")):
                stack.enter_context(changed_settings(con, memory_limit=f"{limit}B"))
        except (duckdb.Error, ValueError):  # a locked configuration, an unreadable file
            pass  # leave the setting as it is
        yield


def _ingest_memory_bytes(con: duckdb.DuckDBPyConnection, path: str | Path) -> int | None:
    """Memory for ingesting ``path``: ROW_GROUPS_PER_THREAD float32 row groups per thread."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError):
        return None  # the ingest itself reports the unreadable file
    if "embedding" not in schema.names:
        return None
    kind = schema.field("embedding").type
    if pa.types.is_fixed_size_list(kind):
        dim = kind.list_size
    else:  # the first vector's length, from the file's statistics: bytes per row
        meta = pq.ParquetFile(path).metadata
        column = schema.names.index("embedding")
        rows = max(1, meta.num_rows)
        size = sum(meta.row_group(g).column(column).total_uncompressed_size
                   for g in range(meta.num_row_groups))
        dim = max(1, size // (rows * 4))
    threads = int(setting(con, "threads"))
    return max(MIN_INGEST_MEMORY, ROW_GROUPS_PER_THREAD * threads * ROW_GROUP_ROWS * 4 * dim)


_UNITS = {"": 1, "b": 1, "bytes": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def _size_bytes(text: str) -> int:
    """Bytes of a DuckDB size setting such as '18.8 GiB'."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _file_space(con: duckdb.DuckDBPyConnection, ef: EmbeddingFile, name: str,
                model_id: str | None) -> EmbeddingSpace:
    """The space the file goes into, created for the file's dimension when it is new."""
    where = repr(str(ef.path))
    space = get_space(con, name)
    if space is None:
        return ensure_space(con, EmbeddingSpace(name, model_id=model_id or "precomputed",
                                                dim=ef.dim, pooling="precomputed"))
    if space.dim != ef.dim:
        raise StoreError(f"{where} holds {ef.dim}-d vectors but space {name!r} has dimension "
                         f"{space.dim}; use another --space name")
    if model_id is not None and model_id != space.model_id:
        raise StoreError(f"space {name!r} holds vectors of model {space.model_id!r}, not "
                         f"{model_id!r}; use another --space name")
    return space


def _duckdb_can_read(con: duckdb.DuckDBPyConnection, path: Path) -> bool:
    """May this connection read ``path`` with ``read_parquet`` as one literal file?"""
    if any(ch in str(path) for ch in "*?[]{}"):  # read_parquet would expand it as a glob
        return False
    try:
        value = con.execute("SELECT current_setting('enable_external_access')").fetchall()
    except duckdb.Error:
        return False
    return str(value[0][0]).lower() == "true"


# The rule of store.vectors for one vector `e` (a LIST of float32) in SQL: a bad row makes
# DuckDB's error() raise, which aborts the statement and so the caller's transaction; then
# _explain_bad_vectors says which rows and why.
def _vector_check(e: str, dim: int, then: str) -> str:
    return (f"CASE WHEN {e} IS NULL THEN error('null embedding in file row ' || p.file_row_number)"
            f" WHEN len({e}) <> {dim} THEN error('embedding of length ' || len({e}) || "
            f"' in file row ' || p.file_row_number)"
            f" WHEN NOT {_norm_ok(e)} THEN error('NaN, inf, all-zero or out-of-scale embedding "
            f"in file row ' || p.file_row_number) ELSE {then} END")


def _norm_ok(e: str) -> str:
    """SQL of ``vector_problems``' test: the float32 squared length of `e` is finite and
    positive (NaN sorts above every number in DuckDB, so NaN and inf both fail the upper
    bound); one pass over the vector."""
    return f"(list_dot_product({e}, {e}) BETWEEN {FLOAT32_TINY!r} AND {FLOAT32_MAX!r})"


def _ingest_sql(con: duckdb.DuckDBPyConnection, ef: EmbeddingFile,
                space: EmbeddingSpace) -> EmbeddingIngestReport:
    dim, where, table = space.dim, repr(str(ef.path)), q(space.table_name)
    params = {"path": str(ef.path)}
    src = "read_parquet($path, file_row_number = true)"
    key = q(ef.key)
    # 1. keys only (one narrow column): file row -> image id, and what is already stored
    match = (f"i.image_path = CAST(p.{key} AS VARCHAR)" if ef.key == "image_path"
             else f"i.image_id = TRY_CAST(p.{key} AS BIGINT)")
    filled = con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1)").fetchall()
    stored_join = (f"LEFT JOIN (SELECT image_id FROM {table}) e ON e.image_id = i.image_id"
                   if filled[0][0] else "")
    stored_expr = "e.image_id IS NOT NULL" if stored_join else "false"
    try:
        con.execute(f"""
CREATE OR REPLACE TEMP TABLE _emb_keys AS
SELECT p.file_row_number AS _row, CAST(p.{key} AS VARCHAR) AS key, i.image_id,
       {stored_expr} AS stored
FROM {src} p LEFT JOIN images i ON {match} {stored_join}""", params)
        return _insert_checked(con, ef, space, src, params, where, table, dim)
    finally:
        try:
            con.execute("DROP TABLE IF EXISTS _emb_keys")
        except duckdb.Error:  # an aborted transaction; the caller's rollback drops it
            pass


def _insert_checked(con: duckdb.DuckDBPyConnection, ef: EmbeddingFile, space: EmbeddingSpace,
                    src: str, params: dict, where: str, table: str,
                    dim: int) -> EmbeddingIngestReport:
    n, keyed, known, distinct, stored = con.execute(
        "SELECT count(*), count(key), count(image_id), count(DISTINCT image_id), "
        "count_if(stored) FROM _emb_keys").fetchall()[0]
    if keyed < n:
        raise StoreError(f"{where} has {n - keyed} rows without {ef.key}; every vector needs "
                         "its image")
    if known < n:
        missing = [r[0] for r in con.execute(
            "SELECT key FROM _emb_keys WHERE image_id IS NULL ORDER BY _row LIMIT 5").fetchall()]
        if ef.key == "image_id":
            missing = [int(float(k)) if _is_number(k) else k for k in missing]
            raise StoreError(f"image ids {missing} of {where} are not in the store; ingest "
                             "their metadata first")
        raise StoreError(f"image paths {missing} of {where} are not in the store; ingest "
                         "their metadata first")
    repeats = known - distinct  # rows repeating an earlier row's image
    join = f"{src} p JOIN _emb_keys k ON k._row = p.file_row_number"
    e = _as_float32("p.embedding", ef)
    # 2. one scan of the vectors: check every row and insert the new ones
    if not repeats and not stored:
        # the checks yield the image id, so DuckDB cannot drop them, and they copy no vector;
        # as a filter they would shrink DuckDB's estimate of the file's side of the join and
        # make it build the hash table from the vectors
        sql = (f"INSERT INTO {table} (image_id, vector) "
               f"SELECT {_vector_check(e, dim, 'k.image_id')}, {e} FROM {join}")
        expected = n
    else:
        con.execute("CREATE OR REPLACE TEMP TABLE _emb_first AS SELECT image_id, "
                    "min(_row) AS first_row, count(*) > 1 AS repeated FROM _emb_keys "
                    "GROUP BY image_id")
        con.execute("CREATE OR REPLACE TEMP TABLE _emb_keys AS SELECT k.*, "
                    "(k._row = f.first_row AND NOT k.stored) AS new, f.repeated "
                    "FROM _emb_keys k JOIN _emb_first f USING (image_id)")
        con.execute("DROP TABLE _emb_first")
        # the checks in a filter that needs both sides of the join (so it stays above it):
        # rows not inserted are checked as well
        sql = (f"INSERT INTO {table} (image_id, vector) SELECT k.image_id, {e} FROM {join} "
               f"WHERE {_vector_check(e, dim, 'k.new')}")
        expected = con.execute("SELECT count_if(new) FROM _emb_keys").fetchall()[0][0]
    try:
        inserted = con.execute(sql, params).fetchall()[0][0]
    except duckdb.Error as exc:
        _explain_bad_vectors(ef, dim, where)
        raise StoreError(f"{where}: {exc}; nothing was stored") from exc
    if inserted != expected:
        raise StoreError(f"{where} changed while it was read ({inserted} vectors inserted, "
                         f"{expected} expected); nothing was stored. Ingest it again")
    report = EmbeddingIngestReport(space=space.name, read=n, stored=inserted)
    # 3. only for repeated or already stored images: do their vectors agree?
    hashed = f"hash(CAST({e} AS FLOAT[{dim}]))"  # 64-bit, order-sensitive hash of the vector
    if repeats:
        differ = con.execute(f"""
SELECT any_value(k.key) FROM {join} WHERE k.repeated
GROUP BY k.image_id HAVING min({hashed}) <> max({hashed}) ORDER BY min(k._row) LIMIT 1""",
                             params).fetchall()
        if differ:
            raise StoreError(f"{where}: image {differ[0][0]!r} appears more than once with "
                             "different vectors; nothing was stored. Keep one vector per image")
    if stored:
        rows = con.execute(f"""
SELECT f.key FROM (SELECT k.image_id, k.key, k._row, {hashed} AS h FROM {join} WHERE k.stored) f
JOIN (SELECT image_id, hash(vector) AS h FROM {table}) s USING (image_id)
WHERE f.h <> s.h ORDER BY f._row""", params).fetchall()
        report.conflicts = len(rows)
        report.conflict_examples = [r[0] for r in rows[:5]]
        if rows:
            log.warning("%s: %d vectors differ from the vectors already stored for their "
                        "images in space %s and were not stored (first: %s)", where, len(rows),
                        space.name, ", ".join(report.conflict_examples))
    report.duplicate = n - inserted - report.conflicts
    log.info("ingested embeddings from %s: %s", ef.path, report)
    return report


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _as_float32(column: str, ef: EmbeddingFile) -> str:
    """SQL for the vectors as stored: float32 elements (a no-op for float32 files)."""
    value_type = ef.parquet.schema_arrow.field("embedding").type.value_type
    return column if pa.types.is_float32(value_type) else f"CAST({column} AS FLOAT[])"


def _explain_bad_vectors(ef: EmbeddingFile, dim: int, where: str) -> None:
    """Raise a StoreError naming the bad vectors of the file, if it has any: the file is read
    again in record batches (through a reader of its own) and every batch checked with
    ``vector_problems``, so the message counts the bad rows of the whole file."""
    found: dict[str, tuple[int, list]] = {}  # kind -> (rows in all, first keys)
    with pq.ParquetFile(ef.path, pre_buffer=False, buffer_size=8 << 20) as parquet:
        for batch in parquet.iter_batches(batch_size=_batch_rows(dim),
                                          columns=[ef.key, "embedding"]):
            matrix = _batch_matrix(batch.column("embedding"), dim, where)
            for kind, mask in vector_problems(matrix).items():
                count, keys = found.get(kind, (0, []))
                if len(keys) < 5:
                    rows = pa.array(np.flatnonzero(mask)[:5 - len(keys)])
                    keys = keys + batch.column(ef.key).take(rows).to_pylist()
                found[kind] = (count + int(mask.sum()), keys)
    for kind in PROBLEMS:
        if kind in found:
            raise StoreError(vector_message(where, kind, found[kind][1], found[kind][0]))


def _batch_rows(dim: int) -> int:
    """Rows per record batch when streaming a file of ``dim``-d vectors."""
    return max(1024, BATCH_BYTES // (4 * dim))


def _ingest_file(con: duckdb.DuckDBPyConnection, ef: EmbeddingFile,
                 space: EmbeddingSpace) -> EmbeddingIngestReport:
    """The Arrow engine: stream the file in record batches, checking each in numpy."""
    dim, where, name = space.dim, repr(str(ef.path)), space.name
    ids, keys = _file_image_ids(con, ef)
    table = q(space.table_name)
    stored_ids = con.sql(f"SELECT image_id FROM {table}").to_arrow_table().column(0)
    # rows to insert: not stored before, first occurrence in the file
    _, first = np.unique(ids, return_index=True)
    insert = np.zeros(len(ids), dtype=bool)
    insert[first] = True
    insert &= ~np.isin(ids, stored_ids.to_numpy().astype(np.int64))
    uniq, counts = np.unique(ids, return_counts=True)
    repeated = uniq[counts > 1]  # their vectors must agree
    seen: dict[int, np.ndarray] = {}
    schema = pa.schema([("image_id", pa.int64()), ("vector", pa.list_(pa.float32(), dim))])
    batch_rows = _batch_rows(dim)
    failure: list[BaseException] = []

    def batches():
        start = 0
        for batch in ef.parquet.iter_batches(batch_size=batch_rows, columns=["embedding"]):
            n = batch.num_rows
            batch_ids = ids[start:start + n]
            matrix = _batch_matrix(batch.column(0), dim, where)
            if vector_problems(matrix):
                _explain_bad_vectors(ef, dim, where)
            for row in np.flatnonzero(np.isin(batch_ids, repeated)) if len(repeated) else ():
                image_id = int(batch_ids[row])
                if image_id not in seen:
                    seen[image_id] = matrix[row].copy()
                elif not np.array_equal(seen[image_id], matrix[row]):
                    raise StoreError(f"{where}: image {keys[start + row].as_py()!r} appears "
                                     "more than once with different vectors; nothing was "
                                     "stored. Keep one vector per image")
            keep = insert[start:start + n]
            start += n
            if not keep.any():
                continue
            vectors = (pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), dim)
                       if keep.all() else fixed_size_list(matrix[keep]))
            yield pa.record_batch([pa.array(batch_ids[keep]), vectors], schema=schema)

    def guarded():
        try:
            yield from batches()
        except BaseException as exc:  # re-raised below with its own message and type
            failure.append(exc)
            raise

    before = row_count(con, table)
    # one INSERT pulling record batches as DuckDB asks for them: memory tracks a batch
    try:
        with registered(con, "_new_vectors",
                        pa.RecordBatchReader.from_batches(schema, guarded())):
            con.execute(f"INSERT INTO {table} (image_id, vector) "
                        "SELECT image_id, vector FROM _new_vectors")
    except duckdb.Error:
        if failure:
            raise failure[0] from None
        raise
    if failure:
        raise failure[0]
    stored = row_count(con, table) - before
    report = EmbeddingIngestReport(space=name, read=len(ids), stored=stored)
    was_stored = np.isin(ids, stored_ids.to_numpy().astype(np.int64))
    if was_stored.any():
        _stream_conflicts(con, ef, table, ids, keys, was_stored, batch_rows, report)
    report.duplicate = len(ids) - stored - report.conflicts
    log.info("ingested embeddings from %s: %s", ef.path, report)
    return report


def _stream_conflicts(con: duckdb.DuckDBPyConnection, ef: EmbeddingFile, table: str,
                      ids: np.ndarray, keys: pa.Array, was_stored: np.ndarray,
                      batch_rows: int, report: EmbeddingIngestReport) -> None:
    """Count the file's vectors of already stored images that differ from the stored ones."""
    schema = pa.schema([("_row", pa.int64()), ("image_id", pa.int64()),
                        ("vector", pa.list_(pa.float32(), ef.dim))])

    def batches():
        start = 0
        for batch in ef.parquet.iter_batches(batch_size=batch_rows, columns=["embedding"]):
            n = batch.num_rows
            keep = was_stored[start:start + n]
            if keep.any():
                matrix = _batch_matrix(batch.column(0), ef.dim, repr(str(ef.path)))[keep]
                yield pa.record_batch([pa.array(np.flatnonzero(keep) + start),
                                       pa.array(ids[start:start + n][keep]),
                                       fixed_size_list(matrix)], schema=schema)
            start += n

    with registered(con, "_file_vectors", pa.RecordBatchReader.from_batches(schema, batches())):
        rows = [r[0] for r in con.execute(f"""
SELECT f._row FROM (SELECT _row, image_id, hash(vector) AS h FROM _file_vectors) f
JOIN (SELECT image_id, hash(vector) AS h FROM {table}) s USING (image_id)
WHERE f.h <> s.h ORDER BY f._row""").fetchall()]
    report.conflicts = len(rows)
    report.conflict_examples = keys.take(pa.array(rows[:5], pa.int64())).cast(
        pa.string()).to_pylist() if rows else []
    if rows:
        log.warning("%s: %d vectors differ from the vectors already stored for their images "
                    "in space %s and were not stored (first: %s)", ef.path, len(rows),
                    report.space, ", ".join(report.conflict_examples))

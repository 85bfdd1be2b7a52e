"""Embedding spaces: one ``emb_<space>`` table of ``FLOAT[dim]`` vectors per space.

Vectors cross the Python boundary as Arrow fixed-size lists, so adding or
fetching a million vectors involves no per-row Python work.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import StoreError
from .schema import embedding_table_ddl, q

log = logging.getLogger(__name__)

SPACE_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass
class EmbeddingSpace:
    """How the vectors of one space were made.

    >>> EmbeddingSpace("dinov2_l", model_id="facebook/dinov2-large", dim=1024).table_name
    'emb_dinov2_l'
    """

    name: str
    model_id: str
    dim: int
    pooling: str = "cls"
    dtype: str = "float32"
    revision: str | None = None
    preprocessing: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not SPACE_NAME.fullmatch(self.name):
            raise StoreError(f"embedding space name {self.name!r} is not allowed; use lower-case "
                             "letters, digits and '_', starting with a letter (e.g. dinov2_l)")
        if int(self.dim) <= 0:
            raise StoreError(f"embedding dimension {self.dim!r} must be a positive integer")
        self.dim = int(self.dim)

    @property
    def table_name(self) -> str:
        return f"emb_{self.name}"


@dataclass
class EmbeddingIngestReport:
    """Counts of one precomputed-embedding file; ``read == stored + duplicate + conflicts``.

    *duplicate*: the image already has this very vector (stored before, or an earlier row of
    the file). *conflicts*: the image already has a different vector in the space; the stored
    one is kept, never overwritten."""

    space: str
    read: int = 0
    stored: int = 0
    duplicate: int = 0
    conflicts: int = 0
    conflict_examples: list[str] = field(default_factory=list)  # keys of the first conflicts

    def __str__(self) -> str:
        text = (f"space {self.space}: read {self.read}, stored {self.stored}, "
                f"duplicate {self.duplicate}")
        if self.conflicts:
            text += (f", {self.conflicts} conflicting with a different stored vector (kept the "
                     f"stored one; first: {', '.join(self.conflict_examples)})")
        return text


def get_space(con: duckdb.DuckDBPyConnection, name: str) -> EmbeddingSpace | None:
    row = con.execute(
        "SELECT space, model_id, dim, pooling, dtype, revision, preprocessing "
        "FROM embedding_spaces WHERE space = ?", [name]).fetchall()
    row = row[0] if row else None
    if row is None:
        return None
    return EmbeddingSpace(name=row[0], model_id=row[1], dim=row[2], pooling=row[3], dtype=row[4],
                          revision=row[5], preprocessing=json.loads(row[6]) if row[6] else {})


def space_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT space FROM embedding_spaces ORDER BY 1").fetchall()]


def require_space(con: duckdb.DuckDBPyConnection, name: str) -> EmbeddingSpace:
    space = get_space(con, name)
    if space is None:
        known = space_names(con)
        raise StoreError(f"embedding space {name!r} does not exist (known: "
                         f"{', '.join(known) or 'none'}); create it with `sporeprint embed` or "
                         "`sporeprint ingest --embeddings FILE --space NAME`")
    return space


def ensure_space(con: duckdb.DuckDBPyConnection, spec: EmbeddingSpace) -> EmbeddingSpace:
    """Create the space, or check that the stored one was made the same way."""
    existing = get_space(con, spec.name)
    if existing is None:
        con.execute(
            "INSERT INTO embedding_spaces (space, model_id, revision, dim, pooling, dtype, "
            "preprocessing, table_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [spec.name, spec.model_id, spec.revision, spec.dim, spec.pooling, spec.dtype,
             json.dumps(spec.preprocessing, sort_keys=True), spec.table_name])
        con.execute(embedding_table_ddl(spec.table_name, spec.dim))
        log.info("created embedding space %s (%s, dim %d)", spec.name, spec.model_id, spec.dim)
        return spec
    mine, theirs = asdict(spec), asdict(existing)
    diff = [k for k in mine if mine[k] != theirs[k]]
    if diff:
        detail = "; ".join(f"{k}: stored {theirs[k]!r}, given {mine[k]!r}" for k in diff)
        raise StoreError(f"embedding space {spec.name!r} already exists with different settings "
                         f"({detail}); use a new space name for the new model or settings")
    return existing


def check_vectors(ids, vectors: np.ndarray, dim: int, what: str) -> None:
    """Refuse NaN/inf, all-zero rows and a wrong dimension, naming the images: ``ids`` is an
    array of names (ids or paths), or a function from row numbers to names."""
    def names(mask: np.ndarray) -> list:
        rows = np.flatnonzero(mask)[:5]
        return ids(rows) if callable(ids) else np.asarray(ids)[rows].tolist()

    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise StoreError(f"{what}: vectors have dimension {vectors.shape[1:] or '?'} but the "
                         f"space has dimension {dim}; embed with the space's model or use a new "
                         "space")
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        bad = names(~finite)
        raise StoreError(f"{what}: vectors of images {bad} ({int((~finite).sum())} in all) "
                         "contain NaN or inf; nothing was stored. Drop them, or record them as "
                         "failures (record_embedding_failures)")
    zero = ~vectors.any(axis=1)
    if zero.any():
        bad = names(zero)
        raise StoreError(f"{what}: vectors of images {bad} ({int(zero.sum())} in all) are all "
                         "zero, which has no direction to compare; nothing was stored. Drop "
                         "them, or record them as failures (record_embedding_failures)")
    with np.errstate(over="ignore", under="ignore"):
        squares = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float32)
    scale = ~(np.isfinite(squares) & (squares > 0))
    if scale.any():
        bad = names(scale)
        raise StoreError(f"{what}: vectors of images {bad} ({int(scale.sum())} in all) "
                         f"{NORM_PROBLEM}; nothing was stored. Rescale them (e.g. to unit "
                         "length) or drop them")


# what is wrong with a finite, non-zero vector whose float32 squared length is inf or 0
NORM_PROBLEM = ("have a squared length that float32 cannot hold (it overflows to inf or "
                "underflows to 0), so they cannot be normalised for cosine search")


def _unique_rows(ids: np.ndarray, vectors: np.ndarray,
                 what: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique ids and their vectors; a repeated id must repeat the same vector."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    repeat = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])  # row k+1 repeats row k
    if repeat.size == 0:
        return sorted_ids, vectors[order]
    differ = (vectors[order[repeat + 1]] != vectors[order[repeat]]).any(axis=1)
    if differ.any():
        image_id = sorted_ids[repeat[differ][0]].item()
        raise StoreError(f"{what}: image {image_id!r} appears {int((ids == image_id).sum())} "
                         "times with different vectors; nothing was stored. Keep one vector "
                         "per image")
    keep = np.ones(len(ids), dtype=bool)
    keep[repeat + 1] = False
    return sorted_ids[keep], vectors[order[keep]]


def add_embeddings(con: duckdb.DuckDBPyConnection, name: str, image_ids: np.ndarray,
                   vectors: np.ndarray) -> int:
    """Insert vectors of images not yet in the space; returns how many were added.

    Everything is checked before anything is written: shapes, NaN/inf, all-zero
    vectors, a repeated id with two different vectors, unknown image ids."""
    space = require_space(con, name)
    ids = np.asarray(image_ids)
    vecs = np.asarray(vectors)
    if ids.ndim != 1 or vecs.ndim != 2 or len(ids) != len(vecs):
        raise StoreError(f"expected image_ids of shape (n,) and vectors of shape (n, {space.dim}),"
                         f" got {ids.shape} and {vecs.shape}")
    if vecs.shape[1] != space.dim:
        raise StoreError(f"vectors have dimension {vecs.shape[1]} but space {name!r} has "
                         f"dimension {space.dim}; embed with the space's model or use a new space")
    if len(ids) == 0:
        return 0
    if not np.issubdtype(ids.dtype, np.integer):
        raise StoreError(f"image_ids must be integers, got dtype {ids.dtype}")
    ids = ids.astype(np.int64)
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    what = f"space {name!r}"
    check_vectors(ids, vecs, space.dim, what)
    ids, vecs = _unique_rows(ids, vecs, what)
    batch = pa.table({"image_id": pa.array(ids), "vector": _fixed_list(vecs)})
    con.register("_new_vectors", batch)
    try:
        unknown = con.execute("SELECT image_id FROM _new_vectors WHERE image_id NOT IN "
                              "(SELECT image_id FROM images) LIMIT 5").fetchall()
        if unknown:
            raise StoreError(f"image ids {[r[0] for r in unknown]} are not in the images table; "
                             "ingest their metadata first")
        table = q(space.table_name)
        before = _count(con, table)
        con.execute(f"INSERT OR IGNORE INTO {table} (image_id, vector) "
                    "SELECT image_id, vector FROM _new_vectors")
        return _count(con, table) - before
    finally:
        con.unregister("_new_vectors")


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def _fixed_list(vectors: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


def fetch_embeddings(con: duckdb.DuckDBPyConnection, name: str,
                     image_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(ids int64 (n,), float32 (n, d))``: all vectors ordered by id, or the given ids that
    have a vector, in the given order."""
    space = require_space(con, name)
    table = q(space.table_name)
    if image_ids is None:
        # no ORDER BY: sorting rows of d floats costs more than reordering in numpy
        result = con.sql(f"SELECT image_id, vector FROM {table}").to_arrow_table()
        ids, matrix = _ids_and_matrix(result, "image_id", "vector", space.dim)
        if len(ids) > 1 and not (np.diff(ids) > 0).all():
            order = np.argsort(ids, kind="stable")
            ids, matrix = ids[order], matrix[order]
        return ids, matrix
    wanted = pa.table({"image_id": pa.array(np.asarray(image_ids, dtype=np.int64)),
                       "_pos": pa.array(np.arange(len(image_ids), dtype=np.int64))})
    con.register("_wanted_ids", wanted)
    try:
        result = con.sql(f"SELECT w._pos, e.image_id, e.vector FROM _wanted_ids w JOIN {table} e "
                         "USING (image_id)").to_arrow_table()
    finally:
        con.unregister("_wanted_ids")
    # rows come back in join order: copy each straight to its place among the found ids
    pos = result.column("_pos").to_numpy()
    found = np.zeros(len(image_ids), dtype=bool)
    found[pos] = True
    out = _matrix(result.column("vector"), space.dim, dest=(np.cumsum(found) - 1)[pos])
    return np.asarray(image_ids, dtype=np.int64)[found], out


def _ids_and_matrix(table: pa.Table, id_col: str, vec_col: str,
                    dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Copy an Arrow fixed-size-list column into one float32 (n, dim) array, chunk by chunk."""
    ids = table.column(id_col).to_numpy().astype(np.int64, copy=False)
    return ids, _matrix(table.column(vec_col), dim)


def _matrix(column: pa.ChunkedArray, dim: int, dest: np.ndarray | None = None) -> np.ndarray:
    """A fixed-size-list column as one float32 (n, dim) array, copied chunk by chunk;
    row i goes to ``dest[i]`` when given (a permutation of 0..n-1), else to row i."""
    out = np.empty((len(column), dim), dtype=np.float32)
    row = 0
    for chunk in column.chunks:
        # flatten respects the chunk's offset
        values = chunk.flatten().to_numpy(zero_copy_only=False).reshape(len(chunk), dim)
        where = slice(row, row + len(chunk)) if dest is None else dest[row:row + len(chunk)]
        out[where] = values
        row += len(chunk)
    return out


def pending_images(con: duckdb.DuckDBPyConnection, name: str) -> pa.Table:
    space = require_space(con, name)
    return con.sql(f"""
SELECT i.image_id, i.file_path FROM images i
WHERE i.image_id NOT IN (SELECT image_id FROM {q(space.table_name)})
  AND i.image_id NOT IN (SELECT image_id FROM embedding_failures WHERE space = $space)
ORDER BY i.image_id""", params={"space": name}).to_arrow_table()


def record_embedding_failures(con: duckdb.DuckDBPyConnection, name: str, image_ids,
                              reasons) -> None:
    require_space(con, name)
    ids = np.asarray(image_ids, dtype=np.int64)
    if isinstance(reasons, str):
        reasons = [reasons] * len(ids)
    reasons = [str(r) for r in reasons]
    if len(reasons) != len(ids):
        raise StoreError(f"got {len(ids)} image ids but {len(reasons)} reasons; pass one reason "
                         "per image id (or one string for all)")
    con.register("_failures", pa.table({"image_id": ids, "reason": reasons}))
    try:
        con.execute("INSERT INTO embedding_failures (space, image_id, reason) "
                    "SELECT $space, image_id, reason FROM _failures", {"space": name})
    finally:
        con.unregister("_failures")


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


def read_embedding_file(path: str | Path) -> tuple[pa.Table, np.ndarray]:
    """Read a whole embedding file: ``(key table, float32 (n, d))``."""
    ef = open_embedding_file(path)
    try:
        keys = ef.parquet.read(columns=[ef.key])
        col = ef.parquet.read(columns=["embedding"]).column(0)
    finally:
        ef.parquet.close()
    parts = [_batch_matrix(c, ef.dim, repr(str(ef.path))) for c in col.chunks]
    return keys, np.concatenate(parts) if parts else np.zeros((0, ef.dim), np.float32)


def _file_image_ids(con: duckdb.DuckDBPyConnection, ef: EmbeddingFile) -> tuple[np.ndarray,
                                                                                pa.Array]:
    """``(image id per row, key per row)``; every key must be a stored image."""
    keys = ef.parquet.read(columns=[ef.key]).column(0)
    if keys.null_count:
        raise StoreError(f"{str(ef.path)!r} has {keys.null_count} rows without {ef.key}; "
                         "every vector needs its image")
    if ef.key == "image_id":
        ids = keys.to_numpy().astype(np.int64)
        con.register("_keys", pa.table({"image_id": pa.array(np.unique(ids))}))
        try:
            missing = con.execute("SELECT image_id FROM _keys ANTI JOIN images USING (image_id) "
                                  "ORDER BY 1 LIMIT 5").fetchall()
        finally:
            con.unregister("_keys")
        if missing:
            raise StoreError(f"image ids {[m[0] for m in missing]} of {str(ef.path)!r} are not "
                             "in the store; ingest their metadata first")
        return ids, keys
    con.register("_keys", pa.table({"image_path": keys.cast(pa.string()),
                                    "_pos": pa.array(np.arange(len(keys), dtype=np.int64))}))
    try:
        found = con.sql("SELECT k._pos, i.image_id FROM _keys k JOIN images i USING "
                        "(image_path)").to_arrow_table()
        if found.num_rows < len(keys):
            missing = con.execute("SELECT k.image_path FROM _keys k ANTI JOIN images i USING "
                                  "(image_path) ORDER BY k._pos LIMIT 5").fetchall()
            raise StoreError(f"image paths {[m[0] for m in missing]} of {str(ef.path)!r} are "
                             "not in the store; ingest their metadata first")
    finally:
        con.unregister("_keys")
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
    restore = None
    try:
        limit = _ingest_memory_bytes(con, path)
        current = _setting(con, "memory_limit")
        if limit is not None and limit < _size_bytes(current):
            con.execute("RESET memory_limit")  # the setting reads back rounded: is it default?
            restore = ("RESET memory_limit" if _setting(con, "memory_limit") == current
                       else f"SET memory_limit = '{current}'")
            con.execute(f"SET memory_limit = '{limit}B'")
    except (duckdb.Error, ValueError):  # a locked configuration, an unreadable file: leave it
        restore = None
    try:
        yield
    finally:
        if restore is not None:
            con.execute(restore)


def _setting(con: duckdb.DuckDBPyConnection, name: str) -> str:
    return str(con.execute(f"SELECT current_setting('{name}')").fetchall()[0][0])


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
    threads = int(_setting(con, "threads"))
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


# The checks of one vector `e` (a LIST of the file's element type) in SQL, in the order the
# messages of _explain_bad_vectors report them; a bad row makes DuckDB's error() raise,
# which aborts the statement and so the caller's transaction.
def _vector_check(e: str, dim: int, then: str) -> str:
    return (f"CASE WHEN {e} IS NULL THEN error('null embedding in file row ' || p.file_row_number)"
            f" WHEN len({e}) <> {dim} THEN error('embedding of length ' || len({e}) || "
            f"' in file row ' || p.file_row_number)"
            f" WHEN NOT {_norm_ok(e)} THEN error('NaN, inf, all-zero or out-of-scale embedding "
            f"in file row ' || p.file_row_number) ELSE {then} END")


def _norm_ok(e: str) -> str:
    """SQL: the float32 squared length of `e` is finite and positive (NaN sorts above every
    number in DuckDB, so NaN and inf both fail the upper bound); one pass over the vector."""
    return f"(list_dot_product({e}, {e}) BETWEEN {FLOAT32_TINY!r} AND {FLOAT32_MAX!r})"


FLOAT32_TINY = float(np.nextafter(np.float32(0), np.float32(1)))  # smallest positive float32
FLOAT32_MAX = float(np.finfo(np.float32).max)


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
    """Raise a StoreError naming the bad vectors of the file, if it has any: read again, in
    a connection of its own (the failed INSERT has aborted the store's transaction)."""
    key = q(ef.key)
    e = _as_float32("embedding", ef)
    # list_dot_product refuses a batch holding a NULL element anywhere, so those first
    shape = (f"CASE WHEN {e} IS NULL THEN 'null' WHEN len({e}) <> {dim} THEN 'length' "
             f"WHEN list_count({e}) < len({e}) THEN 'null element' END")
    values = (f"CASE WHEN {_norm_ok(e)} THEN NULL "
              f"WHEN NOT list_bool_and(list_transform({e}, lambda x: isfinite(x))) "
              f"THEN 'nonfinite' WHEN list_bool_and(list_transform({e}, lambda x: x = 0)) "
              "THEN 'zero' ELSE 'scale' END")
    kinds = []
    with duckdb.connect() as tmp:
        for classify in (shape, values):
            try:
                kinds = tmp.execute(f"""
SELECT kind, count(*), list(key ORDER BY _row)[1:5], min(len), max(len) FROM (
    SELECT file_row_number AS _row, CAST({key} AS VARCHAR) AS key, len({e}) AS len,
           {classify} AS kind
    FROM read_parquet($path, file_row_number = true))
WHERE kind IS NOT NULL GROUP BY kind""", {"path": str(ef.path)}).fetchall()
            except duckdb.Error:  # e.g. a value float32 cannot hold: the caller says so
                return
            if kinds:
                break
    found = {k: (count, keys, lo, hi) for k, count, keys, lo, hi in kinds}
    if "null" in found:
        raise StoreError(f"{where} has {found['null'][0]} rows with a null embedding (first: "
                         f"{found['null'][1]}); drop them or record them as failures")
    if "length" in found:
        lo, hi = found["length"][2:]
        raise StoreError(f"embeddings in {where} have lengths {min(lo, dim)}..{max(hi, dim)} "
                         f"(first of another length than {dim}: {found['length'][1]}); every "
                         "vector of a space must have the same dimension")
    if "null element" in found:
        raise StoreError(f"{where} has vectors with null elements (images "
                         f"{found['null element'][1]}); nothing was stored")
    reasons = {"nonfinite": "contain NaN or inf",
               "zero": "are all zero, which has no direction to compare",
               "scale": NORM_PROBLEM}
    for kind, text in reasons.items():
        if kind in found:
            count, keys = found[kind][:2]
            keys = [int(float(k)) if _is_number(k) else k for k in keys] \
                if ef.key == "image_id" else keys
            fix = ("Rescale them (e.g. to unit length) or drop them" if kind == "scale" else
                   "Drop them, or record them as failures (record_embedding_failures)")
            raise StoreError(f"{where}: vectors of images {keys} ({count} in all) {text}; "
                             f"nothing was stored. {fix}")


def _ingest_file(con: duckdb.DuckDBPyConnection, ef: EmbeddingFile,
                 space: EmbeddingSpace) -> EmbeddingIngestReport:
    """The Arrow path: stream the file in record batches, checking each in numpy."""
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
    batch_rows = max(1024, BATCH_BYTES // (4 * dim))
    failure: list[BaseException] = []

    def batches():
        start = 0
        for batch in ef.parquet.iter_batches(batch_size=batch_rows, columns=["embedding"]):
            n = batch.num_rows
            batch_ids = ids[start:start + n]

            def shown(rows: np.ndarray, offset: int = start) -> list:
                return keys.take(pa.array(rows + offset)).to_pylist()
            matrix = _batch_matrix(batch.column(0), dim, where)
            check_vectors(shown, matrix, dim, where)
            for row in np.flatnonzero(np.isin(batch_ids, repeated)) if len(repeated) else ():
                image_id = int(batch_ids[row])
                if image_id not in seen:
                    seen[image_id] = matrix[row].copy()
                elif not np.array_equal(seen[image_id], matrix[row]):
                    raise StoreError(f"{where}: image {shown(np.array([row]))[0]!r} appears "
                                     "more than once with different vectors; nothing was "
                                     "stored. Keep one vector per image")
            keep = insert[start:start + n]
            start += n
            if not keep.any():
                continue
            vectors = (pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), dim)
                       if keep.all() else _fixed_list(matrix[keep]))
            yield pa.record_batch([pa.array(batch_ids[keep]), vectors], schema=schema)

    def guarded():
        try:
            yield from batches()
        except BaseException as exc:  # re-raised below with its own message and type
            failure.append(exc)
            raise

    before = _count(con, table)
    # one INSERT pulling record batches as DuckDB asks for them: memory tracks a batch
    con.register("_new_vectors", pa.RecordBatchReader.from_batches(schema, guarded()))
    try:
        con.execute(f"INSERT INTO {table} (image_id, vector) "
                    "SELECT image_id, vector FROM _new_vectors")
    except duckdb.Error:
        if failure:
            raise failure[0] from None
        raise
    finally:
        try:
            con.unregister("_new_vectors")
        except duckdb.Error:  # the failed INSERT aborted the transaction; the caller rolls back
            pass
    if failure:
        raise failure[0]
    stored = _count(con, table) - before
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
                                       _fixed_list(matrix)], schema=schema)
            start += n

    con.register("_file_vectors", pa.RecordBatchReader.from_batches(schema, batches()))
    try:
        rows = [r[0] for r in con.execute(f"""
SELECT f._row FROM (SELECT _row, image_id, hash(vector) AS h FROM _file_vectors) f
JOIN (SELECT image_id, hash(vector) AS h FROM {table}) s USING (image_id)
WHERE f.h <> s.h ORDER BY f._row""").fetchall()]
    finally:
        con.unregister("_file_vectors")
    report.conflicts = len(rows)
    report.conflict_examples = keys.take(pa.array(rows[:5], pa.int64())).cast(
        pa.string()).to_pylist() if rows else []
    if rows:
        log.warning("%s: %d vectors differ from the vectors already stored for their images "
                    "in space %s and were not stored (first: %s)", ef.path, len(rows),
                    report.space, ", ".join(report.conflict_examples))

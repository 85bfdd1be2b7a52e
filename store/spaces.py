"""Embedding spaces: one ``emb_<space>`` table of ``FLOAT[dim]`` vectors per space.

The registry of spaces (``embedding_spaces``), adding vectors from numpy, fetching
them, and the images still to embed. Vectors cross the Python boundary as Arrow
fixed-size lists, so adding or fetching a million vectors involves no per-row
Python work. Precomputed-embedding Parquet files are ingested by
``store/embedding_file.py``; both paths check vectors with ``store.vectors``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

from .errors import StoreError
from .schema import embedding_table_ddl, q
from .temporary import registered
from .vectors import check_vectors

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
    what = f"space {name!r}"
    if ids.ndim != 1 or vecs.ndim == 0 or len(ids) != len(vecs):
        raise StoreError(f"expected image_ids of shape (n,) and vectors of shape (n, {space.dim}),"
                         f" got {ids.shape} and {vecs.shape}")
    if len(ids) and not np.issubdtype(ids.dtype, np.integer):
        raise StoreError(f"image_ids must be integers, got dtype {ids.dtype}")
    check_vectors(vecs, space.dim, ids, what)
    if len(ids) == 0:
        return 0
    ids = ids.astype(np.int64)
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    ids, vecs = _unique_rows(ids, vecs, what)
    batch = pa.table({"image_id": pa.array(ids), "vector": fixed_size_list(vecs)})
    with registered(con, "_new_vectors", batch):
        unknown = con.execute("SELECT image_id FROM _new_vectors WHERE image_id NOT IN "
                              "(SELECT image_id FROM images) LIMIT 5").fetchall()
        if unknown:
            raise StoreError(f"image ids {[r[0] for r in unknown]} are not in the images table; "
                             "ingest their metadata first")
        table = q(space.table_name)
        before = row_count(con, table)
        con.execute(f"INSERT OR IGNORE INTO {table} (image_id, vector) "
                    "SELECT image_id, vector FROM _new_vectors")
        return row_count(con, table) - before


def row_count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def fixed_size_list(vectors: np.ndarray) -> pa.FixedSizeListArray:
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
    with registered(con, "_wanted_ids", wanted):
        result = con.sql(f"SELECT w._pos, e.image_id, e.vector FROM _wanted_ids w JOIN {table} e "
                         "USING (image_id)").to_arrow_table()
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
    with registered(con, "_failures", pa.table({"image_id": ids, "reason": reasons})):
        con.execute("INSERT INTO embedding_failures (space, image_id, reason) "
                    "SELECT $space, image_id, reason FROM _failures", {"space": name})

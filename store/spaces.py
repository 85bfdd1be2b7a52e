"""Embedding spaces: one ``emb_<space>`` table of ``FLOAT[dim]`` vectors per space.

Vectors cross the Python boundary as Arrow fixed-size lists, so adding or
fetching a million vectors involves no per-row Python work.
"""

from __future__ import annotations

import json
import logging
import re
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
    """Counts of one precomputed-embedding file; ``read == stored + duplicate``."""

    space: str
    read: int = 0
    stored: int = 0
    duplicate: int = 0

    def __str__(self) -> str:
        return (f"space {self.space}: read {self.read}, stored {self.stored}, "
                f"duplicate {self.duplicate}")


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


def add_embeddings(con: duckdb.DuckDBPyConnection, name: str, image_ids: np.ndarray,
                   vectors: np.ndarray) -> int:
    """Insert vectors of images not yet in the space; returns how many were added."""
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
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    ids, first = np.unique(ids.astype(np.int64), return_index=True)  # a repeated id: first wins
    vecs = vecs[first] if len(first) < len(vecs) or (np.diff(first) < 0).any() else vecs
    if not np.isfinite(vecs).all():
        bad = ids[~np.isfinite(vecs).all(axis=1)][:5].tolist()
        raise StoreError(f"vectors of image ids {bad} contain NaN or inf; record them with "
                         "record_embedding_failures instead")
    batch = pa.table({
        "image_id": pa.array(ids),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), space.dim),
    })
    con.register("_new_vectors", batch)
    try:
        unknown = con.execute("SELECT image_id FROM _new_vectors WHERE image_id NOT IN "
                              "(SELECT image_id FROM images) LIMIT 5").fetchall()
        if unknown:
            raise StoreError(f"image ids {[r[0] for r in unknown]} are not in the images table; "
                             "ingest their metadata first")
        table = q(space.table_name)
        before = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        con.execute(f"INSERT INTO {table} (image_id, vector) SELECT image_id, vector "
                    f"FROM _new_vectors ANTI JOIN {table} USING (image_id)")
        return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] - before
    finally:
        con.unregister("_new_vectors")


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
    ids, matrix = _ids_and_matrix(result, "image_id", "vector", space.dim)
    order = np.argsort(result.column("_pos").to_numpy(), kind="stable")
    return ids[order], matrix[order]


def _ids_and_matrix(table: pa.Table, id_col: str, vec_col: str,
                    dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Copy an Arrow fixed-size-list column into one float32 (n, dim) array, chunk by chunk."""
    ids = table.column(id_col).to_numpy().astype(np.int64, copy=False)
    out = np.empty((len(ids), dim), dtype=np.float32)
    row = 0
    for chunk in table.column(vec_col).chunks:
        values = chunk.flatten().to_numpy(zero_copy_only=False)  # flatten respects offsets
        out[row:row + len(chunk)] = values.reshape(len(chunk), dim)
        row += len(chunk)
    return ids, out


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


def read_embedding_file(path: str | Path) -> tuple[pa.Table, np.ndarray]:
    """Read a Parquet file of ``image_path`` (or ``image_id``) + ``embedding``.

    Returns the key table and a float32 matrix (n, d)."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"embedding file {str(path)!r} does not exist; pass a Parquet file with "
                         "columns image_path and embedding")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise StoreError(f"{str(path)!r} is not a readable Parquet file ({exc}); expected "
                         "columns image_path and embedding") from exc
    key = "image_path" if "image_path" in table.column_names else (
        "image_id" if "image_id" in table.column_names else None)
    if key is None or "embedding" not in table.column_names:
        raise StoreError(f"{str(path)!r} has columns {table.column_names}; expected image_path "
                         "(or image_id) and embedding (a list of floats per image)")
    col = table.column("embedding").combine_chunks()
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)
            or pa.types.is_fixed_size_list(col.type)):
        raise StoreError(f"column embedding of {str(path)!r} has type {col.type}; expected a "
                         "list or fixed-size list of float32")
    n = len(col)
    if n == 0:
        raise StoreError(f"{str(path)!r} holds no rows; nothing to ingest")
    if col.null_count:
        raise StoreError(f"{str(path)!r} has {col.null_count} rows with a null embedding; drop "
                         "them or record them as failures")
    if pa.types.is_fixed_size_list(col.type):
        dim = col.type.list_size
    else:
        lengths = pc.list_value_length(col)
        lo, hi = pc.min(lengths).as_py(), pc.max(lengths).as_py()
        if lo != hi:
            raise StoreError(f"embeddings in {str(path)!r} have lengths {lo}..{hi}; every vector "
                             "of a space must have the same dimension")
        dim = lo
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return table.select([key]), flat.reshape(n, dim)


def ingest_embedding_file(con: duckdb.DuckDBPyConnection, path: str | Path, name: str,
                          model_id: str | None = None) -> EmbeddingIngestReport:
    """Load precomputed vectors into a space (inside the caller's transaction)."""
    keys, vectors = read_embedding_file(path)
    dim = vectors.shape[1]
    space = get_space(con, name)
    if space is None:
        space = ensure_space(con, EmbeddingSpace(name, model_id=model_id or "precomputed",
                                                 dim=dim, pooling="precomputed"))
    elif space.dim != dim:
        raise StoreError(f"{str(path)!r} holds {dim}-d vectors but space {name!r} has dimension "
                         f"{space.dim}; use another --space name")
    elif model_id is not None and model_id != space.model_id:
        raise StoreError(f"space {name!r} holds vectors of model {space.model_id!r}, not "
                         f"{model_id!r}; use another --space name")
    if keys.column_names[0] == "image_path":
        con.register("_keys", keys.append_column("_pos", pa.array(np.arange(len(keys)))))
        try:
            missing = con.execute("SELECT k.image_path FROM _keys k LEFT JOIN images i USING "
                                  "(image_path) WHERE i.image_id IS NULL LIMIT 5").fetchall()
            if missing:
                raise StoreError(f"image paths {[m[0] for m in missing]} of {str(path)!r} are not "
                                 "in the store; ingest their metadata first")
            ids = con.sql("SELECT i.image_id FROM _keys k JOIN images i USING (image_path) "
                          "ORDER BY k._pos").to_arrow_table().column(0).to_numpy()
        finally:
            con.unregister("_keys")
    else:
        ids = keys.column(0).to_numpy().astype(np.int64)
    stored = add_embeddings(con, name, ids, vectors)
    report = EmbeddingIngestReport(space=name, read=len(ids), stored=stored,
                                   duplicate=len(ids) - stored)
    log.info("ingested embeddings from %s: %s", path, report)
    return report

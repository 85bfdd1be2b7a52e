"""A batch to score: its metadata and precomputed vectors in one transaction.

``ingest_batch`` (``FeatureStore.ingest_batch``) ingests the metadata with ingest's
rules, then says why each observation of the file that got no row under the batch's role
was left out (its rows' reject reasons, or the role it is already stored with), then
ingests the vectors of the accepted observations' images. Every other vector (a rejected
row's image, an image stored under another observation such as a training image, a key
the store does not know) is skipped and counted, never stored: one bad row costs its
observation, not the batch. (``score`` refuses, before anything is written, a vector file
naming images neither the batch nor the store lists.) A bad vector of an accepted image (a
NaN, another dimension) fails the whole transaction, metadata included.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .contract import resolve_columns
from .embedding_file import ingest_embedding_file, open_embedding_file
from .errors import InvalidValueError, StoreError
from .ingest import IngestReport, ingest_metadata
from .spaces import EmbeddingIngestReport
from .temporary import registered

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 300  # a left-out observation's reason, as the predictions table shows it


@dataclass
class BatchIngestReport:
    """What one batch ingestion stored, left out and skipped."""

    metadata: IngestReport
    embeddings: EmbeddingIngestReport | None = None  # None: no vector file, or none kept
    vectors_skipped: int = 0  # rows of the vector file not stored: their image was left out
    skipped_examples: list[str] = field(default_factory=list)  # their first keys
    # observation id -> why none of its rows is stored under the batch's role
    left_out: dict[int, str] = field(default_factory=dict)


def ingest_batch(con: duckdb.DuckDBPyConnection, metadata: str | Path,
                 embeddings: str | Path | None, space: str, role: str = "new",
                 images_dir: str | Path | None = None) -> BatchIngestReport:
    """Ingest a batch inside the caller's open transaction; see the module docstring."""
    report = BatchIngestReport(ingest_metadata(con, metadata, role=role, images_dir=images_dir))
    report.left_out = left_out_reasons(con, report.metadata, role)
    if embeddings is None or len(report.metadata.observation_ids) == 0:
        return report
    with _accepted_vectors(con, embeddings, report) as path:
        if path is not None:
            try:
                report.embeddings = ingest_embedding_file(con, path, space)
            except StoreError as exc:  # name the user's file, not the filtered copy
                if Path(path) == Path(embeddings):
                    raise
                raise StoreError(str(exc).replace(str(path), str(embeddings))) from exc
    return report


def left_out_reasons(con: duckdb.DuckDBPyConnection, report: IngestReport,
                     role: str) -> dict[int, str]:
    """Why each of ``report.rejected_observation_ids`` has no row stored under ``role``: the
    role it is already stored with, else the reject reasons of its rows in the file (the
    latest recorded for each row)."""
    ids = np.asarray(report.rejected_observation_ids, np.int64)
    if len(ids) == 0:
        return {}
    names = _raw_id_columns(con, report.source_file)
    raw_id = (", ".join(f"json_extract_string(raw, ${i + 3})" for i in range(len(names)))
              or "NULL")
    params = [ids.tolist(), report.source_file,
              *('$."' + n.replace('\\', '\\\\').replace('"', '\\"') + '"' for n in names)]
    rows = con.execute(f"""
WITH wanted AS (SELECT unnest($1::BIGINT[]) AS observation_id),
r AS (
    SELECT TRY_CAST(regexp_replace(trim(coalesce({raw_id})), '\\.0*$', '') AS BIGINT)
               AS observation_id, reason
    FROM rejects WHERE source_file = $2
    QUALIFY recorded_at = max(recorded_at) OVER (PARTITION BY row_number)
)
SELECT w.observation_id, any_value(o.role),
       string_agg(DISTINCT r.reason, '; ' ORDER BY r.reason)
FROM wanted w LEFT JOIN observations o USING (observation_id)
LEFT JOIN r USING (observation_id)
GROUP BY 1 ORDER BY 1""", params).fetchall()
    out = {}
    for observation_id, stored_role, reasons in rows:
        if stored_role is not None and stored_role != role:
            why = (f"observation {observation_id} is already stored as a {stored_role} "
                   f"observation; a {role} batch neither changes nor re-scores it (give the "
                   "new photos their own observation id)")
        elif reasons:
            why = reasons
        else:
            why = "every row of it was rejected (see the rejects table)"
        out[int(observation_id)] = (why if len(why) <= MAX_REASON_CHARS
                                    else why[:MAX_REASON_CHARS - 3] + "...")
    return out


def _raw_id_columns(con: duckdb.DuckDBPyConnection, source: str) -> list[str]:
    """The column names that hold the observation id in the raw rows a file's rejects keep
    (the file's own spelling: observationID, observation_id, gbifID, ...)."""
    names: list[str] = []
    for (keys,) in con.execute("SELECT DISTINCT json_keys(raw) FROM rejects "
                               "WHERE source_file = $1", [source]).fetchall():
        try:
            column = resolve_columns(keys or []).get("observation_id")
        except InvalidValueError:  # a row kept from an older version of the file
            continue
        if column is not None and column not in names:
            names.append(column)
    return names


@contextmanager
def _accepted_vectors(con: duckdb.DuckDBPyConnection, path: str | Path,
                      report: BatchIngestReport) -> Iterator[Path | None]:
    """The vector file to ingest: ``path`` itself when every row is an image of an accepted
    observation, else a copy with only those rows (None when no row is left)."""
    ef = open_embedding_file(path)
    try:
        keys = ef.parquet.read(columns=[ef.key]).column(0)
        drop = _left_out_rows(con, ef.key, keys, report.metadata)
        if not drop.any():
            ef.parquet.close()
            yield Path(path)
            return
        report.vectors_skipped = int(drop.sum())
        report.skipped_examples = [str(k) for k in
                                   keys.take(pa.array(np.flatnonzero(drop)[:5])).to_pylist()]
        log.warning("%s: %d vectors belong to images this batch left out (rejected rows, or "
                    "images of other observations) and are not stored (first: %s)", path,
                    report.vectors_skipped, ", ".join(report.skipped_examples))
        if drop.all():
            yield None
            return
        with tempfile.TemporaryDirectory(prefix="sporeprint-batch-") as tmp:
            kept = Path(tmp) / "vectors.parquet"
            with pq.ParquetWriter(kept, ef.parquet.schema_arrow) as writer:
                start = 0
                for batch in ef.parquet.iter_batches(batch_size=65_536):
                    keep = ~drop[start:start + batch.num_rows]
                    start += batch.num_rows
                    if keep.any():
                        writer.write_batch(batch.filter(pa.array(keep)))
            ef.parquet.close()
            yield kept
    finally:
        ef.parquet.close()


def _left_out_rows(con: duckdb.DuckDBPyConnection, key: str, keys: pa.Array,
                   report: IngestReport) -> np.ndarray:
    """Bool per vector-file row: its key is not an image of an observation this batch
    accepted (a rejected row's image, another observation's, or none the store knows)."""
    table = pa.table({"_pos": pa.array(np.arange(len(keys), dtype=np.int64)), "key": keys})
    match = ("i.image_id = TRY_CAST(k.key AS BIGINT)" if key == "image_id"
             else "i.image_path = CAST(k.key AS VARCHAR)")
    accepted = pa.table({"observation_id": pa.array(report.observation_ids, pa.int64())})
    with registered(con, "_batch_keys", table), \
            registered(con, "_batch_accepted", accepted):
        rows = con.execute(f"""
SELECT k._pos FROM _batch_keys k
ANTI JOIN (SELECT i.image_id, i.image_path FROM images i
           JOIN _batch_accepted a USING (observation_id)) i ON {match}""").fetchall()
    drop = np.zeros(len(keys), dtype=bool)
    drop[[r[0] for r in rows]] = True
    return drop

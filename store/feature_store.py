"""`FeatureStore`: the one object that owns the DuckDB connection."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from . import encoding, interchange, spaces, splits
from .errors import StoreError, StoreLockedError
from .ingest import IngestReport, ingest_metadata
from .reference import poison_status
from .schema import DDL, SCHEMA_VERSION
from .spaces import EmbeddingIngestReport, EmbeddingSpace

log = logging.getLogger(__name__)


class FeatureStore:
    """A DuckDB file holding observations, images, embeddings, features, splits and runs.

    One process may write at a time; any number may open it with ``read_only=True``.

    >>> with FeatureStore("fungi.duckdb") as fs:                      # doctest: +SKIP
    ...     fs.ingest_metadata("DF20-train_metadata.csv", role="train")
    ...     fs.sql("SELECT count(*) AS n FROM observations").to_pylist()
    """

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if read_only and not self.path.exists():
            raise StoreError(f"store {str(self.path)!r} does not exist; create it by ingesting "
                             "metadata (sporeprint ingest --store ... --metadata ...)")
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                fix = ("wait for that process to finish: DuckDB allows readers only while no "
                       "process writes" if read_only else
                       "wait for it to finish, or open the store read-only "
                       "(read_only=True / --read-only) once it has")
                raise StoreLockedError(
                    f"store {str(self.path)!r} is open for writing in another process; {fix}"
                ) from exc
            raise StoreError(f"cannot open store {str(self.path)!r}: {exc}") from exc
        except duckdb.Error as exc:
            raise StoreError(f"cannot open store {str(self.path)!r}: {exc}; is it a DuckDB "
                             "database file?") from exc
        if not read_only:
            self._create_schema()

    # -- connection ---------------------------------------------------------------------

    def _create_schema(self) -> None:
        with self.transaction():
            for ddl in DDL:
                self.con.execute(ddl)
            self.con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                             [str(SCHEMA_VERSION)])
            if self.con.execute("SELECT count(*) FROM species").fetchall()[0][0] == 0:
                status = poison_status()
                seed = pa.table({"class_id": pa.array(list(status), pa.int32()),
                                 "poisonous": pa.array(list(status.values()), pa.bool_())})
                self.con.register("_seed_species", seed)
                self.con.execute("INSERT INTO species (class_id, poisonous) "
                                 "SELECT class_id, poisonous FROM _seed_species")
                self.con.unregister("_seed_species")

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "read-write"
        return f"FeatureStore({str(self.path)!r}, {mode})"

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All-or-nothing block: a failure inside rolls every change back."""
        self._writable()
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def _writable(self) -> None:
        if self.con is None:
            raise StoreError(f"store {str(self.path)!r} is closed; open a new FeatureStore")
        if self.read_only:
            raise StoreError(f"store {str(self.path)!r} is open read-only; open it with "
                             "read_only=False (CLI: --write) to change it")

    def _write(self, fn, *args, **kwargs):
        """Run ``fn(con, ...)`` in one transaction, turning DuckDB errors into StoreError."""
        try:
            with self.transaction() as con:
                return fn(con, *args, **kwargs)
        except duckdb.Error as exc:
            raise StoreError(f"store {str(self.path)!r}: {exc}") from exc

    def _read(self, fn, *args, **kwargs):
        if self.con is None:
            raise StoreError(f"store {str(self.path)!r} is closed; open a new FeatureStore")
        try:
            return fn(self.con, *args, **kwargs)
        except duckdb.Error as exc:
            raise StoreError(f"store {str(self.path)!r}: {exc}") from exc

    # -- SQL ----------------------------------------------------------------------------

    def sql(self, query: str, params: list | dict | None = None) -> pa.Table:
        """Run one SQL statement with bound parameters; returns its rows as Arrow.

        >>> fs.sql("SELECT * FROM species WHERE class_id = ?", [3])   # doctest: +SKIP
        """
        if self.con is None:
            raise StoreError(f"store {str(self.path)!r} is closed; open a new FeatureStore")
        try:
            rel = self.con.sql(query, params=params)
            if rel is None:  # statement without a result
                return pa.table({})
            return rel.to_arrow_table()
        except duckdb.Error as exc:
            hint = ""
            if self.read_only and "read-only" in str(exc).lower():
                hint = "; open the store with read_only=False (CLI: --write) to change it"
            raise StoreError(f"SQL failed on {str(self.path)!r}: {exc}{hint}") from exc

    # -- ingestion ----------------------------------------------------------------------

    def ingest_metadata(self, path: str | Path, role: str = "train",
                        images_dir: str | Path | None = None) -> IngestReport:
        """Ingest a DF20/DF21/FungiCLEF metadata CSV or Parquet file in one transaction."""
        return self._write(ingest_metadata, path, role=role, images_dir=images_dir)

    def ingest_embeddings(self, path: str | Path, space: str,
                          model_id: str | None = None) -> EmbeddingIngestReport:
        """Load precomputed per-image vectors (Parquet: image_path, embedding)."""
        return self._write(spaces.ingest_embedding_file, path, space, model_id=model_id)

    # -- embedding spaces ---------------------------------------------------------------

    def ensure_space(self, spec: EmbeddingSpace) -> EmbeddingSpace:
        return self._write(spaces.ensure_space, spec)

    def get_space(self, name: str) -> EmbeddingSpace | None:
        return self._read(spaces.get_space, name)

    def pending_images(self, space: str) -> pa.Table:
        """``image_id, file_path`` of images with neither a vector nor a failure in ``space``."""
        return self._read(spaces.pending_images, space)

    def add_embeddings(self, space: str, image_ids: np.ndarray, vectors: np.ndarray) -> int:
        """Add vectors in one transaction; ids already present are skipped. Returns # added."""
        return self._write(spaces.add_embeddings, space, image_ids, vectors)

    def record_embedding_failures(self, space: str, image_ids, reasons) -> None:
        self._write(spaces.record_embedding_failures, space, image_ids, reasons)

    def fetch_embeddings(self, space: str, image_ids: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """``(int64 ids (n,), float32 (n, d))``; with ``image_ids``, those that have a vector,
        in the given order."""
        return self._read(spaces.fetch_embeddings, space, image_ids)

    # -- metadata features --------------------------------------------------------------

    def fit_encoder(self) -> encoding.EncoderInfo:
        """Fit vocabularies on role=train observations and persist them (new version when
        they changed)."""
        return self._write(encoding.fit_encoder)

    def encoder(self, version: int | None = None) -> encoding.EncoderInfo:
        """The latest (or given) stored encoder."""
        return self._read(encoding.load_encoder, version)

    def encode_observations(self, observation_ids: np.ndarray | None = None) -> int:
        """Write ``features`` rows for the given (default: all) observations; returns count."""
        return self._write(encoding.encode_observations, observation_ids)

    def fetch_features(self, observation_ids: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(ids, float32 (n, m), column names)`` under the latest encoder."""
        return self._read(encoding.fetch_features, observation_ids)

    # -- splits -------------------------------------------------------------------------

    def make_splits(self, seed: int = 0) -> pa.Table:
        """Assign val-role observations to parts p1 / p2 / test (stratified by species)."""
        return self._write(splits.make_splits, seed)

    def fold_observations(self, fold: int, seed: int | None = None) -> dict[str, np.ndarray]:
        """``{"train": ids, "val": ids, "test": ids}`` for fold 1 or 2."""
        return self._read(splits.fold_observations, fold, seed)

    # -- runs and predictions -----------------------------------------------------------

    def record_run(self, run_id: str, kind: str, space: str | None, head: str | None,
                   fold: int | None, config: dict, metrics: dict, path: str | None) -> None:
        """Insert (or replace) the record of one training / scoring run."""
        def _insert(con):
            con.execute("DELETE FROM runs WHERE run_id = ?", [run_id])
            con.execute("INSERT INTO runs (run_id, kind, space, head, fold, config, metrics, path)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [run_id, kind, space, head, fold, json.dumps(config, default=str),
                         json.dumps(metrics, default=str), None if path is None else str(path)])
        self._write(_insert)

    def write_predictions(self, run_key: str, batch: str, table: pa.Table) -> int:
        """Replace the predictions of ``(run_key, batch)`` with ``table``'s rows."""
        return self._write(interchange.write_predictions, run_key, batch, table)

    # -- Parquet interchange ------------------------------------------------------------

    def export_parquet(self, table: str, out_dir: str | Path,
                       partition_by: list[str] | str | None = None) -> int:
        """Write a table as Parquet under ``out_dir`` (hive-partitioned when asked)."""
        return self._read(interchange.export_parquet, table, out_dir, partition_by)

    def import_parquet(self, table: str, path: str | Path) -> int:
        """Insert rows from a Parquet file or folder; rows whose key exists are skipped."""
        return self._write(interchange.import_parquet, table, path)

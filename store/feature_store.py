"""`FeatureStore`: the one object that owns the DuckDB connection."""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from . import (
    batch,
    embedding_file,
    encoding,
    enrollment,
    interchange,
    queries,
    runs,
    spaces,
    splits,
    validation,
)
from .batch import BatchIngestReport
from .errors import StoreError, StoreLockedError
from .filters import SearchFilters
from .ingest import IngestReport, ingest_metadata
from .reference import poison_status
from .reports import ReportQueries
from .schema import DDL, MIGRATIONS, SCHEMA_VERSION
from .spaces import EmbeddingIngestReport, EmbeddingSpace
from .temporary import registered

log = logging.getLogger(__name__)


STORE_MISSING = ("store {path!r} does not exist; create it with `sporeprint ingest --store {path} "
                 "--metadata ... --role ...`")

# DuckDB settings of a sandboxed connection: SQL may read and write the store's own tables
# only; no files, no other databases, no extensions, and the settings cannot be changed back.
SANDBOX = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}


class FeatureStore(ReportQueries):
    """A DuckDB file holding observations, images, embeddings, features, splits and runs.

    One process may write at a time; any number may open it with ``read_only=True``
    while none writes.

    ``create=False`` refuses to create a missing file (everything but ingestion
    opens stores that way). SQL safety (``safe_sql``, default: the same as
    ``read_only``): a sandboxed connection runs SQL over the store's own tables
    only. ``COPY ... TO``/``FROM``, ``EXPORT``/``IMPORT DATABASE``, file readers
    (``read_csv``, ``read_parquet``, ``read_blob``, ``glob``, ...), ``ATTACH``,
    ``INSTALL``/``LOAD`` and ``SET`` of these settings all fail. Store methods that
    read or write files (ingestion, ``export_parquet``, ``export_all``, ...) still
    work, because they do their file IO with pyarrow, outside SQL.

    A writable store (CLI: ``sporeprint sql --write``) is not sandboxed unless
    ``safe_sql=True``: its SQL may change any table, and may read and write files
    and attach databases with the rights of the user running it (DuckDB's own
    defaults). Use it for your own maintenance only, never with SQL you did not
    write.

    >>> with FeatureStore("fungi.duckdb") as fs:                      # doctest: +SKIP
    ...     fs.ingest_metadata("DF20-train_metadata.csv", role="train")
    ...     fs.sql("SELECT count(*) AS n FROM observations").to_pylist()
    """

    def __init__(self, path: str | Path, read_only: bool = False, create: bool = True,
                 safe_sql: bool | None = None, restore_species: bool = False,
                 memory_limit: str | None = None) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.safe_sql = read_only if safe_sql is None else bool(safe_sql)
        self.con = None
        if (read_only or not create) and not self.path.exists():
            raise StoreError(STORE_MISSING.format(path=str(self.path)))
        config = dict(SANDBOX) if self.safe_sql else {}
        if memory_limit is not None:  # DuckDB's own default: 80% of RAM
            config["memory_limit"] = _memory_limit(memory_limit)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only, config=config)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreLockedError(_lock_message(str(self.path), read_only, str(exc))) \
                    from exc
            raise StoreError(f"cannot open store {str(self.path)!r}: {exc}") from exc
        except duckdb.Error as exc:
            raise StoreError(f"cannot open store {str(self.path)!r}: {exc}; is it a DuckDB "
                             "database file?") from exc
        if not read_only:
            self._create_schema()
        self._check_species(restore_species)

    # -- connection ---------------------------------------------------------------------

    def _create_schema(self) -> None:
        with self.transaction():
            for ddl in DDL:
                self.con.execute(ddl)
            for ddl in MIGRATIONS:
                self.con.execute(ddl)
            self.con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                             [str(SCHEMA_VERSION)])
            self.con.execute("INSERT OR IGNORE INTO meta VALUES ('store_id', ?)",
                             [str(uuid.uuid4())])
            if self.con.execute("SELECT count(*) FROM species").fetchall()[0][0] == 0:
                status = poison_status()
                seed = pa.table({"class_id": pa.array(list(status), pa.int32()),
                                 "poisonous": pa.array(list(status.values()), pa.bool_())})
                with registered(self.con, "_seed_species", seed):
                    self.con.execute("INSERT INTO species (class_id, poisonous) "
                                     "SELECT class_id, poisonous FROM _seed_species")

    def _check_species(self, restore: bool) -> None:
        """Refuse a store whose species table is not the official DF20 poisonous list;
        ``restore`` (a writable store) makes it that list again first."""
        path = str(self.path)
        try:
            if not self._read(lambda con: con.execute(
                    "SELECT count(*) FROM duckdb_tables() WHERE database_name = "
                    "current_database() AND table_name = 'species'").fetchall()[0][0]):
                raise StoreError(f"{path!r} has no species table: not a sporeprint store; pass "
                                 "a store made by `sporeprint ingest` or `sporeprint import`")
            if restore:
                self._writable()
                changed = self._write(validation.restore_official_species)
                if changed:
                    log.warning("store %s: restored the official poisonous flags of class ids "
                                "%s", path, changed[:20])
            problem = self._read(validation.poison_list_problem)
        except BaseException:
            self.close()
            raise
        if problem:
            self.close()
            raise StoreError(f"store {path!r} {problem}, so its poison answers cannot be "
                             "trusted; restore the official list with `sporeprint import "
                             f"--store {path} --official-species`")

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    @property
    def store_id(self) -> str:
        """A random UUID made with the store and kept in ``meta``; stable forever."""
        rows = self._read(lambda con: con.execute(
            "SELECT value FROM meta WHERE key = 'store_id'").fetchall())
        if not rows:
            raise StoreError(f"store {str(self.path)!r} has no id yet (made by an older "
                             "sporeprint); open it once for writing (e.g. `sporeprint ingest`) "
                             "to give it one")
        return rows[0][0]

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
            raise StoreError(f"store {str(self.path)!r} is open read-only; open it for "
                             "writing to change it (sporeprint.open(path, write=True), "
                             "FeatureStore(path, read_only=False), CLI: --write)")

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

    def sql(self, query: str, params: list | dict | None = None,
            timeout: float | None = None) -> pa.Table:
        """Run one SQL statement with bound parameters; returns its rows as Arrow.

        Text holding several statements is refused (nothing runs). ``timeout`` (seconds)
        interrupts a statement still running then: StoreError, and a writing statement
        changes nothing.

        >>> fs.sql("SELECT * FROM species WHERE class_id = ?", [3])   # doctest: +SKIP
        """
        if self.con is None:
            raise StoreError(f"store {str(self.path)!r} is closed; open a new FeatureStore")
        if timeout is not None and not timeout > 0:
            raise StoreError(f"timeout {timeout!r} must be a positive number of seconds")
        timer = None
        try:
            statements = self.con.extract_statements(query)
            if len(statements) != 1:
                raise StoreError(
                    f"the SQL text holds {len(statements)} statements; run one statement at "
                    "a time (split the text at its semicolons)" if statements else
                    "the SQL text holds no statement; pass one, e.g. \"SELECT count(*) FROM "
                    "observations\"")
            if timeout is not None:
                timer = threading.Timer(timeout, self.con.interrupt)
                timer.daemon = True
                timer.start()
            rel = self.con.sql(query, params=params)
            if rel is None:  # statement without a result
                return pa.table({})
            return rel.to_arrow_table()
        except duckdb.InterruptException as exc:
            raise StoreError(f"SQL on {str(self.path)!r} stopped after {timeout:g} s (its time "
                             "limit) and changed nothing; narrow the query, or allow more "
                             "time (CLI: --timeout SECONDS)") from exc
        except duckdb.Error as exc:
            hint = ""
            if self.read_only and "read-only" in str(exc).lower():
                hint = ("; open the store for writing to change it (sporeprint.open(path, "
                        "write=True), FeatureStore(path, read_only=False), CLI: --write)")
            elif self.safe_sql and (isinstance(exc, duckdb.PermissionException) or (
                    isinstance(exc, duckdb.InvalidInputException)
                    and "configuration" in str(exc))):
                hint = ("; SQL on a read-only store runs over the store's own tables only (no "
                        "files, other databases or extensions); export tables with "
                        "`sporeprint export`, or open the store for writing (CLI: --write)")
            raise StoreError(f"SQL failed on {str(self.path)!r}: {exc}{hint}") from exc
        finally:
            if timer is not None:
                timer.cancel()

    # -- ingestion ----------------------------------------------------------------------

    def ingest_metadata(self, path: str | Path, role: str = "train",
                        images_dir: str | Path | None = None,
                        class_ids: str = "auto") -> IngestReport:
        """Ingest a DF20/DF21/FungiCLEF metadata CSV or Parquet file in one transaction.
        ``class_ids``: ``auto`` (check the file's class numbering against the store's
        species names and the official list), ``official`` (the file uses DF20 class
        ids) or ``species`` (find each row's class from its species name); see
        ``store/ingest.py``."""
        return self._write(ingest_metadata, path, role=role, images_dir=images_dir,
                           class_ids=class_ids)

    def ingest_embeddings(self, path: str | Path, space: str,
                          model_id: str | None = None) -> EmbeddingIngestReport:
        """Load precomputed per-image vectors (Parquet: image_path, embedding) in one
        transaction: a bad file changes nothing (see ``embedding_file.ingest_embedding_file``)."""
        self._writable()
        with embedding_file.ingest_memory_cap(self.con, path):
            return self._write(embedding_file.ingest_embedding_file, path, space,
                               model_id=model_id)

    def ingest_batch(self, metadata: str | Path, embeddings: str | Path | None, space: str,
                     role: str = "new", images_dir: str | Path | None = None
                     ) -> BatchIngestReport:
        """Ingest a batch's metadata file and the precomputed vectors of its images (or
        none: ``embeddings=None``) in one transaction; see ``store/batch.py``. A rejected
        row leaves out its own image (its vector is skipped, and an observation with no
        accepted row is listed in ``left_out`` with the reason); a bad vector file leaves
        the metadata out too."""
        self._writable()
        if embeddings is None:
            return self._write(batch.ingest_batch, metadata, None, space, role=role,
                               images_dir=images_dir)
        with embedding_file.ingest_memory_cap(self.con, embeddings):
            return self._write(batch.ingest_batch, metadata, embeddings, space, role=role,
                               images_dir=images_dir)

    # -- embedding spaces ---------------------------------------------------------------

    def ensure_space(self, spec: EmbeddingSpace) -> EmbeddingSpace:
        return self._write(spaces.ensure_space, spec)

    def get_space(self, name: str) -> EmbeddingSpace | None:
        return self._read(spaces.get_space, name)

    def require_space(self, name: str) -> EmbeddingSpace:
        """The space ``name``; StoreError listing the spaces there are when it is missing."""
        return self._read(spaces.require_space, name)

    def space_names(self) -> list[str]:
        return self._read(spaces.space_names)

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

    def fold_observations(self, fold: int, seed: int | None = None,
                          calibration_slice: int | None = None) -> dict[str, np.ndarray]:
        """``{"train": ids, "val": ids, "test": ids}`` for fold 1 or 2 of the current split
        (or of ``seed``); with ``calibration_slice=one_in`` the calibration slice is taken
        out of train and val and returned as ``"calibration"``."""
        return self._read(splits.fold_observations, fold, seed, calibration_slice)

    def calibration_observations(self, seed: int | None = None,
                                 one_in: int = splits.CALIBRATION_ONE_IN) -> np.ndarray:
        """Sorted ids of the calibration slice: one in ``one_in`` of the p1 and p2
        observations, species-stratified, derived from the split seed (store/splits.py)."""
        return self._read(splits.calibration_observations, seed, one_in)

    def split_seed(self) -> int:
        """THE current split seed: the seed of the latest ``make_splits``."""
        return self._read(splits.current_seed)

    def has_splits(self) -> bool:
        return self._read(splits.has_splits)

    # -- selections and look-ups --------------------------------------------------------

    def selection_image_ids(self, space: str, where: str = "all",
                            seed: int | None = None) -> np.ndarray:
        """Sorted int64 image ids of the ``where`` selection (one of ``SELECTIONS``) that
        have a vector in ``space``; split selections use the current split unless ``seed``."""
        return self._read(queries.selection_image_ids, space, where, seed)

    def filtered_image_ids(self, filters: SearchFilters | None,
                           exclude_observations=None) -> np.ndarray | None:
        """Sorted image ids passing ``filters`` outside ``exclude_observations``; None when
        nothing restricts."""
        return self._read(queries.filtered_image_ids, filters, exclude_observations)

    def poisonous_class_ids(self) -> np.ndarray:
        """The official poisonous class ids held in ``species`` (sorted int64)."""
        return self._read(queries.poisonous_class_ids)

    def observation_images(self, observation_ids, labelled_only: bool = True) -> pa.Table:
        """``image_id, observation_id, class_id`` (-1 for NULL) ordered by image_id; with
        ``labelled_only`` observations without a class are left out."""
        return self._read(queries.observation_images, observation_ids, labelled_only)

    def observation_image_ids(self, observation_id: int) -> np.ndarray:
        """Sorted image ids of one observation; StoreError if it is not stored."""
        return self._read(queries.observation_image_ids, observation_id)

    def image_observations(self, image_ids) -> np.ndarray:
        """Observation id of each given image id, same order."""
        return self._read(queries.image_observations, image_ids)

    def observation_class_ids(self, observation_ids) -> np.ndarray:
        """class_id of each given observation id, same order; -1 for NULL or not stored."""
        return self._read(queries.observation_class_ids, observation_ids)

    def existing_observations(self, observation_ids) -> pa.Table:
        """``observation_id, role`` of those of the given ids that are stored."""
        return self._read(queries.existing_observations, observation_ids)

    def training_image_counts(self, class_ids) -> np.ndarray:
        """Images of role=train observations per class (float64, same order as given)."""
        return self._read(queries.training_image_counts, class_ids)

    def describe_hits(self, hits: pa.Table) -> pa.Table:
        """Search hits (rank, observation_id, score, image_id) with image_path, class_id,
        species, poisonous (NULL when unlabelled), date, place columns and role, by rank."""
        return self._read(queries.describe_hits, hits)

    def embedding_failure_reasons(self, space: str, limit: int = 10) -> list[dict]:
        """The most common reasons images failed to embed in ``space``: ``[{reason, n}]``."""
        return self._read(queries.embedding_failure_reasons, space, limit)

    def batch_predictions(self, batch: str, run_key: str | None = None) -> pa.Table:
        """A scored batch's prediction rows (plus ``true_class_id`` where the store has a
        label), by observation id; default run key: the one that scored it last."""
        return self._read(queries.batch_predictions, batch, run_key)

    def observation_inputs(self, observation_ids) -> pa.Table:
        """The metadata-encoder inputs of stored observations (store field names), in order."""
        return self._read(queries.observation_inputs, observation_ids)

    def image_file_path(self, image_id: int) -> str | None:
        """The file path of one stored image (None when it has no file)."""
        return self._read(queries.image_file_path, image_id)

    def species_table(self) -> pa.Table:
        """class_id, species, genus, family and the official poisonous flag of each class."""
        return self._read(queries.species_table)

    def stored_image_paths(self, image_paths) -> list[str]:
        """Those of the given image paths that are already stored."""
        return self._read(queries.stored_image_paths, image_paths)

    def describe_observations(self, observation_ids) -> pa.Table:
        """Metadata of the given stored observations, in the given order."""
        return self._read(queries.describe_observations, observation_ids)

    # -- runs and predictions -----------------------------------------------------------

    def record_run(self, run_id: str, kind: str, space: str | None, head: str | None,
                   fold: int | None, config: dict, metrics: dict, path: str | Path | None,
                   split_seed: int | None = None) -> None:
        """Insert (or replace) the record of one training / scoring run.

        ``path`` is stored relative to the store's folder when it lies under it, so the
        folder can move; ``split_seed`` is the split the run was trained on."""
        self._write(runs.record_run, self._folder(), run_id, kind, space, head, fold, config,
                    metrics, path, split_seed)

    def get_run(self, run_id: str) -> dict | None:
        """The run's record (run_id, kind, space, head, fold, config, metrics, path, split_seed,
        created_at) with ``path`` absolute; None when there is no such run."""
        return self._read(runs.get_run, self._folder(), run_id)

    def latest_runs(self, kinds=("train", "ensemble"), limit: int = 5) -> list[str]:
        """Ids of the newest runs of ``kinds``, newest first (ties: the larger run id)."""
        return self._read(runs.latest_runs, kinds, limit)

    def runs_of(self, kind: str, space: str, head: str | None = None,
                fold: int | None = None) -> list[str]:
        """Ids of the runs of ``kind`` in ``space`` (and ``head`` / ``fold``), newest first."""
        return self._read(runs.runs_of, kind, space, head, fold)

    def default_run(self) -> str | None:
        """THE run used when none is named (scoring, serving, the report, the Python API):
        the newest ensemble run, else the newest trained head; runs created at the same
        time are told apart by run id (the larger wins). None when there is neither."""
        return self._read(runs.default_run)

    def _folder(self) -> Path:
        return self.path.resolve().parent

    def write_predictions(self, run_key: str, batch: str, table: pa.Table) -> int:
        """Replace the predictions of ``(run_key, batch)`` with ``table``'s rows."""
        return self._write(interchange.write_predictions, run_key, batch, table)

    # -- enrolled species (store/enrollment.py) ------------------------------------------

    def enroll(self, labels_path: str | Path, enrolled_by: str,
               labels_file: str | None = None) -> enrollment.EnrollmentReport:
        """Record the labels file's enrollment in one transaction (nothing on a refusal);
        ``labels_file``: the name recorded (default: the path as given)."""
        self._writable()
        labels = enrollment.read_labels(labels_path)
        digest = enrollment.file_digest(Path(labels_path))
        return self._write(enrollment.enroll, labels, labels_file or str(labels_path), digest,
                           enrolled_by)

    def undo_enrollment(self, enrollment_id: int, undone_by: str) -> dict:
        """Mark an enrollment undone: its labels stop counting; its record stays."""
        return self._write(enrollment.undo, enrollment_id, undone_by)

    def enrollments(self) -> pa.Table:
        """Every enrollment's record, oldest first."""
        return self._read(enrollment.list_enrollments)

    def enrolled_observations(self) -> pa.Table:
        """``observation_id, class_id`` of the enrollments not undone."""
        return self._read(enrollment.active_observations)

    def enrolled_species(self) -> pa.Table:
        """The enrolled classes in force: names, taxonomy, poison status (NULL = unknown),
        whether the class is on the official list, observation counts."""
        return self._read(enrollment.enrolled_species)

    # -- Parquet interchange ------------------------------------------------------------

    def export_parquet(self, table: str, out_dir: str | Path,
                       partition_by: list[str] | str | None = None) -> int:
        """Write a table as Parquet under ``out_dir`` (hive-partitioned when asked)."""
        return self._read(interchange.export_parquet, table, out_dir, partition_by)

    def export_all(self, out_dir: str | Path) -> dict[str, list[str]]:
        """Write every table as Parquet (readable without sporeprint) under ``out_dir``;
        returns ``{table: [files]}``. docs/parquet.md describes each file."""
        return self._read(interchange.export_all, out_dir)

    def import_all(self, in_dir: str | Path) -> dict[str, int]:
        """Restore a folder written by :meth:`export_all` into this new, empty store;
        returns rows added per table."""
        return self._write(interchange.import_all, in_dir)

    def import_parquet(self, table: str, path: str | Path) -> int:
        """Insert rows from a Parquet file or folder; rows whose key exists are skipped."""
        return self._write(interchange.import_parquet, table, path)


def _lock_message(path: str, read_only: bool, error: str) -> str:
    """Say which situation blocks the open, and the fix."""
    pid = re.search(r"PID (\d+)", error)
    who = f"{_process_name(int(pid.group(1)))} (PID {pid.group(1)})" if pid else \
        "another process"
    if read_only:
        return (f"store {path!r} is open for writing in {who}; wait for it to finish: DuckDB "
                "lets readers in only while no process writes")
    return (f"store {path!r} is open in {who} "
            "(reading or writing), and DuckDB lets a process write only while no other process "
            "has the file open; close that process or wait for it to finish. Readers that open "
            "it read-only (`sporeprint sql` without --write, search, index, export, report, "
            "serve, decide; FeatureStore(..., read_only=True)) can share the file with each "
            "other, never with a writer")


def _process_name(pid: int) -> str:
    """What process ``pid`` is, from its command line: ``sporeprint train`` for the CLI,
    ``python script.py`` for a script, else the program's name; "another process" when the
    command line cannot be read (another user's process, a system without /proc)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "another process"
    argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
    if not argv:
        return "another process"
    python = Path(argv[0]).name.startswith("python")
    args = argv[1:] if python else argv
    if args[:1] == ["-c"]:
        return "python -c"
    if args[:2] == ["-m", "sporeprint"]:  # python -m sporeprint <command>
        args = args[1:]
    words = [a for a in args if not a.startswith("-")]
    if words and Path(words[0]).name == "sporeprint":  # also the console script under python
        return "sporeprint " + words[1] if len(words) > 1 else "sporeprint"
    if python:
        return "python " + Path(words[0]).name if words else "python"
    return Path(argv[0]).name[:40]


def _memory_limit(value: str) -> str:
    """A DuckDB memory limit such as ``4GB`` or ``512MiB``; StoreError naming the form."""
    text = str(value).strip()
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", text,
                        flags=re.IGNORECASE):
        raise StoreError(f"memory limit {value!r} is not a size; pass a number and a unit, "
                         "e.g. 4GB or 512MiB")
    return text

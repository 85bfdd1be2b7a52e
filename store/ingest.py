"""Metadata ingestion: DF20 / DF21 / FungiCLEF 2023-2024 test files into the store.

Validation runs as SQL over a staging table, so a file of 420k rows takes
seconds. Every row ends in exactly one bucket, so
``read == stored + rejected + duplicate`` (conflicts are counted among the
rejected and also reported on their own):

- *rejected*: the row is malformed (missing ids, unparseable numbers, values
  out of range, unknown class id) or a *conflict* (same ``image_path`` or
  ``observation_id`` as a stored row or an earlier row of the file, but with
  different content: a changed field of a stored image or observation is a
  conflict, never silently dropped). Rejected rows go to the ``rejects`` table.
- *duplicate*: an identical image row is already stored.
- *stored*: a new image row (and its observation, when new).

With an images folder, each stored row's file is ``<folder>/<image_path>`` when
that resolves inside the folder (symlinks followed); a path leading outside it
gets no file, and a ``rejects`` row says so, while the row's metadata is kept.
Column names and value rules are the metadata contract's (``store/contract.py``);
an absolute ``image_path`` is reduced to its file name.

Class numbering: the poison status of a class comes from the official DF20 list, by
DF20 class id, so a file's ``class_id`` is used only as far as it can be trusted to be
DF20's (``class_ids``):

- ``auto`` (default): a class id is DF20's when the store already holds the same
  species name for it, or when the file's own ``poisonous`` value for it agrees with
  the official list, or when the file names no species at all. Evidence of another
  numbering refuses the whole file (nothing is ingested): a class id whose stored
  species name differs, a species name stored under another class id, a ``poisonous``
  value that contradicts the official list. A named species with no evidence either
  way (e.g. DF20-Mini, numbered 0..181, into a store without DF20 names) is stored as
  class_id -1: unknown to the official list, so its poison status is unknown (NULL),
  never edible by the list.
- ``official``: the file's class ids are DF20's (contradicting evidence still refuses
  the file).
- ``species``: the file's class ids are ignored; each row's class is the stored class
  of its species name (``species``, else ``scientificName``); a name the store does not
  hold (or holds under several ids) becomes -1, poison status unknown.
"""

from __future__ import annotations

import csv
import logging
import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .contract import (
    COLUMN_ALIASES,
    NAME_FIELDS,
    REQUIRED_FOR_INGEST,
    resolve_columns,
    stage_sql,
    substrate_groups_table,
)
from .errors import StoreError
from .schema import (
    IMAGE_FIELDS,
    OBSERVATION_COLUMNS,
    OBSERVATION_FIELDS,
    TAXONOMY_FIELDS,
    q,
)
from .temporary import registered
from .vocabulary import CLASS_ID_MODES, ROLES

log = logging.getLogger(__name__)

MAX_EXAMPLES = 20


@dataclass
class IngestReport:
    """Counts of one metadata ingestion; ``read == stored + rejected + duplicate``."""

    source_file: str
    read: int = 0
    stored: int = 0
    rejected: int = 0  # malformed rows and conflicts
    duplicate: int = 0
    conflicts: int = 0  # the part of `rejected` that conflicts with other rows
    outside_images_dir: int = 0  # stored rows whose image_path leads outside images_dir
    image_paths_reduced: int = 0  # absolute image paths reduced to their file names
    classes_by_species: int = 0  # rows whose class id was found from their species name
    unknown_species_rows: int = 0  # labelled rows stored as -1: species unknown to the list
    observations_added: int = 0
    examples: list[tuple[int, str]] = field(default_factory=list)  # (row number, reason)
    # the file's observations now stored with this role (sorted int64)
    observation_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # the file's observations with no row stored under this role: every row rejected, or
    # the id already stored under another role (sorted int64)
    rejected_observation_ids: np.ndarray = field(
        default_factory=lambda: np.zeros(0, np.int64))

    def __str__(self) -> str:
        return (f"read {self.read}, stored {self.stored}, rejected {self.rejected} "
                f"(of which {self.conflicts} conflicts), duplicate {self.duplicate}; "
                f"{self.observations_added} new observations"
                + (f"; {self.outside_images_dir} image paths outside the images folder (no file)"
                   if self.outside_images_dir else "")
                + (f"; {self.image_paths_reduced} absolute image paths reduced to file names"
                   if self.image_paths_reduced else "")
                + (f"; {self.classes_by_species} rows given their class by species name"
                   if self.classes_by_species else "")
                + (f"; {self.unknown_species_rows} labelled rows of species the official list "
                   "cannot place stored as class_id -1 (poison status unknown; pass "
                   "class_ids='official' if the file uses DF20 class ids)"
                   if self.unknown_species_rows else ""))


def read_metadata_table(path: str | Path) -> pa.Table:
    """Read a CSV or Parquet metadata file as it is (CSV columns as strings)."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"metadata file {str(path)!r} does not exist; pass the path of a "
                         "DF20/DF21/FungiCLEF metadata CSV or Parquet file")
    if path.stat().st_size == 0:
        raise StoreError(f"metadata file {str(path)!r} is empty; expected a CSV or Parquet "
                         "file with a header row and at least one data row")
    is_parquet = path.suffix.lower() in (".parquet", ".pq")
    if not is_parquet:
        with open(path, "rb") as fh:
            is_parquet = fh.read(4) == b"PAR1"
    try:
        if is_parquet:
            return pq.read_table(path)
        with open(path, encoding="utf-8", newline="") as fh:
            header = next(csv.reader([fh.readline()]))
        return pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=False,
            ),
        )
    except (UnicodeDecodeError, StopIteration, pa.ArrowException, OSError) as exc:
        raise StoreError(f"{str(path)!r} is not a readable CSV or Parquet metadata file "
                         f"({exc}); expected DF20-style metadata with observationID and "
                         "image_path columns") from exc


def _source_columns(table: pa.Table, path: str) -> dict[str, str]:
    """Map canonical column -> column name in the file (the metadata contract's names)."""
    found = resolve_columns(table.column_names, what=repr(path))
    missing = [c for c in REQUIRED_FOR_INGEST if c not in found]
    if missing:
        want = " and ".join("/".join((c, *COLUMN_ALIASES[c])) for c in missing)
        shown = ", ".join(table.column_names[:12]) or "none"
        raise StoreError(f"{path!r} is not a metadata file: it lacks {want} (columns found: "
                         f"{shown}); expected the DF20 train, DF21 val or FungiCLEF test format")
    if table.num_rows == 0:
        raise StoreError(f"{path!r} has a header but no rows; nothing to ingest")
    return found


def _equal(a: str, b: str, cols: list[str]) -> str:
    return " AND ".join(f"{a}.{q(c)} IS NOT DISTINCT FROM {b}.{q(c)}" for c in cols)


def _diff(a: str, b: str, cols: list[str]) -> str:
    """SQL text listing the names of the columns that differ between two rows."""
    parts = ", ".join(
        f"CASE WHEN {a}.{q(c)} IS DISTINCT FROM {b}.{q(c)} THEN '{c}' END" for c in cols)
    return f"concat_ws(', ', {parts})"


class ClassNumberingError(StoreError):
    """A file's class ids are not the DF20 numbering of the official poison list."""


def ingest_metadata(con: duckdb.DuckDBPyConnection, path: str | Path, role: str = "train",
                    images_dir: str | Path | None = None,
                    class_ids: str = "auto") -> IngestReport:
    """Ingest one metadata file inside the caller's open transaction (``class_ids``: how
    the file's class ids are read, see the module's docstring)."""
    if class_ids not in CLASS_ID_MODES:
        raise StoreError(f"class_ids {class_ids!r} is not one of {', '.join(CLASS_ID_MODES)}; "
                         "auto checks the file's numbering, official trusts it, species maps "
                         "species names to the store's class ids")
    if role not in ROLES:
        raise StoreError(f"role {role!r} is not one of {', '.join(ROLES)}; pass --role train "
                         "for DF20, val for DF21, test for a test file or new for new photos")
    path = Path(path)
    source = str(path.resolve())
    table = read_metadata_table(path)
    found = _source_columns(table, str(path))
    table = table.append_column("_row", pa.array(range(1, table.num_rows + 1), pa.int64()))
    report = IngestReport(source_file=source, read=table.num_rows)
    images_root = str(Path(images_dir).resolve()) if images_dir is not None else None
    if images_dir is not None and not Path(images_dir).is_dir():
        raise StoreError(f"images directory {str(images_dir)!r} does not exist; pass the "
                         "folder that holds the image files named in image_path")

    with ExitStack() as views:
        views.enter_context(registered(con, "_src", table))
        views.enter_context(registered(con, "_substrate_groups", substrate_groups_table()))
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE _typed AS {stage_sql(found)}",
                        {"role": role})
            _map_classes(con, str(path), found, class_ids, report)
            _classify(con)
            if images_root is not None:
                views.enter_context(registered(con, "_files", _file_paths(con, images_root)))
            _write(con, source, images_root, report)
            _observation_outcome(con, role, report)
        finally:
            for name in ("_typed", "_cls", "_classmap"):
                con.execute(f"DROP TABLE IF EXISTS {name}")
    log.info("ingested %s: %s", source, report)
    if report.conflicts:
        log.warning("%s: %d rows conflict with stored or earlier rows and were not stored "
                    "(see the rejects table); first: row %s: %s", source, report.conflicts,
                    *next((e for e in report.examples if e[1].startswith("conflict")),
                          ("?", "beyond the first examples")))
    return report


def _map_classes(con: duckdb.DuckDBPyConnection, path: str, found: dict[str, str],
                 mode: str, report: IngestReport) -> None:
    """Check (and, by species name, set) the class ids of `_typed`'s valid labelled rows
    against the store's species names and the official list; see the module docstring."""
    report.image_paths_reduced = con.execute(
        "SELECT count(*) FROM _typed WHERE reason = '' AND image_path_reduced").fetchall()[0][0]
    has_names = any(c in found for c in NAME_FIELDS)
    name = "lower(trim(coalesce(t.species, t.scientific_name)))"
    stored = "lower(trim(coalesce(s.species, s.scientific_name)))"
    con.execute(f"""
CREATE OR REPLACE TEMP TABLE _classmap AS
WITH f AS (
    SELECT t.class_id, {name} AS name, any_value(coalesce(t.species, t.scientific_name)) AS shown,
           count(DISTINCT t.file_poisonous) AS n_flags, any_value(t.file_poisonous) AS flag,
           count(*) AS n_rows
    FROM _typed t WHERE t.reason = '' AND t.class_id >= 0 GROUP BY ALL
),
named AS (
    SELECT {stored} AS name, list(s.class_id ORDER BY s.class_id) AS ids,
           any_value(coalesce(s.species, s.scientific_name)) AS shown
    FROM species s WHERE {stored} IS NOT NULL GROUP BY 1
)
SELECT f.*, coalesce(s.species, s.scientific_name) AS stored_shown, {stored} AS stored_name,
       s.poisonous AS official, n.ids AS ids_of_name
FROM f LEFT JOIN species s ON s.class_id = f.class_id LEFT JOIN named n ON n.name = f.name
""")
    if mode != "species":
        conflicts = con.execute("""
SELECT CASE
  WHEN stored_name IS NOT NULL AND name IS NOT NULL AND stored_name <> name
    THEN 'class_id ' || class_id || ' is ''' || shown || ''' in this file but '''
         || stored_shown || ''' in the store'
  WHEN name IS NOT NULL AND ids_of_name IS NOT NULL AND NOT list_contains(ids_of_name, class_id)
    THEN '''' || shown || ''' is class_id ' || class_id || ' in this file but class_id '
         || array_to_string(ids_of_name, '/') || ' in the store'
  WHEN n_flags > 1 THEN 'class_id ' || class_id || ' is marked both poisonous and not'
  WHEN flag IS NOT NULL AND flag <> official
    THEN 'class_id ' || class_id || coalesce(' (''' || shown || ''')', '') || ' is marked poisonous='
         || CAST(flag AS INTEGER) || ' in this file but the official DF20 list has it '
         || CASE WHEN official THEN 'poisonous' ELSE 'not poisonous' END
END AS why FROM _classmap WHERE why IS NOT NULL ORDER BY class_id""").fetchall()
        if conflicts:
            more = f" (and {len(conflicts) - 1} more classes)" if len(conflicts) > 1 else ""
            raise ClassNumberingError(
                f"{path!r} does not number its classes as DF20's official poison list does: "
                f"{conflicts[0][0]}{more}; nothing was ingested. Pass --class-ids species "
                "(Python: class_ids='species') to give each row the class of its species name "
                "(species the store does not know get class_id -1, poison status unknown)")
    if mode == "species":
        new = ("CASE WHEN len(ids_of_name) = 1 THEN ids_of_name[1] ELSE -1 END")
    elif mode == "official" or not has_names:
        new = "class_id"
    else:  # auto: confirmed by a stored name or the file's own poison flag, else unknown
        new = "CASE WHEN stored_name = name OR flag IS NOT NULL THEN class_id ELSE -1 END"
    con.execute("ALTER TABLE _classmap ADD COLUMN new_id INTEGER")
    con.execute(f"UPDATE _classmap SET new_id = {new}")
    con.execute(f"""
UPDATE _typed t SET class_id = m.new_id FROM _classmap m
WHERE t.reason = '' AND t.class_id = m.class_id AND {name} IS NOT DISTINCT FROM m.name
  AND m.new_id <> m.class_id""")
    counts = con.execute("SELECT coalesce(sum(n_rows) FILTER (WHERE new_id >= 0 AND new_id <> "
                         "class_id), 0), coalesce(sum(n_rows) FILTER (WHERE new_id = -1), 0) "
                         "FROM _classmap").fetchall()[0]
    report.classes_by_species, report.unknown_species_rows = int(counts[0]), int(counts[1])
    if report.unknown_species_rows:
        log.warning("%s: %d labelled rows name species the official list cannot place "
                    "(no stored species name or poisonous column confirms the file's class "
                    "ids); stored as class_id -1, poison status unknown", path,
                    report.unknown_species_rows)


def _classify(con: duckdb.DuckDBPyConnection) -> None:
    """Build the `_cls` (_row, status, reason) temp table from `_typed`."""
    obs_cols = OBSERVATION_FIELDS
    img_cols = ["observation_id", *obs_cols, *IMAGE_FIELDS]
    con.execute(f"""
CREATE OR REPLACE TEMP TABLE _cls AS
WITH v AS (
    SELECT t.*, min(_row) OVER (PARTITION BY image_path) AS img_row
    FROM _typed t WHERE reason = ''
),
canon AS (
    SELECT *, min(_row) OVER (PARTITION BY observation_id) AS obs_row FROM v WHERE _row = img_row
),
repeat_rows AS (
    SELECT v._row,
           CASE WHEN {_equal('v', 'c', img_cols)} THEN 'duplicate' ELSE 'conflict' END AS status,
           CASE WHEN {_equal('v', 'c', img_cols)} THEN NULL
                ELSE 'conflict: image_path ' || v.image_path || ' already appears in row '
                     || c._row || ' of this file with different ' || {_diff('v', 'c', img_cols)}
           END AS reason
    FROM v JOIN canon c ON v.img_row = c._row
    WHERE v._row <> v.img_row
),
canon_rows AS (
    SELECT c._row, c.observation_id, c.image_path,
           {_diff('c', 'f', obs_cols)} AS file_diff, f._row AS first_row,
           si.observation_id AS stored_obs_of_image,
           {_diff('c', 'si', [f for f in IMAGE_FIELDS if f != 'image_path'])} AS stored_img_diff,
           so.observation_id IS NOT NULL AS obs_stored,
           {_diff('c', 'so', obs_cols)} AS stored_diff
    FROM canon c
    JOIN canon f ON f._row = c.obs_row
    LEFT JOIN images si ON si.image_path = c.image_path
    LEFT JOIN observations so ON so.observation_id = c.observation_id
)
SELECT _row, 'rejected' AS status, reason FROM _typed WHERE reason <> ''
UNION ALL
SELECT _row, status, reason FROM repeat_rows
UNION ALL
SELECT _row,
  CASE WHEN file_diff <> '' THEN 'conflict'
       WHEN stored_obs_of_image IS NOT NULL AND stored_obs_of_image <> observation_id
            THEN 'conflict'
       WHEN obs_stored AND stored_diff <> '' THEN 'conflict'
       WHEN stored_obs_of_image IS NOT NULL AND stored_img_diff <> '' THEN 'conflict'
       WHEN stored_obs_of_image IS NOT NULL THEN 'duplicate'
       ELSE 'stored' END,
  CASE WHEN file_diff <> '' THEN 'conflict: observation ' || observation_id
            || ' differs from row ' || first_row || ' of this file in ' || file_diff
       WHEN stored_obs_of_image IS NOT NULL AND stored_obs_of_image <> observation_id
            THEN 'conflict: image_path ' || image_path || ' is already stored under observation '
            || stored_obs_of_image
       WHEN obs_stored AND stored_diff <> '' THEN 'conflict: observation ' || observation_id
            || ' is already stored with different ' || stored_diff
       WHEN stored_obs_of_image IS NOT NULL AND stored_img_diff <> '' THEN 'conflict: image_path '
            || image_path || ' is already stored with different ' || stored_img_diff
  END
FROM canon_rows
""")


def _write(con: duckdb.DuckDBPyConnection, source: str, images_root: str | None,
           report: IngestReport) -> None:
    counts = dict(con.execute("SELECT status, count(*) FROM _cls GROUP BY status").fetchall())
    report.stored = counts.get("stored", 0)
    report.duplicate = counts.get("duplicate", 0)
    report.conflicts = counts.get("conflict", 0)
    report.rejected = counts.get("rejected", 0) + report.conflicts
    if report.read != report.stored + report.rejected + report.duplicate:
        raise StoreError(f"internal error: counts of {source!r} do not add up ({report}); "
                         "nothing was ingested")
    report.examples = [tuple(r) for r in con.execute(
        "SELECT _row, reason FROM _cls WHERE status IN ('rejected', 'conflict') "
        "ORDER BY _row LIMIT ?", [MAX_EXAMPLES]).fetchall()]

    obs_cols = ", ".join(q(c) for c in OBSERVATION_FIELDS)
    before = con.execute("SELECT count(*) FROM observations").fetchall()[0][0]
    con.execute(f"""
INSERT INTO observations (observation_id, {obs_cols}, source_file)
SELECT observation_id, {obs_cols}, $source FROM (
    SELECT t.*, row_number() OVER (PARTITION BY t.observation_id ORDER BY t._row) AS k
    FROM _typed t JOIN _cls c USING (_row) WHERE c.status = 'stored'
) WHERE k = 1 AND observation_id NOT IN (SELECT observation_id FROM observations)
""", {"source": source})
    report.observations_added = (
        con.execute("SELECT count(*) FROM observations").fetchall()[0][0] - before)

    img_cols = ", ".join(q(c) for c in IMAGE_FIELDS)
    files = "LEFT JOIN _files f USING (_row)" if images_root else ""
    file_path = "f.file_path" if images_root else "NULL"
    con.execute(f"""
INSERT INTO images (image_id, observation_id, {img_cols}, file_path, source_file)
SELECT (SELECT coalesce(max(image_id), 0) FROM images) + row_number() OVER (ORDER BY t._row),
       t.observation_id, {', '.join('t.' + q(c) for c in IMAGE_FIELDS)}, {file_path}, $source
FROM _typed t JOIN _cls c USING (_row) {files} WHERE c.status = 'stored'
""", {"source": source})
    if images_root:  # fill a missing file path of an already stored image; never overwrite
        con.execute("""
UPDATE images SET file_path = f.file_path
FROM _typed t JOIN _cls c USING (_row) JOIN _files f USING (_row)
WHERE c.status = 'duplicate' AND t.image_path = images.image_path AND images.file_path IS NULL
  AND f.file_path IS NOT NULL
""")
        outside = con.execute("""
INSERT INTO rejects (source_file, row_number, reason, raw)
SELECT $source, t._row, f.reason, t.raw
FROM _typed t JOIN _cls c USING (_row) JOIN _files f USING (_row)
WHERE c.status IN ('stored', 'duplicate') AND f.reason IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM rejects r WHERE r.source_file = $source
                  AND r.row_number = t._row AND r.reason = f.reason)
RETURNING row_number, reason""", {"source": source}).fetchall()
        report.outside_images_dir = len(outside)
        report.examples += [tuple(r) for r in outside[:MAX_EXAMPLES]]

    con.execute("""
INSERT INTO rejects (source_file, row_number, reason, raw)
SELECT $source, t._row, c.reason, t.raw
FROM _typed t JOIN _cls c USING (_row)
WHERE c.status IN ('rejected', 'conflict')
  AND NOT EXISTS (SELECT 1 FROM rejects r WHERE r.source_file = $source
                  AND r.row_number = t._row AND r.reason = c.reason)
""", {"source": source})
    _update_taxonomy(con)


def _file_paths(con: duckdb.DuckDBPyConnection, images_root: str) -> pa.Table:
    """``_row, file_path, reason``: the file of each row under the images
    folder, or no file and a reason when the path leads outside it (``..``, an absolute
    path, or a symlink pointing out)."""
    rows = con.sql("SELECT t._row, t.image_path FROM _typed t JOIN _cls c USING (_row) "
                   "WHERE c.status IN ('stored', 'duplicate')").to_arrow_table()
    root = os.path.realpath(images_root)
    paths, reasons = [], []
    for image_path in rows.column(1).to_pylist():
        candidate = os.path.normpath(os.path.join(images_root, image_path))
        real = os.path.realpath(candidate)
        if os.path.commonpath([root, real]) == root and real != root:
            paths.append(candidate)
            reasons.append(None)
        else:
            paths.append(None)
            reasons.append(f"image_path {image_path!r} resolves outside the images folder "
                           f"{images_root!r} (to {real!r}); it gets no file path, its "
                           "metadata is kept")
    return pa.table({"_row": rows.column(0), "file_path": pa.array(paths, pa.string()),
                     "reason": pa.array(reasons, pa.string())})


def _observation_outcome(con: duckdb.DuckDBPyConnection, role: str,
                         report: IngestReport) -> None:
    """Which of the file's observation ids are stored with ``role`` and which are not."""
    rows = con.sql("""
SELECT f.observation_id, (o.role IS NOT DISTINCT FROM $role) AS ok
FROM (SELECT DISTINCT observation_id FROM _typed WHERE observation_id IS NOT NULL) f
LEFT JOIN observations o USING (observation_id) ORDER BY 1""", params={"role": role}
                   ).to_arrow_table()
    ids = rows.column(0).to_numpy().astype(np.int64)
    ok = rows.column(1).to_numpy(zero_copy_only=False).astype(bool)
    report.observation_ids = ids[ok]
    report.rejected_observation_ids = ids[~ok]


def _update_taxonomy(con: duckdb.DuckDBPyConnection) -> None:
    """Fill species names from labelled stored rows of this file (first row per class)."""
    picks = ", ".join(f"arg_min(t.{q(c)}, t._row) FILTER (WHERE t.{q(c)} IS NOT NULL) AS {q(c)}"
                      for c in TAXONOMY_FIELDS)
    # fill-only: a stored name is never replaced (a differing one refuses the file earlier)
    sets = ", ".join(f"{q(c)} = coalesce(species.{q(c)}, s.{q(c)})" for c in TAXONOMY_FIELDS)
    con.execute(f"""
UPDATE species SET {sets}
FROM (SELECT t.class_id, {picks} FROM _typed t JOIN _cls c USING (_row)
      WHERE c.status = 'stored' AND t.class_id >= 0 GROUP BY t.class_id) s
WHERE species.class_id = s.class_id
""")


__all__ = ["CLASS_ID_MODES", "ClassNumberingError", "IngestReport", "ROLES", "ingest_metadata",
           "read_metadata_table", "OBSERVATION_COLUMNS"]

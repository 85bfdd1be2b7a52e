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

from .errors import StoreError
from .reference import substrate_groups
from .schema import (
    IMAGE_FIELDS,
    OBSERVATION_COLUMNS,
    OBSERVATION_FIELDS,
    REQUIRED_SOURCE,
    SOURCE_ALIASES,
    TAXONOMY_FIELDS,
    q,
)
from .temporary import registered
from .validation import FINITE, value_reason
from .vocabulary import ROLES

log = logging.getLogger(__name__)

NULL_TOKENS = ("", "nan", "na", "n/a", "null", "none")
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
                   if self.outside_images_dir else ""))


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
    """Map canonical column -> column name in the file."""
    names = set(table.column_names)
    found = {}
    for canon, aliases in SOURCE_ALIASES.items():
        for alias in aliases:
            if alias in names:
                found[canon] = alias
                break
    missing = [c for c in REQUIRED_SOURCE if c not in found]
    if missing:
        want = " and ".join("/".join(SOURCE_ALIASES[c]) for c in missing)
        shown = ", ".join(table.column_names[:12]) or "none"
        raise StoreError(f"{path!r} is not a metadata file: it lacks {want} (columns found: "
                         f"{shown}); expected the DF20 train, DF21 val or FungiCLEF test format")
    if table.num_rows == 0:
        raise StoreError(f"{path!r} has a header but no rows; nothing to ingest")
    return found


def _norm(expr: str) -> str:
    tokens = ", ".join(f"'{t}'" for t in NULL_TOKENS)
    return f"CASE WHEN lower(trim({expr})) IN ({tokens}) THEN NULL ELSE trim({expr}) END"


def _int(raw: str) -> str:
    return (f"CASE WHEN regexp_full_match({raw}, '[+-]?[0-9]+') THEN TRY_CAST({raw} AS BIGINT) "
            f"WHEN regexp_full_match({raw}, '[+-]?[0-9]+\\.0*') "
            f"THEN TRY_CAST(split_part({raw}, '.', 1) AS BIGINT) END")


def _dbl(raw: str) -> str:
    return (f"CASE WHEN isfinite(TRY_CAST({raw} AS DOUBLE)) "
            f"THEN TRY_CAST({raw} AS DOUBLE) END")


def _equal(a: str, b: str, cols: list[str]) -> str:
    return " AND ".join(f"{a}.{q(c)} IS NOT DISTINCT FROM {b}.{q(c)}" for c in cols)


def _diff(a: str, b: str, cols: list[str]) -> str:
    """SQL text listing the names of the columns that differ between two rows."""
    parts = ", ".join(
        f"CASE WHEN {a}.{q(c)} IS DISTINCT FROM {b}.{q(c)} THEN '{c}' END" for c in cols)
    return f"concat_ws(', ', {parts})"


def _stage_sql(found: dict[str, str]) -> str:
    """SELECT over `_src` giving normalised raw strings, typed values and the reject reason."""
    raw = {c: (_norm(f"CAST({q(found[c])} AS VARCHAR)") if c in found else "NULL::VARCHAR")
           for c in SOURCE_ALIASES}
    raw_cols = ", ".join(f"{expr} AS {q('r_' + c)}" for c, expr in raw.items())
    raw_json = ", ".join(f"{q(src)} := {q(src)}" for src in found.values())
    inner = f"SELECT _row, to_json(struct_pack({raw_json})) AS raw, {raw_cols} FROM _src"

    ints = ("observation_id", "class_id", "year", "month", "day")
    dbls = FINITE
    typed = []
    for c in ["observation_id", *OBSERVATION_FIELDS, *IMAGE_FIELDS]:
        if c == "role":
            typed.append("CAST($role AS VARCHAR) AS role")
        elif c in ints:
            typed.append(f"CAST({_int(q('r_' + c))} AS "
                         f"{'BIGINT' if c == 'observation_id' else 'INTEGER'}) AS {q(c)}")
        elif c in dbls:
            typed.append(f"{_dbl(q('r_' + c))} AS {q(c)}")
        elif c == "meta_substrate":
            typed.append("COALESCE(r_meta_substrate, (SELECT g.meta FROM _substrate_groups g "
                         "WHERE g.substrate = r_substrate)) AS meta_substrate")
        else:
            typed.append(f"{q('r_' + c)} AS {q(c)}")

    def bad(c: str, kind: str) -> str:
        fn = _int if kind == "int" else _dbl
        return (f"CASE WHEN r_{c} IS NOT NULL AND ({fn('r_' + c)}) IS NULL "
                f"THEN 'unparseable {c} ''' || r_{c} || '''' END")

    def rule(c: str) -> str:  # the value rules import applies too (store/validation.py)
        return value_reason(c, lambda c: f"({(_int if c in ints else _dbl)('r_' + c)})",
                            lambda c: f"r_{c}")

    reasons = [
        "CASE WHEN r_observation_id IS NULL THEN 'missing observation id' END",
        bad("observation_id", "int"),
        "CASE WHEN r_image_path IS NULL THEN 'missing image_path' END",
        bad("class_id", "int"), rule("class_id"),
        bad("year", "int"),
        bad("month", "int"), rule("month"),
        bad("day", "int"), rule("day"),
        bad("latitude", "dbl"), rule("latitude"),
        bad("longitude", "dbl"), rule("longitude"),
        bad("coord_uncert", "dbl"),
    ]
    return (f"SELECT _row, raw, concat_ws('; ', {', '.join(reasons)}) AS reason, "
            f"{', '.join(typed)} FROM ({inner})")


def ingest_metadata(con: duckdb.DuckDBPyConnection, path: str | Path, role: str = "train",
                    images_dir: str | Path | None = None) -> IngestReport:
    """Ingest one metadata file inside the caller's open transaction."""
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

    groups = pa.table({"substrate": list(substrate_groups()),
                       "meta": list(substrate_groups().values())})
    with ExitStack() as views:
        views.enter_context(registered(con, "_src", table))
        views.enter_context(registered(con, "_substrate_groups", groups))
        try:
            _classify(con, found, role)
            if images_root is not None:
                views.enter_context(registered(con, "_files", _file_paths(con, images_root)))
            _write(con, source, images_root, report)
            _observation_outcome(con, role, report)
        finally:
            for name in ("_typed", "_cls"):
                con.execute(f"DROP TABLE IF EXISTS {name}")
    log.info("ingested %s: %s", source, report)
    if report.conflicts:
        log.warning("%s: %d rows conflict with stored or earlier rows and were not stored "
                    "(see the rejects table); first: row %s: %s", source, report.conflicts,
                    *next((e for e in report.examples if e[1].startswith("conflict")),
                          ("?", "beyond the first examples")))
    return report


def _classify(con: duckdb.DuckDBPyConnection, found: dict[str, str], role: str) -> None:
    """Build `_typed` (typed rows) and `_cls` (_row, status, reason) temp tables."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _typed AS {_stage_sql(found)}", {"role": role})
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
    sets = ", ".join(f"{q(c)} = coalesce(s.{q(c)}, species.{q(c)})" for c in TAXONOMY_FIELDS)
    con.execute(f"""
UPDATE species SET {sets}
FROM (SELECT t.class_id, {picks} FROM _typed t JOIN _cls c USING (_row)
      WHERE c.status = 'stored' AND t.class_id >= 0 GROUP BY t.class_id) s
WHERE species.class_id = s.class_id
""")


__all__ = ["IngestReport", "ROLES", "ingest_metadata", "read_metadata_table",
           "OBSERVATION_COLUMNS"]

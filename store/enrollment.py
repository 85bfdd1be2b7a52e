"""Enrolled species: expert labels for stored observations, recorded and undoable.

An *enrollment* is one labels file (observation id -> species name, optional genus,
family and ``poisonous`` yes/no) applied to observations already in the store (scored
``new`` batches, ``val`` or ``test`` observations). It never changes the
``observations`` or ``species`` tables: the official DF20 list stays exactly the
official list, and the labels live beside it in three tables:

- ``enrollments``: one row per labels file applied (who, when, the file's name and
  SHA-256 digest, counts), and when and by whom it was undone;
- ``enrolled_species``: species the official list does not name, with class ids from
  ``NUM_CLASSES`` (1,604) up, never reused;
- ``enrolled_observations``: each labelled observation of each enrollment, its class
  id, the name as the file spelt it and the file's ``poisonous`` value (NULL: not
  stated).

A name matching a species of the ``species`` table (case and spacing ignored) joins
that class, with its official poison flag; a file whose ``poisonous`` value contradicts
the official list is refused. Otherwise a name matching an earlier enrolled species
joins it, and a new name gets the next free class id.

Undo marks the enrollment undone; what scoring reads (:func:`active_observations`,
:func:`enrolled_species`) is derived from the enrollments not undone only, so undoing
restores exactly the state before it. The poison status of an enrolled species is
derived the same way: poisonous when any active label says yes, edible when some say
no and none says yes, unknown (NULL) when no label states it — and an unknown status
is treated as possibly poisonous by the application.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from .errors import InvalidValueError, StoreError
from .reference import NUM_CLASSES
from .temporary import registered

TABLES = ("enrollments", "enrolled_species", "enrolled_observations")  # store/schema.py

# The labels file's columns, matched case- and underscore-insensitively.
LABEL_COLUMNS = ("observation_id", "species", "genus", "family", "poisonous")
_ALIASES = {"observationid": "observation_id", "species": "species", "genus": "genus",
            "family": "family", "poisonous": "poisonous"}
POISONOUS_VALUES = {"yes": True, "true": True, "1": True, "no": False, "false": False,
                    "0": False, "": None, "unknown": None}


@dataclass
class EnrollmentReport:
    enrollment_id: int
    n_observations: int
    new_species: list[tuple[int, str]] = field(default_factory=list)
    joined: list[tuple[int, str]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # species labelled both yes and no
    observation_ids: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # the application's (vectors missing)

    def lines(self) -> list[str]:
        out = [f"enrollment {self.enrollment_id}: {self.n_observations} observations"]
        if self.new_species:
            out.append(f"  new species {len(self.new_species)}: " + ", ".join(
                f"{n} (class {c})" for c, n in self.new_species[:10])
                + (" ..." if len(self.new_species) > 10 else ""))
        if self.joined:
            out.append(f"  joined known species {len(self.joined)}: " + ", ".join(
                f"{n} (class {c})" for c, n in self.joined[:10])
                + (" ..." if len(self.joined) > 10 else ""))
        for c in self.conflicts:
            out.append(f"  warning: {c}")
        return out


def normalise_name(name: str) -> str:
    """The form names are matched in: words split on whitespace, joined by one space,
    case-folded."""
    return " ".join(str(name).split()).casefold()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


def read_labels(path: str | Path) -> pa.Table:
    """The checked rows of a labels file (CSV or Parquet): ``observation_id`` (int64),
    ``species``, ``genus``, ``family`` (strings, NULL when absent), ``poisonous`` (bool,
    NULL when not stated). An unknown column, a missing required column, an empty or
    repeated observation id, an empty species name or a ``poisonous`` value other than
    yes/no/true/false/1/0/unknown/empty raise :class:`InvalidValueError` naming the row."""
    from .ingest import read_metadata_table

    path = Path(path)
    if not path.is_file():
        raise StoreError(f"labels file {str(path)!r} does not exist; pass a CSV with columns "
                         "observation_id,species[,genus,family,poisonous]")
    try:
        table = read_metadata_table(path)
    except StoreError as exc:
        raise StoreError(str(exc).replace("metadata file", "labels file")) from None
    found: dict[str, str] = {}
    for name in table.column_names:
        key = _ALIASES.get(name.replace("_", "").replace(" ", "").lower())
        if key is None:
            raise InvalidValueError(
                f"labels file {str(path)!r} has column {name!r}, which a labels file does not "
                f"take; its columns are {', '.join(LABEL_COLUMNS)} (observation_id and species "
                "required)")
        if key in found:
            raise InvalidValueError(f"labels file {str(path)!r} has both {found[key]!r} and "
                                    f"{name!r} for {key}; keep one")
        found[key] = name
    for need in ("observation_id", "species"):
        if need not in found:
            raise InvalidValueError(f"labels file {str(path)!r} has no {need} column; its "
                                    f"columns are {', '.join(LABEL_COLUMNS)}")

    def text(key: str) -> list[str | None]:
        if key not in found:
            return [None] * table.num_rows
        values = table.column(found[key]).cast(pa.string()).to_pylist()
        return [None if v is None or not v.strip() else " ".join(v.split()) for v in values]

    ids, seen = [], {}
    for row, v in enumerate(text("observation_id"), start=2):
        try:
            oid = int(v) if v is not None else None
        except ValueError:
            oid = None
        if oid is None or not -(2**63) <= oid < 2**63:
            raise InvalidValueError(f"labels file {str(path)!r} row {row}: observation_id "
                                    f"{v!r} is not an integer; give the stored observation's id")
        if oid in seen:
            raise InvalidValueError(f"labels file {str(path)!r} rows {seen[oid]} and {row} both "
                                    f"label observation {oid}; keep one row per observation")
        seen[oid] = row
        ids.append(oid)
    species = text("species")
    for row, s in enumerate(species, start=2):
        if s is None:
            raise InvalidValueError(f"labels file {str(path)!r} row {row}: species is empty; "
                                    "name the species (e.g. Amanita phalloides)")
    poisonous = []
    raw = (table.column(found["poisonous"]).cast(pa.string()).to_pylist()
           if "poisonous" in found else [""] * table.num_rows)
    for row, v in enumerate(raw, start=2):
        key = (v or "").strip().lower()
        if key not in POISONOUS_VALUES:
            raise InvalidValueError(f"labels file {str(path)!r} row {row}: poisonous {v!r} is "
                                    "not yes, no, true, false, 1, 0, unknown or empty")
        poisonous.append(POISONOUS_VALUES[key])
    if not ids:
        raise InvalidValueError(f"labels file {str(path)!r} has no rows; add one row per "
                                "observation: observation_id,species")
    return pa.table({"observation_id": pa.array(ids, pa.int64()),
                     "species": pa.array(species, pa.string()),
                     "genus": pa.array(text("genus"), pa.string()),
                     "family": pa.array(text("family"), pa.string()),
                     "poisonous": pa.array(poisonous, pa.bool_())})


def tables_exist(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store has the enrollment tables (stores made before them get them
    when first opened for writing)."""
    n = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = "
                    "current_database() AND table_name IN (SELECT unnest(?::VARCHAR[]))",
                    [list(TABLES)]).fetchall()[0][0]
    return n == len(TABLES)


def _official_names(con) -> dict[str, list[tuple[int, str | None, str | None, bool]]]:
    out: dict[str, list] = {}
    for cid, name, genus, family, poisonous in con.execute(
            "SELECT class_id, species, genus, family, poisonous FROM species "
            "WHERE species IS NOT NULL ORDER BY class_id").fetchall():
        out.setdefault(normalise_name(name), []).append((cid, genus, family, poisonous))
    return out


def enroll(con: duckdb.DuckDBPyConnection, labels: pa.Table, labels_file: str, digest: str,
           enrolled_by: str) -> EnrollmentReport:
    """Record one enrollment of checked ``labels`` (:func:`read_labels`); see the module
    docstring. Refuses, naming the observation and the fix: an id the store does not
    hold, a training observation, an observation labelled with another species than
    its stored class, an observation already enrolled (undo that enrollment first), a
    genus/family that contradicts the stored one and a ``poisonous`` value that
    contradicts the official list."""
    ids = labels.column("observation_id").to_pylist()
    with registered(con, "_enroll_ids", pa.table({"id": pa.array(ids, pa.int64())})):
        stored = dict((r[0], (r[1], r[2])) for r in con.execute(
            "SELECT o.observation_id, o.role, o.class_id FROM observations o "
            "JOIN _enroll_ids w ON w.id = o.observation_id").fetchall())
        enrolled = dict(con.execute(
            "SELECT e.observation_id, e.enrollment_id FROM enrolled_observations e "
            "JOIN enrollments r USING (enrollment_id) JOIN _enroll_ids w ON w.id = "
            "e.observation_id WHERE r.undone_at IS NULL").fetchall())
    missing = [i for i in ids if i not in stored]
    if missing:
        raise InvalidValueError(
            f"{len(missing)} observation(s) of {labels_file!r} are not in the store (e.g. "
            f"{missing[:5]}); enroll observations already stored (score their batch with "
            "`sporeprint score` first)")
    train = [i for i in ids if stored[i][0] == "train"]
    if train:
        raise InvalidValueError(
            f"observation(s) {train[:5]} of {labels_file!r} are training observations, "
            "labelled by the training data; enroll observations of other roles (new, val, test)")
    again = [(i, enrolled[i]) for i in ids if i in enrolled]
    if again:
        i, e = again[0]
        raise InvalidValueError(
            f"observation {i} is already enrolled (enrollment {e}); undo that enrollment "
            f"first (`sporeprint enroll --undo {e}`) or leave the observation out")

    official = _official_names(con)
    known = {normalise_name(name): (cid, genus, family) for cid, name, genus, family in
             con.execute("SELECT class_id, species, genus, family FROM enrolled_species "
                         "ORDER BY class_id").fetchall()}
    next_id = max(NUM_CLASSES - 1, con.execute(
        "SELECT coalesce(max(class_id), -1) FROM enrolled_species").fetchall()[0][0]) + 1
    enrollment_id = con.execute("SELECT coalesce(max(enrollment_id), 0) + 1 FROM "
                                "enrollments").fetchall()[0][0]
    report = EnrollmentReport(enrollment_id, len(ids), observation_ids=list(ids))
    new_rows: list[tuple] = []
    classes: list[int] = []
    stated: dict[int, set] = {}
    rows = labels.to_pylist()
    for r in rows:
        key = normalise_name(r["species"])
        genus = r["genus"] or r["species"].split()[0]
        if key in official:
            matches = official[key]
            if len(matches) > 1:
                raise InvalidValueError(
                    f"species {r['species']!r} is held under several class ids "
                    f"{[m[0] for m in matches]} of the species table; give the observation "
                    "a name that names one")
            cid, s_genus, s_family, poisonous = matches[0]
            if r["poisonous"] is not None and r["poisonous"] != poisonous:
                raise InvalidValueError(
                    f"observation {r['observation_id']}: poisonous "
                    f"{'yes' if r['poisonous'] else 'no'} for {r['species']!r} contradicts the "
                    f"official poisonous list (class {cid} is "
                    f"{'poisonous' if poisonous else 'edible'}), which governs; leave the "
                    "poisonous value empty for that species")
            _check_taxon(r, "genus", s_genus if r["genus"] else None)
            _check_taxon(r, "family", s_family)
            if cid not in [c for c, _ in report.joined]:
                report.joined.append((cid, r["species"]))
        elif key in known:
            cid, s_genus, s_family = known[key]
            _check_taxon(r, "genus", s_genus if r["genus"] else None)
            _check_taxon(r, "family", s_family)
            if cid not in [c for c, _ in report.joined + report.new_species]:
                report.joined.append((cid, r["species"]))
        else:
            cid = next_id
            next_id += 1
            known[key] = (cid, genus, r["family"])
            new_rows.append((cid, r["species"], genus, r["family"], enrollment_id))
            report.new_species.append((cid, r["species"]))
        own = stored[r["observation_id"]][1]
        if own is not None and own >= 0 and own != cid:
            raise InvalidValueError(
                f"observation {r['observation_id']} is stored as class {own}, not "
                f"{r['species']!r} (class {cid}); fix the labels file or leave it out")
        classes.append(cid)
        if r["poisonous"] is not None:
            stated.setdefault(cid, set()).add(r["poisonous"])
    for cid, values in stated.items():
        if len(values) > 1:
            report.conflicts.append(f"class {cid} is labelled both poisonous and edible; it "
                                    "counts as poisonous")
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc).replace(tzinfo=None)
    con.execute("INSERT INTO enrollments VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                [enrollment_id, enrolled_by, now, labels_file, digest, len(ids),
                 len(new_rows)])
    if new_rows:
        con.executemany("INSERT INTO enrolled_species VALUES (?, ?, ?, ?, ?)", new_rows)
    obs = pa.table({"enrollment_id": pa.array([enrollment_id] * len(ids), pa.int32()),
                    "observation_id": labels.column("observation_id"),
                    "class_id": pa.array(classes, pa.int32()),
                    "species": labels.column("species"),
                    "poisonous": labels.column("poisonous")})
    with registered(con, "_enroll_rows", obs):
        con.execute("INSERT INTO enrolled_observations SELECT * FROM _enroll_rows")
    return report


def _check_taxon(row: dict, key: str, stored: str | None) -> None:
    given = row[key]
    if given and stored and normalise_name(given) != normalise_name(stored):
        raise InvalidValueError(
            f"observation {row['observation_id']}: {key} {given!r} for {row['species']!r} "
            f"contradicts the stored {key} {stored!r}; leave it empty or fix it")


def undo(con: duckdb.DuckDBPyConnection, enrollment_id: int, undone_by: str) -> dict:
    """Mark one enrollment undone; its labels stop counting, its record stays."""
    row = con.execute("SELECT enrollment_id, undone_at, n_observations FROM enrollments "
                      "WHERE enrollment_id = ?", [int(enrollment_id)]).fetchall()
    if not row:
        ids = [r[0] for r in con.execute("SELECT enrollment_id FROM enrollments ORDER BY 1")
               .fetchall()]
        raise InvalidValueError(f"there is no enrollment {enrollment_id}; the store's "
                                f"enrollments are {ids or 'none'} (`sporeprint enroll --list`)")
    if row[0][1] is not None:
        raise InvalidValueError(f"enrollment {enrollment_id} was already undone at "
                                f"{row[0][1]:%Y-%m-%d %H:%M:%S}")
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc).replace(tzinfo=None)
    con.execute("UPDATE enrollments SET undone_by = ?, undone_at = ? WHERE enrollment_id = ?",
                [undone_by, now, int(enrollment_id)])
    return {"enrollment_id": int(enrollment_id), "n_observations": int(row[0][2])}


def list_enrollments(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Every enrollment, oldest first, with its record and whether it is undone."""
    if not tables_exist(con):
        return pa.table({c: pa.array([], pa.string()) for c in (
            "enrollment_id", "enrolled_by", "enrolled_at", "labels_file", "labels_digest",
            "n_observations", "n_new_species", "undone_by", "undone_at")})
    return con.sql("SELECT * FROM enrollments ORDER BY enrollment_id").to_arrow_table()


def active_observations(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """``observation_id, class_id`` of every observation of the enrollments not undone,
    by observation id."""
    if not tables_exist(con):
        return pa.table({"observation_id": pa.array([], pa.int64()),
                         "class_id": pa.array([], pa.int32())})
    return con.sql("SELECT e.observation_id, e.class_id FROM enrolled_observations e "
                   "JOIN enrollments r USING (enrollment_id) WHERE r.undone_at IS NULL "
                   "ORDER BY 1").to_arrow_table()


def enrolled_species(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """The classes with at least one active enrolled observation: ``class_id, species,
    genus, family, poisonous`` (NULL = unknown: no label states it; a class of the
    official list has its official flag), ``official`` (a class of the species table),
    ``n_observations``; by class id."""
    if not tables_exist(con):
        return pa.table({"class_id": pa.array([], pa.int32()),
                         "species": pa.array([], pa.string()),
                         "genus": pa.array([], pa.string()),
                         "family": pa.array([], pa.string()),
                         "poisonous": pa.array([], pa.bool_()),
                         "official": pa.array([], pa.bool_()),
                         "n_observations": pa.array([], pa.int64())})
    return con.sql("""
        WITH active AS (
            SELECT e.* FROM enrolled_observations e JOIN enrollments r USING (enrollment_id)
            WHERE r.undone_at IS NULL),
        per AS (
            SELECT class_id, count(*) AS n_observations,
                   bool_or(poisonous) AS any_yes, bool_or(NOT poisonous) AS any_no
            FROM active GROUP BY class_id)
        SELECT per.class_id,
               coalesce(s.species, es.species) AS species,
               coalesce(s.genus, es.genus) AS genus,
               coalesce(s.family, es.family) AS family,
               CASE WHEN s.class_id IS NOT NULL THEN s.poisonous
                    WHEN per.any_yes THEN TRUE
                    WHEN per.any_no THEN FALSE
                    ELSE NULL END AS poisonous,
               s.class_id IS NOT NULL AS official,
               per.n_observations
        FROM per LEFT JOIN species s USING (class_id)
        LEFT JOIN enrolled_species es USING (class_id)
        ORDER BY per.class_id""").to_arrow_table()


def class_ids_array(table: pa.Table) -> np.ndarray:
    return table.column("class_id").to_numpy(zero_copy_only=False).astype(np.int64)

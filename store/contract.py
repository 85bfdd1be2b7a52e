"""The metadata contract: the columns observation metadata may have and the rules its
values follow, the same wherever metadata enters (``ingest``, ``score``,
``model.predict``, the HTTP API).

Column names are matched without regard to case and underscores, so DF20's
``observationID``, FungiCLEF 2024's ``observation_id`` and DF20-Mini's ``gbifID`` all
name the observation id, and ``Habitat``/``habitat``, ``MetaSubstrate``/
``meta_substrate`` name one field each. A column that is none of these (nor one of
the known DF20 columns the store does not keep, ``IGNORED_COLUMNS``) is an error,
never silently dropped; so is a second column for the same field.

Values: whole numbers for ids, year, month (1..12) and day (1..31); latitude
(-90..90) and longitude (-180..180) given together or not at all; ``class_id`` -1
or 0..1603; ``poisonous`` 0/1; ``eventDate`` a date (it fills month and day when
those are missing). Blank, ``nan``, ``NA``, ``null`` and ``none`` are missing
values. An absolute ``image_path`` (a publisher's machine's path) is reduced to its
file name, the DF20 key. The rules are one SQL staging query (:func:`stage_sql`),
run by ingestion over a whole file and by :func:`check_metadata` over rows given in
Python; a file's bad row is rejected with the reason, a Python row raises
:class:`MetadataError` with the same reason.

>>> resolve_columns(["gbifID", "Habitat", "month"])
{'observation_id': 'gbifID', 'habitat': 'Habitat', 'month': 'month'}
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable

import pyarrow as pa

from .errors import InvalidValueError
from .reference import substrate_groups
from .schema import IMAGE_FIELDS, OBSERVATION_FIELDS, q
from .validation import FINITE, RANGES, class_id_reason, range_reason

# Canonical field -> the spellings metadata files use (DF20 first). Matching ignores
# case and underscores, so only spellings that differ otherwise are listed.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "observation_id": ("observationID", "gbifID"),
    "class_id": ("class_id",),
    "year": ("year",),
    "month": ("month",),
    "day": ("day",),
    "event_date": ("eventDate", "date"),
    "country_code": ("countryCode",),
    "locality": ("locality",),
    "latitude": ("Latitude", "lat"),
    "longitude": ("Longitude", "lon", "lng"),
    "coord_uncert": ("CoorUncert", "coordinateUncertaintyInMeters"),
    "substrate": ("Substrate",),
    "meta_substrate": ("MetaSubstrate",),
    "habitat": ("Habitat",),
    "level0_gid": ("level0Gid",),
    "level0_name": ("level0Name",),
    "level1_gid": ("level1Gid",),
    "level1_name": ("level1Name",),
    "level2_gid": ("level2Gid",),
    "level2_name": ("level2Name",),
    "taxon_id": ("taxonID",),
    "scientific_name": ("scientificName",),
    "species": ("species",),
    "genus": ("genus",),
    "family": ("family",),
    "order": ("order",),
    "class": ("class",),
    "phylum": ("phylum",),
    "kingdom": ("kingdom",),
    "specific_epithet": ("specificEpithet",),
    "taxon_rank": ("taxonRank",),
    "image_path": ("image_path", "filename"),
    "image_unique_id": ("ImageUniqueID",),
    "rights_holder": ("rightsHolder",),
    "poisonous": ("poisonous",),  # checked against the official list, never stored
}
# Known DF20 / DF21 / FungiCLEF columns the store does not keep (accepted, not read).
IGNORED_COLUMNS = ("identifiedBy", "infraspecificEpithet", "image_url", "genus_id",
                   "family_id", "elevation", "landcover", "biogeographicalRegion",
                   "Habitat_as_displayed")
REQUIRED_FOR_INGEST = ("observation_id", "image_path")
NULL_TOKENS = ("", "nan", "na", "n/a", "null", "none")
INTEGERS = ("year", "month", "day")  # besides the ids
NAME_FIELDS = ("species", "scientific_name")  # what names a row's species


class MetadataError(InvalidValueError):
    """Observation metadata breaks the contract: an unknown column or an invalid value.
    The message names the column, the value and the fix."""


def normalise_name(name: str) -> str:
    """The matching key of a column name: lower case, no underscores, dashes or spaces."""
    return re.sub(r"[_\-\s]", "", str(name)).lower()


_LOOKUP = {normalise_name(spelling): canon for canon, spellings in COLUMN_ALIASES.items()
           for spelling in (canon, *spellings)}
_IGNORED = {normalise_name(n) for n in IGNORED_COLUMNS}
_GBIF = normalise_name("gbifID")
_INTERNAL = ("_row", "_empty")  # columns this module adds to a table it checks


def resolve_columns(names: Iterable[str], what: str = "metadata") -> dict[str, str]:
    """``{canonical field: column name}`` for the given column names; a
    :class:`MetadataError` for an unknown column or two columns of one field.
    ``gbifID`` names the observation only when no ``observationID`` column does."""
    found: dict[str, str] = {}
    unknown = []
    for name in names:
        if name in _INTERNAL:
            continue
        key = normalise_name(name)
        canon = _LOOKUP.get(key)
        if canon is None:
            if key not in _IGNORED:
                unknown.append(name)
            continue
        if canon in found:
            if canon == "observation_id" and _GBIF in (key, normalise_name(found[canon])):
                if key != _GBIF:
                    found[canon] = name
                continue
            raise MetadataError(f"{what} has two columns for {canon}: {found[canon]!r} and "
                                f"{name!r}; keep one of them")
        found[canon] = name
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(normalise_name(name), list(_LOOKUP), n=1, cutoff=0.75)
        hint = f"did you mean {_LOOKUP[close[0]]!r}? " if close else ""
        more = f" (and {len(unknown) - 1} more: {', '.join(map(repr, unknown[1:4]))})" \
            if len(unknown) > 1 else ""
        raise MetadataError(
            f"{what} has an unknown column {name!r}{more}; {hint}use the DF20/FungiCLEF names "
            "(observationID, month, day, Latitude, Longitude, Substrate, MetaSubstrate, "
            "Habitat, ...; docs/store.md lists them all) or drop the column")
    return found


# -- the rules, as one SQL staging query ---------------------------------------------------
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


def _date(raw: str) -> str:
    return f"TRY_CAST(left({raw}, 10) AS DATE)"


def _flag(raw: str) -> str:
    return (f"CASE WHEN lower({raw}) IN ('1', '1.0', 'true', 'yes') THEN true "
            f"WHEN lower({raw}) IN ('0', '0.0', 'false', 'no') THEN false END")


def _image_key(raw: str) -> str:
    """An absolute path (``/Datasets/DF20/x.jpg``, ``C:\\data\\x.jpg``) -> its file name."""
    return (f"CASE WHEN {raw} LIKE '/%' OR regexp_matches({raw}, '^[A-Za-z]:[\\\\/]') "
            f"THEN regexp_extract({raw}, '[^/\\\\]+$') ELSE {raw} END")


def image_key(path: str) -> str:
    """The store's key of an image path: an absolute path reduced to its file name (the
    same rule as :func:`stage_sql`)."""
    if path.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", path):
        return re.split(r"[/\\]", path)[-1]
    return path


def stage_sql(found: dict[str, str], required: tuple[str, ...] = REQUIRED_FOR_INGEST) -> str:
    """SELECT over the view ``_src`` (the source columns, plus ``_row``) giving ``_row``,
    ``raw`` (the row as JSON), ``reason`` ('' when the row is valid), the typed store
    fields and ``file_poisonous``. Needs the views ``_substrate_groups`` (substrate ->
    meta) and the parameter ``$role``."""
    raw = {c: (_norm(f"CAST({q(found[c])} AS VARCHAR)") if c in found else "NULL::VARCHAR")
           for c in COLUMN_ALIASES}
    raw_cols = ", ".join(f"{expr} AS {q('r_' + c)}" for c, expr in raw.items())
    raw_json = ", ".join(f"{q(src)} := {q(src)}" for src in found.values()) or "none := NULL"
    inner = f"SELECT _row, to_json(struct_pack({raw_json})) AS raw, {raw_cols} FROM _src"

    def from_date(c: str) -> str:
        return f"coalesce({_int('r_' + c)}, {c}(({_date('r_event_date')})))"

    typed = []
    for c in ["observation_id", *OBSERVATION_FIELDS, *IMAGE_FIELDS]:
        if c == "role":
            typed.append("CAST($role AS VARCHAR) AS role")
        elif c in ("year", "month", "day"):  # TRY_: past INTEGER, the range reason rejects it
            typed.append(f"TRY_CAST({from_date(c)} AS INTEGER) AS {q(c)}")
        elif c in ("observation_id", "class_id"):
            typed.append(f"TRY_CAST({_int(q('r_' + c))} AS "
                         f"{'BIGINT' if c == 'observation_id' else 'INTEGER'}) AS {q(c)}")
        elif c in FINITE:
            typed.append(f"{_dbl(q('r_' + c))} AS {q(c)}")
        elif c == "meta_substrate":
            typed.append("COALESCE(r_meta_substrate, (SELECT g.meta FROM _substrate_groups g "
                         "WHERE g.substrate = r_substrate)) AS meta_substrate")
        elif c == "image_path":
            typed.append(f"{_image_key('r_image_path')} AS image_path")
        else:
            typed.append(f"{q('r_' + c)} AS {q(c)}")
    typed.append(f"{_flag('r_poisonous')} AS file_poisonous")
    typed.append("(r_image_path IS DISTINCT FROM "
                 f"{_image_key('r_image_path')}) AS image_path_reduced")

    def bad(c: str, kind: str) -> str:
        fn = _int if kind == "int" else _dbl
        want = "a whole number" if kind == "int" else "a number"
        return (f"CASE WHEN r_{c} IS NOT NULL AND ({fn('r_' + c)}) IS NULL "
                f"THEN 'unparseable {c} ''' || r_{c} || ''': give {want} or leave it empty' END")

    def out(c: str) -> str:  # the ranges import checks too (store/validation.py)
        lo, hi = RANGES[c]
        value = f"({(_int if c in INTEGERS else _dbl)('r_' + c)})"
        return (f"({range_reason(c, value, 'r_' + c)}) || ': give a value in {lo}..{hi} "
                "or leave it empty'")

    def missing(c: str, label: str) -> str:
        return (f"CASE WHEN r_{c} IS NULL THEN 'missing {label}: every row needs its "
                f"{label}' END") if c in required else "NULL"

    cid = _int("r_class_id")
    reasons = [
        missing("observation_id", "observation id"),
        bad("observation_id", "int"),
        missing("image_path", "image_path"),
        bad("class_id", "int"),
        (f"({class_id_reason(f'({cid})', 'r_class_id')}) || ': give a DF20 class id, or -1 "
         "for a species outside DF20'"),
        *(x for c in INTEGERS for x in (bad(c, "int"), out(c) if c in RANGES else "NULL")),
        *(x for c in FINITE for x in (bad(c, "dbl"), out(c) if c in RANGES else "NULL")),
        ("CASE WHEN (r_latitude IS NULL) <> (r_longitude IS NULL) THEN "
         "(CASE WHEN r_latitude IS NULL THEN 'longitude ' || r_longitude || ' given without a "
         "latitude' ELSE 'latitude ' || r_latitude || ' given without a longitude' END) "
         "|| ': give both latitude and longitude or neither' END"),
        (f"CASE WHEN r_event_date IS NOT NULL AND ({_date('r_event_date')}) IS NULL THEN "
         "'unparseable eventDate ''' || r_event_date || ''': give a date YYYY-MM-DD or leave "
         "it empty' END"),
        (f"CASE WHEN r_poisonous IS NOT NULL AND ({_flag('r_poisonous')}) IS NULL THEN "
         "'unparseable poisonous ''' || r_poisonous || ''': give 0 or 1 or leave it empty' END"),
    ]
    return (f"SELECT _row, raw, concat_ws('; ', {', '.join(reasons)}) AS reason, "
            f"{', '.join(typed)} FROM ({inner})")


def substrate_groups_table() -> pa.Table:
    groups = substrate_groups()
    return pa.table({"substrate": pa.array(list(groups), pa.string()),
                     "meta": pa.array(list(groups.values()), pa.string())})


# -- rows given in Python ------------------------------------------------------------------
def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def as_text_table(metadata, what: str = "metadata") -> pa.Table:
    """Rows as given (a ``pyarrow.Table``, a pandas DataFrame, a list of dicts or one
    dict) -> an Arrow table of strings, column names as given."""
    if isinstance(metadata, pa.Table):
        cols = {}
        for name in metadata.column_names:
            try:
                cols[name] = metadata[name].cast(pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise MetadataError(f"{what} column {name!r} has type {metadata[name].type}, "
                                    "which is not a metadata value; pass numbers or text"
                                    ) from None
        return pa.table(cols) if cols else pa.table({"_empty": pa.nulls(metadata.num_rows)})
    if hasattr(metadata, "to_dict") and hasattr(metadata, "columns"):  # pandas
        metadata = metadata.to_dict("records")
    if isinstance(metadata, dict):
        metadata = [metadata]
    try:
        rows = list(metadata)
    except TypeError:
        raise MetadataError(f"{what} is a {type(metadata).__name__}; pass a list of dicts, a "
                            "pandas DataFrame or a pyarrow Table, one row per image") from None
    names: dict[str, None] = {}
    for k, row in enumerate(rows):
        if not isinstance(row, dict):
            raise MetadataError(f"{what}[{k}] is a {type(row).__name__}, not a dict of "
                                "metadata fields (e.g. {'habitat': 'Deciduous woodland'})")
        names.update(dict.fromkeys(map(str, row)))
    if not names:
        return pa.table({"_empty": pa.nulls(len(rows))})
    return pa.table({n: pa.array([_text(r.get(n)) for r in rows], pa.string()) for n in names})


def check_metadata(metadata, n: int | None = None, what: str = "metadata",
                   role: str = "new") -> tuple[pa.Table, dict[str, str]]:
    """Check rows given in Python by the same rules as ingestion.

    Returns ``(typed, found)``: the typed store fields per row (``observation_id``,
    month, day, latitude, ...) and ``{field: column name}`` of the columns given.
    Raises :class:`MetadataError` naming the first bad row, column, value and fix.
    """
    import duckdb

    from .temporary import registered

    table = as_text_table(metadata, what)
    if n is not None and table.num_rows != n:
        raise MetadataError(f"{what} has {table.num_rows} rows for {n} vectors; pass one row "
                            "per vector")
    found = resolve_columns(table.column_names, what)
    table = table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
    with duckdb.connect(":memory:") as con, registered(con, "_src", table), \
            registered(con, "_substrate_groups", substrate_groups_table()):
        typed = con.sql(stage_sql(found, required=()), params={"role": role}).to_arrow_table()
    reasons = typed.column("reason").to_pylist()
    bad = [k for k, r in enumerate(reasons) if r]
    if "observation_id" in found:
        bad += [k for k, v in enumerate(typed.column("observation_id").to_pylist())
                if v is None and not reasons[k]]
    if bad:
        k = min(bad)
        reason = reasons[k] or (f"missing observation id in column {found['observation_id']!r}: "
                                "give every row its observation's id, or drop the column")
        where = what if table.num_rows == 1 else f"{what}[{k}]"
        more = f" (and {len(set(bad)) - 1} more rows)" if len(set(bad)) > 1 else ""
        raise MetadataError(f"{where}: {reason}{more}")
    return typed, found


__all__ = ["COLUMN_ALIASES", "IGNORED_COLUMNS", "MetadataError", "as_text_table",
           "check_metadata", "image_key", "normalise_name", "resolve_columns", "stage_sql"]

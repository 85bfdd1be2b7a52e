"""The rules a value must follow to enter the store, in one place for ingest and import.

Ingest (``store/ingest.py``) applies the observation rules to the typed values of a
metadata file row by row, and rejects the rows that break one; import
(``store/interchange.py``) applies the same rules, and the ones below for every other
table, to the staged rows of a Parquet file, and refuses the whole file on the first
row that breaks one. Each rule is a SQL ``CASE`` expression that is NULL for a good
row and says what is wrong otherwise, so both run over a whole table at DuckDB speed.
Vectors follow ``spaces.check_vectors``; the species table follows the official DF20
poisonous list (``reference.poison_status``), by class id.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import duckdb
import pyarrow as pa

from .errors import StoreError
from .reference import NUM_CLASSES, poison_status
from .schema import q
from .spaces import EmbeddingSpace
from .temporary import registered
from .vocabulary import PARTS, ROLES

# Inclusive ranges of observation fields.
RANGES = {"month": (1, 12), "day": (1, 31), "latitude": (-90, 90), "longitude": (-180, 180)}
# Observation fields that hold real numbers: NaN and inf are not values.
FINITE = ("latitude", "longitude", "coord_uncert")
META_KEYS = ("schema_version", "store_id", "split_seed")
# Columns the store fills itself (an import may lack them; they never make a conflict).
AUTO_COLUMNS = ("ingested_at", "created_at", "recorded_at", "split_seed", "relative_path")
STAGE = "_stage_"  # prefix of the TEMP tables an import checks its rows in
# Columns of probabilities in predictions.
PROBABILITIES = ("poison_prob", "unknown_prob", "best_edible_prob", "best_poisonous_prob")


def class_id_reason(value: str, shown: str) -> str:
    """SQL: why the class id ``value`` (shown as the text ``shown``) is not -1 or a DF20
    class, or NULL."""
    return (f"CASE WHEN {value} <> -1 AND NOT ({value} BETWEEN 0 AND {NUM_CLASSES - 1}) "
            f"THEN 'unknown class id ' || {shown} || ' (expected -1 or 0..{NUM_CLASSES - 1})' "
            "END")


def range_reason(column: str, value: str, shown: str) -> str:
    """SQL: why ``value`` of an observation field is outside its range, or NULL."""
    lo, hi = RANGES[column]
    return (f"CASE WHEN {value} < {lo} OR {value} > {hi} "
            f"THEN '{column} ' || {shown} || ' outside {lo}..{hi}' END")


def finite_reason(column: str, value: str) -> str:
    return (f"CASE WHEN NOT isfinite({value}) THEN '{column} ' || CAST({value} AS VARCHAR) "
            "|| ' is not a finite number' END")


def observation_reasons(value: Callable[[str], str], shown: Callable[[str], str]) -> list[str]:
    """The rules of typed observation values: ``value(column)`` is the SQL of the typed
    value, ``shown(column)`` the text a reason quotes. Ingest interleaves them with its
    parse checks (``value_reason``); import uses them all."""
    return [value_reason(c, value, shown) for c in ("class_id", *RANGES)]


def value_reason(column: str, value: Callable[[str], str], shown: Callable[[str], str]) -> str:
    if column == "class_id":
        return class_id_reason(value(column), shown(column))
    return range_reason(column, value(column), shown(column))


def first_violation(con: duckdb.DuckDBPyConnection, source: str, reasons: list[str],
                    where: str = "true") -> str | None:
    """The first non-NULL reason over the rows of ``source`` (a table name or subquery)."""
    if not reasons:
        return None
    sql = (f"SELECT r FROM (SELECT coalesce({', '.join(reasons)}) AS r FROM {source} "
           f"WHERE {where}) WHERE r IS NOT NULL LIMIT 1")
    rows = con.execute(sql).fetchall()
    return rows[0][0] if rows else None


# -- the official poisonous list -------------------------------------------------------

def _official() -> pa.Table:
    status = poison_status()
    return pa.table({"class_id": pa.array(list(status), pa.int32()),
                     "official": pa.array(list(status.values()), pa.bool_())})


def poison_list_problem(con: duckdb.DuckDBPyConnection, table: str = "species") -> str | None:
    """What is wrong with ``table`` (``class_id``, ``poisonous``) as the official DF20
    list, in words, or None when it holds exactly the official classes and flags."""
    with registered(con, "_official", _official()):
        rows = con.execute(
            f"SELECT coalesce(s.class_id, o.class_id) AS c, s.class_id IS NULL AS absent, "
            f"o.class_id IS NULL AS extra, o.official FROM {q(table)} s FULL JOIN _official o "
            "USING (class_id) WHERE s.poisonous IS DISTINCT FROM o.official ORDER BY 1"
            ).fetchall()
        repeated = con.execute(f"SELECT class_id FROM {q(table)} GROUP BY 1 "
                               "HAVING count(*) > 1 ORDER BY 1 LIMIT 5").fetchall()
    if repeated:
        return f"holds class ids {[r[0] for r in repeated]} more than once"
    if not rows:
        return None
    lost = [c for c, absent, _, official in rows if absent and official]
    missing = [c for c, absent, _, _ in rows if absent]
    extra = [c for c, _, extra, _ in rows if extra]
    flipped = [c for c, absent, extra, _ in rows if not absent and not extra]
    parts = []
    if lost:
        parts.append(f"lacks {len(lost)} of the {sum(poison_status().values())} official "
                     f"poisonous species (class ids {_few(lost)})")
    if missing and len(missing) > len(lost):
        parts.append(f"lacks {len(missing)} official classes in all (class ids {_few(missing)})")
    if extra:
        parts.append(f"holds class ids {_few(extra)} that are not DF20 classes "
                     f"(0..{NUM_CLASSES - 1})")
    if flipped:
        parts.append(f"disagrees with the official poisonous list for class ids {_few(flipped)}")
    return "; ".join(parts)


def restore_official_species(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Make ``species`` the official list again (names kept); returns the class ids changed."""
    with registered(con, "_official", _official()):
        changed = [r[0] for r in con.execute(
            "SELECT coalesce(s.class_id, o.class_id) FROM species s FULL JOIN _official o "
            "USING (class_id) WHERE s.poisonous IS DISTINCT FROM o.official ORDER BY 1"
            ).fetchall()]
        con.execute("DELETE FROM species WHERE class_id NOT IN (SELECT class_id FROM _official)")
        con.execute("UPDATE species SET poisonous = o.official FROM _official o "
                    "WHERE species.class_id = o.class_id AND species.poisonous <> o.official")
        con.execute("INSERT INTO species (class_id, poisonous) SELECT class_id, official "
                    "FROM _official WHERE class_id NOT IN (SELECT class_id FROM species)")
    return changed


def _few(ids: list) -> str:
    return f"{ids[:10]}{' ...' if len(ids) > 10 else ''}"


def require_official_species(con: duckdb.DuckDBPyConnection, where: str, fix: str,
                             table: str = "species") -> None:
    problem = poison_list_problem(con, table)
    if problem:
        raise StoreError(f"{where} {problem}; the official DF20 poisonous list governs. {fix}")


# -- the rows of an import, staged in TEMP tables --------------------------------------

# child column -> (parent table, parent column): every value must be a stored or
# imported row of the parent
REFERENCES = {
    "images": [("observation_id", "observations", "observation_id")],
    "embedding_failures": [("image_id", "images", "image_id"),
                           ("space", "embedding_spaces", "space")],
    "features": [("observation_id", "observations", "observation_id"),
                 ("encoder_version", "encoders", "encoder_version")],
    "splits": [("observation_id", "observations", "observation_id")],
}
VECTOR_REFERENCES = [("image_id", "images", "image_id")]  # every emb_<space> table


def keys(con: duckdb.DuckDBPyConnection, table: str) -> list[list[str]]:
    """The column lists of ``table``'s primary key and unique constraints."""
    return [list(cols) for (cols,) in con.execute(
        "SELECT constraint_column_names FROM duckdb_constraints() WHERE database_name = "
        "current_database() AND schema_name = 'main' AND table_name = ? AND constraint_type "
        "IN ('PRIMARY KEY', 'UNIQUE') ORDER BY constraint_index", [table]).fetchall()]


def staged_columns(con: duckdb.DuckDBPyConnection, stage: str) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = 'temp' AND "
        "table_name = ? ORDER BY column_index", [stage]).fetchall()]


def _text(column: str) -> str:
    return f"coalesce(CAST({q(column)} AS VARCHAR), 'NULL')"


def table_rules(table: str) -> list[str]:
    """The value rules of one table's rows (SQL reasons; columns by their store names)."""
    if table == "observations":
        role = ", ".join(f"'{r}'" for r in ROLES)
        return [f"CASE WHEN role IS NULL OR role NOT IN ({role}) THEN 'column role holds ' || "
                f"{_text('role')} || ' (expected one of {', '.join(ROLES)})' END",
                *(finite_reason(c, q(c)) for c in FINITE),
                *observation_reasons(q, lambda c: f"CAST({q(c)} AS VARCHAR)")]
    if table == "splits":
        parts = ", ".join(f"'{p}'" for p in PARTS)
        return [f"CASE WHEN part NOT IN ({parts}) THEN 'column part holds ' || part || "
                f"' (expected one of {', '.join(PARTS)})' END"]
    if table == "runs":
        return ["CASE WHEN fold NOT IN (1, 2) THEN 'column fold holds ' || fold || "
                "' (expected 1, 2 or null)' END"]
    if table == "meta":
        keys_ = ", ".join(f"'{k}'" for k in META_KEYS)
        return [f"CASE WHEN key NOT IN ({keys_}) THEN 'key ' || key || ' is not a store "
                f"setting (expected {', '.join(META_KEYS)})' END",
                "CASE WHEN key = 'split_seed' AND NOT regexp_full_match(coalesce(value, ''), "
                "'[+-]?[0-9]{1,9}') THEN 'split_seed ' || " + _text("value") +
                " || ' is not an integer' END",
                "CASE WHEN key = 'store_id' AND coalesce(trim(value), '') = '' "
                "THEN 'store_id is empty' END"]
    if table == "predictions":
        return [class_id_reason("class_id", "CAST(class_id AS VARCHAR)"),
                *(f"CASE WHEN NOT ({c} BETWEEN 0 AND 1) THEN 'column {c} holds ' || {c} || "
                  "' (expected a probability, 0..1)' END" for c in PROBABILITIES),
                finite_reason("unknown_score", "unknown_score")]
    if table == "features":
        return ["CASE WHEN NOT list_bool_and(list_transform(vector, lambda x: isfinite(x))) "
                "THEN 'observation ' || observation_id || ': column vector holds NaN or inf' "
                "END"]
    return []


def staged_spaces(con: duckdb.DuckDBPyConnection, stage: str, where: str) -> list[EmbeddingSpace]:
    """The embedding spaces of a staged ``embedding_spaces`` table, checked as
    ``EmbeddingSpace`` checks a new space."""
    out = []
    for name, model_id, dim, pooling, dtype, revision, prep, table_name in con.execute(
            "SELECT space, model_id, dim, pooling, dtype, revision, preprocessing, table_name "
            f"FROM {q(stage)} ORDER BY space").fetchall():
        what = f"{where} (table embedding_spaces, space {name!r})"
        try:
            spec = EmbeddingSpace(name, model_id=model_id, dim=dim, pooling=pooling, dtype=dtype,
                                  revision=revision,
                                  preprocessing=json.loads(prep) if prep else {})
        except (ValueError, RecursionError, StoreError) as exc:
            raise StoreError(f"{what}: {str(exc).splitlines()[0] if str(exc) else exc!r}; "
                             "nothing was imported. Export the store again") from None
        if table_name != spec.table_name:
            raise StoreError(f"{what}: column table_name holds {table_name!r}, expected "
                             f"{spec.table_name!r}; nothing was imported. Export the store again")
        out.append(spec)
    return out


def check_staged(con: duckdb.DuckDBPyConnection, stages: dict[str, str], where: str,
                 fix: str, whole: bool = False) -> None:
    """Refuse (StoreError, one line) the first staged row that breaks a rule: keys
    repeated in the file (or, unless ``whole``, stored with other content), JSON that
    is not JSON, the value rules, references to rows that exist nowhere, feature vectors
    of the wrong length, the official poisonous list, and (``whole``) a current split
    seed with no split."""
    for table, stage in stages.items():
        def refuse(reason: str, table: str = table) -> None:
            raise StoreError(f"{where} (table {table}): {reason}; nothing was imported. {fix}")

        cols = staged_columns(con, stage)
        for key in keys(con, table):
            if not all(k in cols for k in key):
                continue
            names = ", ".join(q(k) for k in key)
            rows = con.execute(f"SELECT {names}, count(*) FROM {q(stage)} GROUP BY ALL "
                               "HAVING count(*) > 1 LIMIT 1").fetchall()
            if rows:
                refuse(f"{'/'.join(key)} {_values(rows[0][:-1])} appears in {rows[0][-1]} rows; "
                       "keep one row per key")
            if not whole:
                _refuse_conflicts(con, table, stage, key, cols, refuse)
        json_cols = [r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
            "AND table_name = ? AND data_type = 'JSON'", [table]).fetchall() if r[0] in cols]
        reason = first_violation(con, q(stage), [
            f"CASE WHEN {q(c)} IS NOT NULL AND NOT json_valid({q(c)}) THEN 'column {c} holds '"
            f" || left({q(c)}, 40) || ', which is not JSON' END" for c in json_cols])
        if reason:
            refuse(reason)
        reason = first_violation(con, q(stage), table_rules(table))
        if reason:
            refuse(reason)
        refs = VECTOR_REFERENCES if table.startswith("emb_") else REFERENCES.get(table, [])
        for col, parent, pcol in refs:
            sources = [f"SELECT {q(pcol)} FROM {q(parent)}"]
            if parent in stages:
                sources.append(f"SELECT {q(pcol)} FROM {q(stages[parent])}")
            rows = con.execute(f"SELECT {q(col)} FROM {q(stage)} WHERE {q(col)} NOT IN "
                               f"({' UNION ALL '.join(sources)}) LIMIT 1").fetchall()
            if rows:
                refuse(f"column {col} holds {rows[0][0]!r}, which is not in {parent} "
                       f"(neither stored nor imported); import the {parent} rows first")
        if table == "features":
            enc = [f"SELECT encoder_version, json_array_length(columns) AS n FROM {q(s)}"
                   for s in ["encoders"] + ([stages["encoders"]] if "encoders" in stages else [])]
            rows = con.execute(
                f"SELECT f.observation_id, len(f.vector), e.n, f.encoder_version FROM {q(stage)} "
                f"f JOIN ({' UNION ALL '.join(enc)}) e USING (encoder_version) "
                "WHERE len(f.vector) <> e.n LIMIT 1").fetchall()
            if rows:
                oid, got, n, version = rows[0]
                refuse(f"observation {oid}: column vector has {got} values, but encoder "
                       f"version {version} has {n} columns")
        if table == "species":
            _check_species(con, stage, whole, refuse)
    if whole and "meta" in stages and "splits" in stages:
        seed = con.execute(f"SELECT value FROM {q(stages['meta'])} WHERE key = 'split_seed'"
                           ).fetchall()
        if seed and not con.execute(f"SELECT count(*) FROM {q(stages['splits'])} WHERE seed = ?",
                                    [int(seed[0][0])]).fetchall()[0][0]:
            raise StoreError(f"{where} (table meta): split_seed {seed[0][0]} names no split in "
                             f"splits; nothing was imported. {fix}")


def _values(values) -> str:
    return "/".join(repr(v) for v in values)


def _refuse_conflicts(con: duckdb.DuckDBPyConnection, table: str, stage: str,
                      key: list[str], cols: list[str], refuse) -> None:
    """A staged row whose key is stored must equal the stored row (store-filled columns
    aside): a changed field is a conflict, as in ingest, never silently dropped."""
    compare = [c for c in cols if c not in key and c not in AUTO_COLUMNS]
    if not compare:
        return
    on = " AND ".join(f"s.{q(k)} = t.{q(k)}" for k in key)
    same = " AND ".join(f"s.{q(c)} IS NOT DISTINCT FROM t.{q(c)}" for c in compare)
    diff = ", ".join(f"CASE WHEN s.{q(c)} IS DISTINCT FROM t.{q(c)} THEN '{c}' END"
                     for c in compare)
    rows = con.execute(f"SELECT {', '.join('s.' + q(k) for k in key)}, concat_ws(', ', {diff}) "
                       f"FROM {q(stage)} s JOIN {q(table)} t ON {on} WHERE NOT ({same}) "
                       "LIMIT 1").fetchall()
    if rows:
        refuse(f"{'/'.join(key)} {_values(rows[0][:-1])} is already stored with a different "
               f"{rows[0][-1]}; a stored row is never overwritten")


def _check_species(con: duckdb.DuckDBPyConnection, stage: str, whole: bool, refuse) -> None:
    if whole:
        problem = poison_list_problem(con, stage)
        if problem:
            refuse(f"it {problem}; the official DF20 poisonous list governs")
        return
    with registered(con, "_official", _official()):
        rows = con.execute(f"SELECT s.class_id, s.poisonous, o.official FROM {q(stage)} s LEFT "
                           "JOIN _official o USING (class_id) WHERE s.poisonous IS DISTINCT "
                           "FROM o.official ORDER BY 1 LIMIT 1").fetchall()
    if rows:
        class_id, flag, official = rows[0]
        if official is None:
            refuse(f"class id {class_id} is not a DF20 class (0..{NUM_CLASSES - 1}); the species "
                   "table holds the official list only")
        refuse(f"class id {class_id} has poisonous={flag}, but the official DF20 list says "
               f"{official}")

"""Read-only queries behind ``sporeprint report``: aggregates of the store's tables as Arrow.

Each function takes a DuckDB connection and returns a ``pa.Table`` (or a small Python
value); values are bound as parameters. Aggregates run in DuckDB so that a report of a
large store moves only small tables; vectors are fetched for a sample only.
``ReportQueries`` offers the same functions as methods of a store object that has
``_read(fn, *args)``.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from .errors import StoreError
from .runs import newest_runs_sql
from .schema import OBSERVATION_FIELDS, q

# Fields whose missing-value rate the report shows (labels and taxonomy are left out:
# missing there means "unlabelled", counted separately).
MISSING_FIELDS = ("year", "month", "day", "country_code", "locality", "latitude", "longitude",
                  "coord_uncert", "substrate", "meta_substrate", "habitat", "level0_name",
                  "level1_name", "level2_name")


def _arrow(con: duckdb.DuckDBPyConnection, sql: str, params=None) -> pa.Table:
    return con.sql(sql, params=params).to_arrow_table()


def _require_kind(con: duckdb.DuckDBPyConnection) -> None:
    """A store of schema version 1 opened read-only has no ``predictions.kind`` yet."""
    if not con.execute("SELECT count(*) FROM duckdb_columns() WHERE table_name = 'predictions' "
                       "AND column_name = 'kind' AND database_name = current_database()"
                       ).fetchall()[0][0]:
        raise StoreError("this store was made by an older sporeprint and its predictions have no "
                         "kind column yet; open it once for writing (e.g. `sporeprint sql "
                         "--store STORE --write \"SELECT 1\"`) to upgrade it")


# --------------------------------------------------------------------------- data
def count_observations(con: duckdb.DuckDBPyConnection) -> int:
    """All observations: the plain scan a report's cost is compared with."""
    return int(con.execute("SELECT count(*) FROM observations").fetchall()[0][0])


def role_counts(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """``role, observations, images, labelled`` per role."""
    return _arrow(con, """
SELECT o.role, count(*) AS observations, sum(coalesce(n.images, 0))::BIGINT AS images,
       count(o.class_id) AS labelled
FROM observations o
LEFT JOIN (SELECT observation_id, count(*) AS images FROM images GROUP BY 1) n USING (observation_id)
GROUP BY o.role ORDER BY observations DESC""")


def class_counts(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """``role, class_id, species, genus, poisonous, observations`` of labelled known species."""
    return _arrow(con, """
SELECT o.role, o.class_id, s.species, s.genus, s.poisonous, count(*) AS observations
FROM observations o JOIN species s USING (class_id)
WHERE o.class_id >= 0
GROUP BY ALL ORDER BY o.role, observations DESC, o.class_id""")


def toxicity_counts(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """``role, toxicity, observations``: toxicity is poisonous / edible (a known species not on
    the poisonous list) / unknown species (class -1) / unlabelled."""
    return _arrow(con, """
SELECT o.role,
       CASE WHEN o.class_id IS NULL THEN 'unlabelled'
            WHEN o.class_id < 0 THEN 'unknown species'
            WHEN s.poisonous THEN 'poisonous' ELSE 'edible' END AS toxicity,
       count(*) AS observations
FROM observations o LEFT JOIN species s USING (class_id)
GROUP BY ALL ORDER BY o.role, toxicity""")


def month_counts(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """``role, month (NULL = missing), observations``."""
    return _arrow(con, "SELECT role, month, count(*) AS observations FROM observations "
                       "GROUP BY ALL ORDER BY role, month NULLS LAST")


def region_counts(con: duckdb.DuckDBPyConnection, limit: int = 15) -> pa.Table:
    """``region, observations`` of the ``limit`` largest regions (first-level region name,
    else the country code) and one row ``other`` for the rest."""
    return _arrow(con, """
WITH r AS (
    SELECT coalesce(level1_name, country_code, '(missing)') AS region, count(*) AS observations
    FROM observations GROUP BY 1),
ranked AS (SELECT *, row_number() OVER (ORDER BY observations DESC, region) AS k FROM r)
SELECT CASE WHEN k <= $limit THEN region ELSE 'other' END AS region, sum(observations)::BIGINT AS observations
FROM ranked GROUP BY 1 ORDER BY min(k)""", {"limit": int(limit)})


def missing_rates(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """``field, role, missing`` (share of observations with NULL in ``field``)."""
    fields = [f for f in MISSING_FIELDS if f in OBSERVATION_FIELDS]
    parts = ", ".join(f"avg(CASE WHEN {q(f)} IS NULL THEN 1.0 ELSE 0.0 END) AS {q(f)}"
                      for f in fields)
    wide = _arrow(con, f"SELECT role, {parts} FROM observations GROUP BY role ORDER BY role")
    roles = wide.column("role").to_pylist()
    rows = {"field": [], "role": [], "missing": []}
    for f in fields:
        for role, v in zip(roles, wide.column(f).to_pylist(), strict=True):
            rows["field"].append(f)
            rows["role"].append(role)
            rows["missing"].append(float(v))
    return pa.table({"field": pa.array(rows["field"], pa.string()),
                     "role": pa.array(rows["role"], pa.string()),
                     "missing": pa.array(rows["missing"], pa.float64())})


# ------------------------------------------------------------------------- vectors
def space_vector_counts(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """``space, dim, train_vectors``: training images with a vector, per embedding space."""
    spaces = con.execute("SELECT space, dim, table_name FROM embedding_spaces ORDER BY created_at, space"
                         ).fetchall()
    out = {"space": [], "dim": [], "train_vectors": []}
    for space, dim, table in spaces:
        n = con.execute(f"SELECT count(*) FROM {q(table)} e JOIN images i USING (image_id) "
                        "JOIN observations o USING (observation_id) WHERE o.role = 'train'"
                        ).fetchall()[0][0]
        out["space"].append(space)
        out["dim"].append(int(dim))
        out["train_vectors"].append(int(n))
    return pa.table({"space": pa.array(out["space"], pa.string()),
                     "dim": pa.array(out["dim"], pa.int32()),
                     "train_vectors": pa.array(out["train_vectors"], pa.int64())})


def sample_training_vectors(con: duckdb.DuckDBPyConnection, space: str, n: int,
                            seed: int = 0) -> pa.Table:
    """One image vector for each of ``n`` training observations of known species, drawn by a
    seeded hash (the same sample every time): ``observation_id, class_id, species, genus,
    poisonous, vector``, ordered by observation id."""
    rows = con.execute("SELECT table_name FROM embedding_spaces WHERE space = ?", [space]).fetchall()
    if not rows:
        return pa.table({})
    table = q(rows[0][0])
    return _arrow(con, f"""
WITH pick AS (
    SELECT o.observation_id, min(i.image_id) AS image_id
    FROM observations o JOIN images i USING (observation_id)
    WHERE o.role = 'train' AND o.class_id >= 0
      AND i.image_id IN (SELECT image_id FROM {table})
    GROUP BY o.observation_id
    ORDER BY hash(o.observation_id + $seed), o.observation_id
    LIMIT $n)
SELECT p.observation_id, o.class_id, s.species, s.genus, s.poisonous, e.vector
FROM pick p JOIN observations o USING (observation_id) JOIN species s USING (class_id)
JOIN {table} e ON e.image_id = p.image_id
ORDER BY p.observation_id""", {"n": int(n), "seed": int(seed)})


# ---------------------------------------------------------------------------- runs
def run_record(con: duckdb.DuckDBPyConnection, run_id: str) -> pa.Table:
    """The ``runs`` row of ``run_id`` (zero rows when absent); config and metrics as JSON text."""
    return _arrow(con, "SELECT run_id, kind, space, head, fold, CAST(config AS VARCHAR) AS config, "
                       "CAST(metrics AS VARCHAR) AS metrics, created_at FROM runs WHERE run_id = ?",
                  [run_id])


def recent_runs(con: duckdb.DuckDBPyConnection, kinds: tuple[str, ...] = ("ensemble", "train"),
                limit: int = 5) -> pa.Table:
    """``run_id, kind, created_at`` of the newest runs of ``kinds``, newest first (the order
    of ``runs.NEWEST_FIRST``, as ``FeatureStore.default_run`` picks)."""
    return _arrow(con, newest_runs_sql("run_id, kind, created_at"),
                  {"kinds": list(kinds), "limit": int(limit)})


# --------------------------------------------------------------------- predictions
def prediction_batches(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """``batch, run_key, predictions, labelled, created_at`` per scored batch, newest first;
    ``labelled`` counts rows whose observation carries a label (class id or -1)."""
    return _arrow(con, """
SELECT p.batch, p.run_key, count(*) AS predictions, count(o.class_id) AS labelled,
       max(p.created_at) AS created_at
FROM predictions p LEFT JOIN observations o USING (observation_id)
GROUP BY ALL ORDER BY created_at DESC, p.batch""")


def answer_kinds(con: duckdb.DuckDBPyConnection, batch: str) -> pa.Table:
    """``observation_id, kind`` of every prediction of a batch (the answer mix counts them)."""
    _require_kind(con)
    return _arrow(con, "SELECT observation_id, kind FROM predictions WHERE batch = ? "
                       "ORDER BY observation_id", [batch])


def poison_probabilities(con: duckdb.DuckDBPyConnection, batch: str) -> pa.Table:
    """``poison_prob, kind`` of every prediction of a batch."""
    _require_kind(con)
    return _arrow(con, "SELECT poison_prob, kind FROM predictions "
                       "WHERE batch = ? AND poison_prob IS NOT NULL", [batch])


def poison_flagged(con: duckdb.DuckDBPyConnection, batch: str, limit: int = 20) -> pa.Table:
    """Observations of a batch raised for poison risk, highest poison probability first:
    ``observation_id, class_id, species, poison_prob, reason, evidence`` where evidence lists
    the evidence neighbours as ``"<observation id> <species> (poisonous|edible)"``."""
    _require_kind(con)
    return _arrow(con, """
WITH flagged AS (
    SELECT p.observation_id, p.class_id, p.poison_prob, p.reason, p.evidence_observation_ids
    FROM predictions p WHERE p.batch = $batch AND p.kind = 'poison_risk'
    ORDER BY p.poison_prob DESC, p.observation_id LIMIT $limit),
ev AS (
    SELECT f.observation_id, e.k, e.evidence_id,
           coalesce(s.species, 'class ' || o.class_id::VARCHAR, 'unlabelled') AS species,
           s.poisonous
    FROM flagged f,
         unnest(f.evidence_observation_ids) WITH ORDINALITY AS e(evidence_id, k)
    LEFT JOIN observations o ON o.observation_id = e.evidence_id
    LEFT JOIN species s ON s.class_id = o.class_id)
SELECT f.observation_id, f.class_id, s.species, f.poison_prob, f.reason,
       list(ev.evidence_id::VARCHAR || ' ' || ev.species ||
            CASE WHEN ev.poisonous THEN ' (poisonous)' WHEN ev.poisonous = false THEN ' (edible)'
                 ELSE '' END ORDER BY ev.k) FILTER (WHERE ev.evidence_id IS NOT NULL) AS evidence
FROM flagged f LEFT JOIN species s ON s.class_id = f.class_id
LEFT JOIN ev USING (observation_id)
GROUP BY f.observation_id, f.class_id, s.species, f.poison_prob, f.reason
ORDER BY f.poison_prob DESC, f.observation_id""", {"batch": batch, "limit": int(limit)})


def labelled_outcomes(con: duckdb.DuckDBPyConnection, batch: str | None = None) -> pa.Table:
    """``truth, answer, observations``: the poisonous / edible / unknown confusion of the
    predictions whose observation carries a label (all batches, or one). ``unknown`` is class
    -1; an answered class on the poisonous list is ``poisonous``."""
    return _arrow(con, """
WITH t AS (
    SELECT CASE WHEN o.class_id < 0 THEN 'unknown' WHEN ts.poisonous THEN 'poisonous'
                ELSE 'edible' END AS truth,
           CASE WHEN p.class_id IS NULL OR p.class_id < 0 THEN 'unknown'
                WHEN ps.poisonous THEN 'poisonous' ELSE 'edible' END AS answer
    FROM predictions p JOIN observations o USING (observation_id)
    LEFT JOIN species ts ON ts.class_id = o.class_id
    LEFT JOIN species ps ON ps.class_id = p.class_id
    WHERE o.class_id IS NOT NULL AND ($batch IS NULL OR p.batch = $batch))
SELECT truth, answer, count(*) AS observations FROM t GROUP BY ALL ORDER BY truth, answer""",
                  {"batch": batch})


def batch_answers(con: duckdb.DuckDBPyConnection, batch: str) -> pa.Table:
    """``observation_id, class_id`` answered in a batch (first row per observation)."""
    return _arrow(con, "SELECT observation_id, arg_min(class_id, created_at) AS class_id "
                       "FROM predictions WHERE batch = ? GROUP BY 1 ORDER BY 1", [batch])


def held_out_sample(con: duckdb.DuckDBPyConnection, n: int, seed: int = 0) -> pa.Table:
    """``observation_id, class_id`` of at most ``n`` labelled observations of the held-out
    ``test`` part of the current split (class -1: an unknown species), drawn by a seeded
    hash, ordered by observation id. Empty when the store has no splits."""
    if not con.execute("SELECT count(*) FROM meta WHERE key = 'split_seed'").fetchall()[0][0]:
        return pa.table({"observation_id": pa.array([], pa.int64()),
                         "class_id": pa.array([], pa.int64())})
    return _arrow(con, """
WITH pick AS (
    SELECT o.observation_id, o.class_id
    FROM splits sp JOIN observations o USING (observation_id)
    WHERE sp.part = 'test' AND o.class_id IS NOT NULL
      AND sp.seed = (SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'split_seed')
    ORDER BY hash(o.observation_id + $seed), o.observation_id
    LIMIT $n)
SELECT observation_id::BIGINT AS observation_id, class_id::BIGINT AS class_id
FROM pick ORDER BY observation_id""", {"n": int(n), "seed": int(seed)})


def species_names(con: duckdb.DuckDBPyConnection, class_ids) -> pa.Table:
    """``class_id, species, genus, poisonous`` of the given classes (those in ``species``)."""
    return _arrow(con, "SELECT class_id, species, genus, poisonous FROM species "
                       "WHERE class_id IN (SELECT unnest(?::BIGINT[])) ORDER BY class_id",
                  [[int(c) for c in class_ids]])


def poisonous_classes(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """``class_id`` of every species on the store's poisonous list."""
    return _arrow(con, "SELECT class_id FROM species WHERE poisonous ORDER BY class_id")


class ReportQueries:
    """The report's queries as store methods (for a class with ``_read(fn, *args)``)."""

    def count_observations(self) -> int:
        return self._read(count_observations)

    def role_counts(self) -> pa.Table:
        return self._read(role_counts)

    def class_counts(self) -> pa.Table:
        return self._read(class_counts)

    def toxicity_counts(self) -> pa.Table:
        return self._read(toxicity_counts)

    def month_counts(self) -> pa.Table:
        return self._read(month_counts)

    def region_counts(self, limit: int = 15) -> pa.Table:
        return self._read(region_counts, limit)

    def missing_rates(self) -> pa.Table:
        return self._read(missing_rates)

    def space_vector_counts(self) -> pa.Table:
        return self._read(space_vector_counts)

    def sample_training_vectors(self, space: str, n: int, seed: int = 0) -> pa.Table:
        return self._read(sample_training_vectors, space, n, seed)

    def run_record(self, run_id: str) -> pa.Table:
        return self._read(run_record, run_id)

    def recent_runs(self, kinds: tuple[str, ...] = ("ensemble", "train"), limit: int = 5
                    ) -> pa.Table:
        return self._read(recent_runs, kinds, limit)

    def prediction_batches(self) -> pa.Table:
        return self._read(prediction_batches)

    def answer_kinds(self, batch: str) -> pa.Table:
        return self._read(answer_kinds, batch)

    def poison_probabilities(self, batch: str) -> pa.Table:
        return self._read(poison_probabilities, batch)

    def poison_flagged(self, batch: str, limit: int = 20) -> pa.Table:
        return self._read(poison_flagged, batch, limit)

    def labelled_outcomes(self, batch: str | None = None) -> pa.Table:
        return self._read(labelled_outcomes, batch)

    def batch_answers(self, batch: str) -> pa.Table:
        return self._read(batch_answers, batch)

    def poisonous_classes(self) -> pa.Table:
        return self._read(poisonous_classes)

    def held_out_sample(self, n: int, seed: int = 0) -> pa.Table:
        return self._read(held_out_sample, n, seed)

    def species_names(self, class_ids) -> pa.Table:
        return self._read(species_names, class_ids)

"""Read queries the application needs: selections, look-ups by id, and hit descriptions.

Every function takes the store's connection. Ids go in as bound lists or
registered Arrow tables, never formatted into the SQL text; the only names
formatted in are fixed table names and validated embedding-space tables.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from . import splits
from .errors import InvalidValueError, StoreError
from .filters import SearchFilters
from .schema import q
from .spaces import require_space
from .temporary import registered
from .vocabulary import ROLES, SELECTIONS

# a fold's training set: role train + the other validation part
_FOLD_EXTRA_PART = {"fold1": "p2", "fold2": "p1"}


def selection_clause(con: duckdb.DuckDBPyConnection, where: str,
                     seed: int | None = None) -> tuple[str, list]:
    """WHERE clause over observations ``o`` for a selection, and its bound values."""
    if where not in SELECTIONS:
        raise InvalidValueError(f"where={where!r} is not a selection; choose one of "
                                f"{', '.join(SELECTIONS)}")
    if where == "all":
        return "TRUE", []
    if where in ROLES:
        return "o.role = ?", [where]
    seed = splits._seed(con, seed)
    in_part = "o.observation_id IN (SELECT observation_id FROM splits WHERE part = ? AND seed = ?)"
    if where not in _FOLD_EXTRA_PART:  # a part
        return in_part, [where, seed]
    return f"(o.role = ? OR {in_part})", ["train", _FOLD_EXTRA_PART[where], seed]


def _ids(con: duckdb.DuckDBPyConnection, query: str, params: list | dict) -> np.ndarray:
    table = con.sql(query, params=params).to_arrow_table()
    return table.column(0).to_numpy().astype(np.int64)


def _id_list(values) -> list[int]:
    return np.asarray(values if values is not None else [], dtype=np.int64).reshape(-1).tolist()


def selection_image_ids(con: duckdb.DuckDBPyConnection, space: str, where: str = "all",
                        seed: int | None = None) -> np.ndarray:
    """Sorted image ids of the ``where`` selection with a vector in ``space``."""
    clause, params = selection_clause(con, where, seed)
    table = q(require_space(con, space).table_name)
    return _ids(con, f"SELECT e.image_id FROM {table} e JOIN images i USING (image_id) "
                     f"JOIN observations o USING (observation_id) WHERE {clause} ORDER BY 1",
                params)


def filtered_image_ids(con: duckdb.DuckDBPyConnection, filters: SearchFilters | None,
                       exclude_observations=None) -> np.ndarray | None:
    """Sorted image ids passing ``filters`` and not of an excluded observation; None when
    nothing restricts."""
    exclude = _id_list(exclude_observations)
    if (filters is None or filters.is_empty()) and not exclude:
        return None
    filters = filters or SearchFilters()
    seed = splits.current_seed(con) if filters.split is not None else None
    clause, params = filters.sql(seed)
    if exclude:
        clause += " AND o.observation_id NOT IN (SELECT unnest(?::BIGINT[]))"
        params.append(exclude)
    return _ids(con, "SELECT i.image_id FROM images i JOIN observations o USING (observation_id) "
                     f"LEFT JOIN species s ON s.class_id = o.class_id WHERE {clause} ORDER BY 1",
                params)


def poisonous_class_ids(con: duckdb.DuckDBPyConnection) -> np.ndarray:
    return _ids(con, "SELECT class_id FROM species WHERE poisonous ORDER BY 1", [])


def observation_images(con: duckdb.DuckDBPyConnection, observation_ids,
                       labelled_only: bool = True) -> pa.Table:
    """``image_id, observation_id, class_id`` (-1 for NULL) of the observations' images."""
    return con.sql(
        "SELECT i.image_id, i.observation_id, CAST(coalesce(o.class_id, -1) AS BIGINT) AS class_id "
        "FROM images i JOIN observations o USING (observation_id) "
        "WHERE (o.class_id IS NOT NULL OR NOT ?) "
        "AND o.observation_id IN (SELECT unnest(?::BIGINT[])) ORDER BY i.image_id",
        params=[bool(labelled_only), _id_list(observation_ids)]).to_arrow_table()


def observation_image_ids(con: duckdb.DuckDBPyConnection, observation_id: int) -> np.ndarray:
    oid = int(observation_id)
    known = con.execute("SELECT count(*) FROM observations WHERE observation_id = ?",
                        [oid]).fetchall()[0][0]
    if not known:
        raise StoreError(f"observation {oid} is not in the store; check the id (sporeprint sql "
                         "\"SELECT observation_id FROM observations LIMIT 10\")")
    return _ids(con, "SELECT image_id FROM images WHERE observation_id = ? ORDER BY 1", [oid])


def _by_position(con: duckdb.DuckDBPyConnection, ids, query: str) -> np.ndarray:
    """Run ``query`` over a registered ``_ids(_pos, id)`` table; values by position."""
    wanted = np.asarray(ids if ids is not None else [], dtype=np.int64).reshape(-1)
    positions = pa.array(np.arange(len(wanted), dtype=np.int64))
    with registered(con, "_ids_in", pa.table({"_pos": positions, "id": pa.array(wanted)})):
        table = con.sql(query).to_arrow_table()
    out = np.full(len(wanted), -1, dtype=np.int64)
    pos = table.column(0).to_numpy().astype(np.int64)
    out[pos] = table.column(1).to_numpy(zero_copy_only=False).astype(np.int64)
    return out


def image_observations(con: duckdb.DuckDBPyConnection, image_ids) -> np.ndarray:
    """Observation id per given image id (in the given order)."""
    out = _by_position(con, image_ids, "SELECT w._pos, i.observation_id FROM _ids_in w "
                                       "JOIN images i ON i.image_id = w.id")
    if (out < 0).any():
        missing = np.asarray(image_ids, dtype=np.int64).reshape(-1)[out < 0][:5].tolist()
        raise StoreError(f"image ids {missing} are not in the store; pass ids of stored images")
    return out


def observation_class_ids(con: duckdb.DuckDBPyConnection, observation_ids) -> np.ndarray:
    """class_id per observation id, same order; -1 for unlabelled or unknown observations."""
    return _by_position(con, observation_ids,
                        "SELECT w._pos, coalesce(o.class_id, -1) FROM _ids_in w "
                        "JOIN observations o ON o.observation_id = w.id")


def existing_observations(con: duckdb.DuckDBPyConnection, observation_ids) -> pa.Table:
    return con.sql("SELECT observation_id, role FROM observations WHERE observation_id IN "
                   "(SELECT unnest(?::BIGINT[])) ORDER BY 1",
                   params=[_id_list(observation_ids)]).to_arrow_table()


def training_image_counts(con: duckdb.DuckDBPyConnection, class_ids) -> np.ndarray:
    """Images of role=train observations per class id (float64, same order)."""
    t = con.sql("SELECT o.class_id, count(*) AS n FROM images i JOIN observations o "
                "USING (observation_id) WHERE o.role = 'train' AND o.class_id IS NOT NULL "
                "GROUP BY 1").to_arrow_table()
    got = dict(zip(t.column(0).to_pylist(), t.column(1).to_pylist(), strict=True))
    return np.asarray([got.get(int(c), 0) for c in np.asarray(class_ids).reshape(-1)],
                      dtype=np.float64)


_POISONOUS = "s.poisonous"  # NULL when the observation has no (known) species label
_DATE = "try(make_date(o.year, o.month, o.day))"


def describe_hits(con: duckdb.DuckDBPyConnection, hits: pa.Table) -> pa.Table:
    """Add image and observation details to search hits (rank, observation_id, score,
    image_id), ordered by rank."""
    need = ("rank", "observation_id", "score", "image_id")
    missing = [c for c in need if c not in hits.column_names]
    if missing:
        raise StoreError(f"hits lack columns {missing}; pass rank, observation_id, score and "
                         "image_id")
    with registered(con, "_hits", hits.select(list(need))):
        return con.sql(
            "SELECT h.rank, h.observation_id, h.score, h.image_id, i.image_path, o.class_id, "
            "coalesce(s.species, o.species) AS species, coalesce(s.genus, o.genus) AS genus, "
            f"{_POISONOUS} AS poisonous, "
            f"{_DATE} AS date, o.country_code, o.locality, o.latitude, o.longitude, o.role "
            "FROM _hits h JOIN observations o USING (observation_id) "
            "JOIN images i ON i.image_id = h.image_id "
            "LEFT JOIN species s ON s.class_id = o.class_id ORDER BY h.rank").to_arrow_table()


def describe_observations(con: duckdb.DuckDBPyConnection, observation_ids) -> pa.Table:
    """One row of metadata per stored observation, in the given order."""
    wanted = np.asarray(observation_ids if observation_ids is not None else [],
                        dtype=np.int64).reshape(-1)
    positions = pa.array(np.arange(len(wanted), dtype=np.int64))
    with registered(con, "_obs_in", pa.table({"_pos": positions,
                                              "observation_id": pa.array(wanted)})):
        return con.sql(
            "SELECT o.observation_id, o.class_id, coalesce(s.species, o.species) AS species, "
            f"coalesce(s.genus, o.genus) AS genus, {_POISONOUS} AS poisonous, {_DATE} AS date, "
            "nullif(concat_ws(', ', o.locality, o.level2_name, o.country_code), '') AS place, "
            "o.country_code, o.locality, o.latitude, o.longitude, o.role, o.substrate, o.habitat, "
            "(SELECT count(*) FROM images i WHERE i.observation_id = o.observation_id) AS n_images "
            "FROM _obs_in w JOIN observations o USING (observation_id) "
            "LEFT JOIN species s ON s.class_id = o.class_id ORDER BY w._pos").to_arrow_table()


def stored_image_paths(con: duckdb.DuckDBPyConnection, image_paths) -> list[str]:
    """Those of the given image paths that are stored (any observation, any role)."""
    return con.sql("SELECT image_path FROM images WHERE image_path IN (SELECT unnest(?::VARCHAR[]))",
                   params=[[str(p) for p in image_paths]]).to_arrow_table().column(0).to_pylist()


def embedding_failure_reasons(con: duckdb.DuckDBPyConnection, space: str,
                              limit: int = 10) -> list[dict]:
    """``[{reason, n}]``: the most common reasons images of ``space`` failed to embed."""
    return con.sql("SELECT reason, count(*) AS n FROM embedding_failures WHERE space = ? "
                   "GROUP BY reason ORDER BY n DESC LIMIT ?",
                   params=[space, int(limit)]).to_arrow_table().to_pylist()


def batch_predictions(con: duckdb.DuckDBPyConnection, batch: str,
                      run_key: str | None = None) -> pa.Table:
    """The stored predictions of one scored batch (of ``run_key``, default: the run key
    that scored it last), by observation id."""
    if run_key is None:
        row = con.execute("SELECT run_key FROM predictions WHERE batch = ? "
                          "ORDER BY created_at DESC LIMIT 1", [batch]).fetchall()
        if not row:
            known = [r[0] for r in con.execute(
                "SELECT DISTINCT batch FROM predictions ORDER BY 1 LIMIT 10").fetchall()]
            raise StoreError(f"no predictions for batch {batch!r}; scored batches: "
                             f"{', '.join(known) or 'none'} (score one with `sporeprint score`)")
        run_key = row[0][0]
    elif not con.execute("SELECT count(*) FROM predictions WHERE batch = ? AND run_key = ?",
                         [batch, run_key]).fetchall()[0][0]:
        runs = [r[0] for r in con.execute(
            "SELECT run_key FROM predictions WHERE batch = ? GROUP BY run_key "
            "ORDER BY max(created_at) DESC LIMIT 10", [batch]).fetchall()]
        raise StoreError(f"no predictions for batch {batch!r} by run {run_key!r}; runs that "
                         f"scored it: {', '.join(runs) or 'none'} (leave the run out for the "
                         "latest)")
    return con.sql("SELECT p.*, o.class_id AS true_class_id FROM predictions p "
                   "LEFT JOIN observations o USING (observation_id) "
                   "WHERE p.batch = ? AND p.run_key = ? ORDER BY p.observation_id",
                   params=[batch, run_key]).to_arrow_table()


def observation_inputs(con: duckdb.DuckDBPyConnection, observation_ids) -> pa.Table:
    """The metadata-encoder inputs (observation_id, substrate, meta_substrate, habitat,
    month, day, latitude, longitude) of the given stored observations, in the given order."""
    return con.sql("SELECT o.observation_id, o.substrate, o.meta_substrate, o.habitat, o.month, "
                   "o.day, o.latitude, o.longitude FROM (SELECT unnest(?::BIGINT[]) AS id, "
                   "generate_subscripts(?::BIGINT[], 1) AS pos) w "
                   "JOIN observations o ON o.observation_id = w.id ORDER BY w.pos",
                   params=[_id_list(observation_ids)] * 2).to_arrow_table()


def image_file_path(con: duckdb.DuckDBPyConnection, image_id: int) -> str | None:
    """The stored file path of one image (None without a file); StoreError if not stored."""
    rows = con.execute("SELECT file_path FROM images WHERE image_id = ?", [int(image_id)]).fetchall()
    if not rows:
        raise StoreError(f"image {image_id} is not in the store")
    return rows[0][0]


def species_table(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """class_id, species, genus, family, poisonous of every known class."""
    return con.sql("SELECT class_id, species, genus, family, poisonous FROM species "
                   "ORDER BY class_id").to_arrow_table()

"""Look-alike search over a store: build/load FAISS indexes and query them with SQL filters.

An index covers the images of one *selection* (``where``) that have a vector in
one embedding space. It is saved beside the store, in
``<store>.indexes/<space>-<kind>-<where>/``, with a manifest holding the
checksum of its image ids; loading it recomputes that checksum from the store
and refuses a stale index.

Observations are ranked by their best image: an observation's score is the
maximum cosine similarity over its images in the index.

Example:
    >>> with FeatureStore("fungi.duckdb") as fs:                     # doctest: +SKIP
    ...     build_index(fs, "dinov2_l", kind="hnsw", where="train")
    ...     index = load_index(fs, "dinov2_l", kind="hnsw", where="train")
    ...     hits = find_lookalikes(fs, index, query, k=10, filters=SearchFilters(poisonous=True))
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa

from retrieval import RetrievalError, VectorIndex, id_checksum

logger = logging.getLogger(__name__)

# Selections an index can cover: SQL over observations ``o`` (values are fixed here).
WHERES = {
    "all": ("TRUE", []),
    "train": ("o.role = ?", ["train"]),
    "val": ("o.role = ?", ["val"]),
    "test": ("o.role = ?", ["test"]),
    "new": ("o.role = ?", ["new"]),
    "p1": ("o.observation_id IN (SELECT observation_id FROM splits WHERE part = ? AND seed = "
           "(SELECT max(seed) FROM splits))", ["p1"]),
    "p2": ("o.observation_id IN (SELECT observation_id FROM splits WHERE part = ? AND seed = "
           "(SELECT max(seed) FROM splits))", ["p2"]),
    # a fold's training set: role train + the other validation third
    "fold1": ("(o.role = ? OR o.observation_id IN (SELECT observation_id FROM splits WHERE part = ? "
              "AND seed = (SELECT max(seed) FROM splits)))", ["train", "p2"]),
    "fold2": ("(o.role = ? OR o.observation_id IN (SELECT observation_id FROM splits WHERE part = ? "
              "AND seed = (SELECT max(seed) FROM splits)))", ["train", "p1"]),
}
EARTH_RADIUS_KM = 6371.0088


class StaleIndexError(RetrievalError):
    """The saved index no longer matches the store's vectors for its selection."""


@dataclass
class SearchFilters:
    """Which observations may be returned; ``None`` means no constraint.

    Dates compare against the observation's year-month-day (observations with an
    incomplete date never match a date filter); ``near`` is ``(lat, lon)`` and
    needs ``radius_km``; ``split`` is a part (p1, p2, test) of the latest splits.
    """

    species: str | None = None
    genus: str | None = None
    family: str | None = None
    poisonous: bool | None = None
    date_from: dt.date | str | None = None
    date_to: dt.date | str | None = None
    near: tuple[float, float] | None = None
    radius_km: float | None = None
    role: str | None = None
    split: str | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def sql(self) -> tuple[str, list]:
        """A WHERE clause over ``o`` (observations) and ``s`` (species) plus its bound values."""
        clauses, params = [], []
        for name in ("species", "genus", "family", "role"):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f'o."{name}" = ?')
                params.append(str(value))
        if self.poisonous is not None:
            clauses.append("coalesce(s.poisonous, FALSE) = ?")
            params.append(bool(self.poisonous))
        for name, op in (("date_from", ">="), ("date_to", "<=")):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"try(make_date(o.year, o.month, o.day)) {op} ?")
                params.append(_date(value, name))
        if (self.near is None) != (self.radius_km is None):
            raise ValueError("near and radius_km go together; pass both (--near LAT,LON --radius-km R)")
        if self.near is not None:
            lat, lon = (float(v) for v in self.near)
            if not (-90 <= lat <= 90 and -180 <= lon <= 180) or not self.radius_km > 0:
                raise ValueError(f"near={self.near} radius_km={self.radius_km} is out of range; "
                                 "latitude in [-90, 90], longitude in [-180, 180], radius > 0")
            clauses.append(
                "2 * ? * asin(sqrt(pow(sin(radians(o.latitude - ?) / 2), 2) + cos(radians(?)) * "
                "cos(radians(o.latitude)) * pow(sin(radians(o.longitude - ?) / 2), 2))) <= ?")
            params += [EARTH_RADIUS_KM, lat, lat, lon, float(self.radius_km)]
        if self.split is not None:
            clauses.append("o.observation_id IN (SELECT observation_id FROM splits WHERE part = ? "
                           "AND seed = (SELECT max(seed) FROM splits))")
            params.append(str(self.split))
        return (" AND ".join(clauses) or "TRUE"), params


# --------------------------------------------------------------------- building
def index_dir(store_path: str | Path, space: str, kind: str = "exact", where: str = "all") -> Path:
    """Where ``build_index`` saves: ``<store>.indexes/<space>-<kind>-<where>``."""
    return Path(str(store_path) + ".indexes") / f"{space}-{kind}-{where}"


def selection_image_ids(fs, space: str, where: str = "all") -> np.ndarray:
    """Sorted image ids of the ``where`` selection that have a vector in ``space``."""
    if where not in WHERES:
        raise ValueError(f"where={where!r} is not one of {', '.join(WHERES)}")
    table = _space(fs, space).table_name
    clause, params = WHERES[where]
    rows = fs.sql(f'SELECT e.image_id FROM "{table}" e JOIN images i USING (image_id) '
                  f"JOIN observations o USING (observation_id) WHERE {clause} ORDER BY 1", params)
    return rows.column(0).to_numpy().astype(np.int64)


def build_index(fs, space: str, kind: str = "exact", where: str = "all",
                directory: str | Path | None = None, **params) -> VectorIndex:
    """Build an index of the ``where`` selection's vectors in ``space`` and save it."""
    spec = _space(fs, space)
    ids = selection_image_ids(fs, space, where)
    if ids.size == 0:
        raise RetrievalError(f"no vectors in space {space!r} for selection {where!r}; "
                             "ingest or embed images first (sporeprint embed / ingest)")
    ids, vectors = fs.fetch_embeddings(space, ids)
    index = VectorIndex(spec.dim, kind=kind, **params)
    index.add(ids, vectors)
    directory = Path(directory) if directory else index_dir(fs.path, space, kind, where)
    index.save(directory, space=space, extra={
        "where": where, "model_id": spec.model_id, "revision": spec.revision,
        "store": str(Path(fs.path).resolve()),
    })
    return index


def load_index(fs, space: str, kind: str = "exact", where: str = "all",
               directory: str | Path | None = None) -> VectorIndex:
    """Load a saved index, failing with :class:`StaleIndexError` if the store changed since."""
    spec = _space(fs, space)
    directory = Path(directory) if directory else index_dir(fs.path, space, kind, where)
    rebuild = f"sporeprint index build --store {fs.path} --space {space} --kind {kind} --where {where}"
    if not (directory / "manifest.json").is_file():
        raise RetrievalError(f"no index at {directory}; build it with: {rebuild}")
    index = VectorIndex.load(directory)
    m = index.manifest
    extra = m.get("extra", {})
    if m.get("space") != space or m.get("dim") != spec.dim or extra.get("model_id") != spec.model_id:
        raise StaleIndexError(
            f"index is stale: {directory} was built for space {m.get('space')!r} "
            f"(model {extra.get('model_id')!r}, dim {m.get('dim')}), the store's space {space!r} is "
            f"model {spec.model_id!r}, dim {spec.dim}; rebuild with: {rebuild}")
    current = selection_image_ids(fs, space, extra.get("where", where))
    if id_checksum(current) != m["id_checksum"]:
        raise StaleIndexError(
            f"index is stale: {directory} holds {m['count']} vectors but the store now has "
            f"{current.size} for that selection (or different ones); rebuild with: {rebuild}")
    return index


# -------------------------------------------------------------------- searching
def observation_query(fs, space: str, observation_id: int) -> np.ndarray:
    """Query vector of an observation: the normalised mean of its image vectors, (1, d)."""
    image_ids = fs.sql("SELECT image_id FROM images WHERE observation_id = ? ORDER BY 1",
                       [int(observation_id)]).column(0).to_numpy().astype(np.int64)
    if image_ids.size == 0:
        raise ValueError(f"observation {observation_id} is not in the store; check the id")
    _, vectors = fs.fetch_embeddings(space, image_ids)
    if vectors.shape[0] == 0:
        raise ValueError(f"observation {observation_id} has no vectors in space {space!r}; "
                         "embed its images first (sporeprint embed)")
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    mean = v.mean(0)
    return (mean / np.linalg.norm(mean))[None, :].astype(np.float32)


def allowed_image_ids(fs, index: VectorIndex, filters: SearchFilters | None,
                      exclude_observations=None) -> np.ndarray | None:
    """Index ids passing the filters (None = no restriction), computed in SQL."""
    exclude = np.asarray([] if exclude_observations is None else exclude_observations, np.int64)
    if (filters is None or filters.is_empty()) and exclude.size == 0:
        return None
    clause, params = (filters or SearchFilters()).sql()
    if exclude.size:
        clause += " AND o.observation_id NOT IN (SELECT unnest(?::BIGINT[]))"
        params.append(exclude.tolist())
    rows = fs.sql("SELECT i.image_id FROM images i JOIN observations o USING (observation_id) "
                  f"LEFT JOIN species s ON s.class_id = o.class_id WHERE {clause}", params)
    return np.intersect1d(rows.column(0).to_numpy().astype(np.int64), index.ids)


def find_lookalikes(fs, index: VectorIndex, queries: np.ndarray, k: int = 10,
                    filters: SearchFilters | None = None,
                    exclude_observations=None) -> list[pa.Table]:
    """The ``k`` most similar observations for each query row, one Arrow table per query.

    Columns: rank, observation_id, score (best image's cosine similarity),
    image_id, image_path, class_id, species, poisonous, date, country_code,
    locality, latitude, longitude, role.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    allowed = allowed_image_ids(fs, index, filters, exclude_observations)
    n_candidates = len(index) if allowed is None else allowed.size
    image_obs = _image_observations(fs, index.ids if allowed is None else allowed)
    fetch = min(max(2 * k, k + 16), max(n_candidates, 1))
    best: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [None] * queries.shape[0]
    todo = np.arange(queries.shape[0])
    while todo.size:  # widen until k distinct observations or no candidates left
        D, hit_ids = index.search(queries[todo], fetch, allowed_ids=allowed)
        short = []
        for row, qi in enumerate(todo):
            ok = hit_ids[row] >= 0
            obs = image_obs(hit_ids[row][ok])
            _, first = np.unique(obs, return_index=True)  # hits are sorted: first = best image
            first = np.sort(first)[:k]
            best[qi] = (obs[first], D[row][ok][first], hit_ids[row][ok][first])
            if first.size < k and fetch < n_candidates:
                short.append(qi)
        todo = np.asarray(short, dtype=np.int64)
        fetch = min(fetch * 4, n_candidates)
    return [_describe(fs, *b) for b in best]


def _image_observations(fs, image_ids: np.ndarray):
    t = fs.sql("SELECT image_id, observation_id FROM images WHERE image_id IN "
               "(SELECT unnest(?::BIGINT[])) ORDER BY image_id", [np.asarray(image_ids).tolist()])
    keys = t.column(0).to_numpy().astype(np.int64)
    values = t.column(1).to_numpy().astype(np.int64)

    def lookup(ids: np.ndarray) -> np.ndarray:
        return values[np.searchsorted(keys, ids)]
    return lookup


def _describe(fs, observation_ids, scores, image_ids) -> pa.Table:
    hits = pa.table({"rank": pa.array(np.arange(1, len(observation_ids) + 1), pa.int32()),
                     "observation_id": pa.array(observation_ids, pa.int64()),
                     "score": pa.array(scores, pa.float32()),
                     "image_id": pa.array(image_ids, pa.int64())})
    con = fs.con
    con.register("_hits", hits)
    try:
        return fs.sql(
            "SELECT h.rank, h.observation_id, h.score, h.image_id, i.image_path, o.class_id, "
            "coalesce(s.species, o.species) AS species, coalesce(s.poisonous, FALSE) AS poisonous, "
            "try(make_date(o.year, o.month, o.day)) AS date, o.country_code, o.locality, "
            "o.latitude, o.longitude, o.role FROM _hits h JOIN observations o USING (observation_id) "
            "JOIN images i ON i.image_id = h.image_id "
            "LEFT JOIN species s ON s.class_id = o.class_id ORDER BY h.rank")
    finally:
        con.unregister("_hits")


# --------------------------------------------------------- for the scoring pipeline
@dataclass
class Neighbours:
    """Nearest training observations of a batch of queries."""

    observation_ids: np.ndarray  # int64 (n, k), -1 = none
    scores: np.ndarray  # float32 (n, k) cosine similarity of the best image, -inf = none
    class_ids: np.ndarray  # int64 (n, k), -1 = none/unknown
    unknown_score: np.ndarray  # float64 (n,) 1 - similarity to the detector_k-th nearest image


def nearest_training_observations(fs, space: str, queries: np.ndarray, k: int = 5,
                                  where: str = "train", detector_k: int = 10,
                                  index: VectorIndex | None = None) -> Neighbours:
    """For each query row, the ``k`` nearest observations of the ``where`` selection
    (e.g. ``fold1``) and the kNN unknown score used by :class:`retrieval.OpenSetDetector`.

    Uses the saved exact index of that selection when it is fresh, else builds one in memory.
    """
    if index is None:
        try:
            index = load_index(fs, space, "exact", where)
        except RetrievalError:
            spec = _space(fs, space)
            ids, vectors = fs.fetch_embeddings(space, selection_image_ids(fs, space, where))
            index = VectorIndex(spec.dim, "exact")
            index.add(ids, vectors)
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    fetch = min(len(index), max(4 * k, detector_k))
    D, hit_ids = index.search(queries, fetch)
    kth = min(detector_k, fetch) - 1
    unknown = 1.0 - D[:, kth].astype(np.float64)
    lookup = _image_observations(fs, index.ids)
    cls = fs.sql("SELECT observation_id, coalesce(class_id, -1) FROM observations ORDER BY 1")
    obs_keys = cls.column(0).to_numpy().astype(np.int64)
    obs_cls = cls.column(1).to_numpy().astype(np.int64)
    n = queries.shape[0]
    out_obs = np.full((n, k), -1, np.int64)
    out_d = np.full((n, k), -np.inf, np.float32)
    for r in range(n):  # distinct observations in rank order
        ok = hit_ids[r] >= 0
        obs = lookup(hit_ids[r][ok])
        _, first = np.unique(obs, return_index=True)
        first = np.sort(first)[:k]
        out_obs[r, : first.size], out_d[r, : first.size] = obs[first], D[r][ok][first]
    out_cls = np.where(out_obs >= 0, obs_cls[np.searchsorted(obs_keys, np.maximum(out_obs, 0))], -1)
    return Neighbours(out_obs, out_d, out_cls, unknown)


def _space(fs, space: str):
    spec = fs.get_space(space)
    if spec is None:
        names = fs.sql("SELECT space FROM embedding_spaces ORDER BY 1").column(0).to_pylist()
        raise ValueError(f"embedding space {space!r} is not in the store (it has: "
                         f"{', '.join(names) or 'none'}); ingest or embed vectors first")
    return spec


def _date(value, name: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f"{name}={value!r} is not a date; use YYYY-MM-DD") from exc

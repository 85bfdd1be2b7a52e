"""Look-alike search: the observations most similar to a query, with metadata filters.

Observations are ranked by their best image: an observation's score is the
maximum cosine similarity over its images in the index. Filters are applied
before ranking (the index searches only the allowed images), so ``k`` hits come
back whenever ``k`` observations match.

Example:
    >>> with FeatureStore("fungi.duckdb", read_only=True) as fs:          # doctest: +SKIP
    ...     index = load_index(fs, "dinov2_l", kind="hnsw", where="train")
    ...     q = observation_query(fs, "dinov2_l", 123)
    ...     hits = find_lookalikes(fs, index, q, k=10, filters=SearchFilters(poisonous=True))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from retrieval import VectorIndex
from sporeprint.errors import SporeprintError
from store import SearchFilters


def first_distinct(labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``labels`` (n, m) (ranked; ``-1`` = no hit), the positions of the first
    ``k`` distinct labels in rank order: ``(positions (n, k), valid (n, k))``.

    >>> pos, ok = first_distinct(np.array([[7, 7, 3, -1, 5]]), 3)
    >>> pos[ok].tolist()
    [0, 2, 4]
    """
    labels = np.asarray(labels)
    n, m = labels.shape
    order = np.argsort(labels, axis=1, kind="stable")  # ties keep rank order
    s = np.take_along_axis(labels, order, 1)
    new = np.ones_like(s, dtype=bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    first = np.zeros_like(new)
    np.put_along_axis(first, order, new, 1)
    first &= labels >= 0
    keep = first & (np.cumsum(first, axis=1) <= k)
    pos = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    valid = np.take_along_axis(keep, pos, 1)
    if pos.shape[1] < k:  # fewer columns than k
        pad = k - pos.shape[1]
        pos = np.pad(pos, ((0, 0), (0, pad)))
        valid = np.pad(valid, ((0, 0), (0, pad)))
    return pos, valid


def observation_query(fs, space: str, observation_id: int) -> np.ndarray:
    """Query vector of a stored observation: the normalised mean of its image vectors, (1, d)."""
    image_ids = fs.observation_image_ids(int(observation_id))
    _, vectors = fs.fetch_embeddings(space, image_ids)
    if vectors.shape[0] == 0:
        raise SporeprintError(f"observation {observation_id} has no vectors in space {space!r}; "
                              "embed its images first (sporeprint embed)")
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    mean = v.mean(0)
    return (mean / np.linalg.norm(mean))[None, :].astype(np.float32)


@dataclass
class SearchInfo:
    """What a search did: for ``--explain`` and the JSON output."""

    candidates: int  # images the filters allow in the index
    indexed: int  # images in the index
    requested: int
    returned: list[int]  # per query
    kind: str
    why: str = ""  # why this index kind was used
    path: str | None = None  # what the index did: scan, exact-subset, approximate, ...
    space: str | None = None  # the embedding space searched
    space_why: str = ""  # given, the store's only space, or the default run's space

    @property
    def selectivity(self) -> float:
        return self.candidates / self.indexed if self.indexed else 0.0

    def to_dict(self) -> dict:
        return {"space": self.space, "space_why": self.space_why,
                "index_kind": self.kind, "why": self.why, "search_path": self.path,
                "indexed_images": self.indexed,
                "allowed_images": self.candidates, "selectivity": round(self.selectivity, 6),
                "requested": self.requested, "returned": self.returned}


def find_lookalikes(fs, index: VectorIndex, queries: np.ndarray, k: int = 10,
                    filters: SearchFilters | None = None, exclude_observations=None,
                    info: list | None = None) -> list[pa.Table]:
    """The ``k`` most similar observations for each query row, one Arrow table per query
    (columns of :meth:`store.FeatureStore.describe_hits`). ``info``, when a list, receives
    one :class:`SearchInfo`."""
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    allowed = fs.filtered_image_ids(filters or SearchFilters(), exclude_observations)
    if allowed is not None:
        allowed = np.intersect1d(allowed, index.ids)
    n_candidates = len(index) if allowed is None else allowed.size
    lookup = _lookup(fs, index.ids if allowed is None else allowed)
    fetch = min(max(2 * k, k + 16), max(n_candidates, 1))
    best: list = [None] * queries.shape[0]
    todo = np.arange(queries.shape[0])
    while todo.size:  # widen until k distinct observations or no candidates left
        D, hit_ids = index.search(queries[todo], fetch, allowed_ids=allowed)
        obs = np.where(hit_ids >= 0, lookup(np.maximum(hit_ids, 0)), -1)
        pos, valid = first_distinct(obs, k)
        short = []
        for row, qi in enumerate(todo):
            p = pos[row][valid[row]]
            best[qi] = (obs[row][p], D[row][p], hit_ids[row][p])
            if p.size < k and fetch < n_candidates:
                short.append(qi)
        todo = np.asarray(short, dtype=np.int64)
        fetch = min(fetch * 4, n_candidates)
    if info is not None:
        info.append(SearchInfo(n_candidates, len(index), k, [len(b[0]) for b in best],
                               index.kind))
    return [fs.describe_hits(pa.table({
        "rank": pa.array(np.arange(1, len(o) + 1), pa.int32()),
        "observation_id": pa.array(o, pa.int64()),
        "score": pa.array(d, pa.float32()),
        "image_id": pa.array(i, pa.int64())})) for o, d, i in best]


def _lookup(fs, image_ids: np.ndarray):
    keys = np.asarray(image_ids, dtype=np.int64)  # sorted (index ids are sorted)
    values = fs.image_observations(keys)
    order = np.argsort(keys)
    keys, values = keys[order], values[order]

    def lookup(ids: np.ndarray) -> np.ndarray:
        if keys.size == 0:  # nothing allowed: no hit maps to an observation
            return np.full(np.shape(ids), -1, np.int64)
        return values[np.clip(np.searchsorted(keys, ids), 0, len(keys) - 1)]
    return lookup


# --------------------------------------------------------- for the scoring pipeline
@dataclass
class Neighbours:
    """Nearest training observations of a batch of queries."""

    observation_ids: np.ndarray  # int64 (n, k), -1 = none
    scores: np.ndarray  # float32 (n, k) cosine similarity of the best image, -inf = none
    unknown_score: np.ndarray  # float64 (n,) 1 - similarity to the detector_k-th nearest image


class TrainingNeighbours:
    """One kNN search per batch over an index of training images gives both the
    evidence (nearest distinct observations) and the open-set detector's kNN score.
    The image -> observation map is read once, when this object is made."""

    def __init__(self, fs, index: VectorIndex):
        self.index = index
        self._lookup = _lookup(fs, index.ids)

    def search(self, queries: np.ndarray, k: int = 5, detector_k: int = 10) -> Neighbours:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        fetch = min(len(self.index), max(4 * k, detector_k))
        D, hit_ids = self.index.search(queries, fetch)
        unknown = 1.0 - D[:, min(detector_k, fetch) - 1].astype(np.float64)
        obs = np.where(hit_ids >= 0, self._lookup(np.maximum(hit_ids, 0)), -1)
        pos, valid = first_distinct(obs, k)
        out_obs = np.where(valid, np.take_along_axis(obs, pos, 1), -1)
        out_d = np.where(valid, np.take_along_axis(D, pos, 1), -np.inf).astype(np.float32)
        return Neighbours(out_obs, out_d, unknown)

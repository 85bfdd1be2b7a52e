"""The seeded sample of training vectors shared by the embedding map and the danger frontier."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from .sections.common import query


@dataclass
class VectorSample:
    observation_ids: np.ndarray
    vectors: np.ndarray  # (n, d) float32
    poisonous: np.ndarray  # (n,) bool
    species: list[str]
    genus: list[str]
    map_rows: np.ndarray  # rows drawn for the map (and the frontier's queries)


def vector_sample(fs, space: str | None, n_map: int, n_frontier: int,
                  seed: int) -> VectorSample | None:
    """One vector for each of at most ``max(n_map, n_frontier)`` training observations of
    ``space`` (None when there are fewer than 10), and ``n_map`` of them for the map."""
    if space is None:
        return None
    t = query(fs, "sample_training_vectors", space, max(n_frontier, n_map), seed)
    if t.num_rows < 10:
        return None
    col = t.column("vector").combine_chunks()
    vec = col.values.to_numpy(zero_copy_only=False).reshape(len(col), -1).astype(np.float32)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(t.num_rows, min(n_map, t.num_rows), replace=False))
    return VectorSample(t.column("observation_id").to_numpy(), vec,
                        pc.fill_null(t.column("poisonous"), False).to_numpy(zero_copy_only=False),
                        [x or "?" for x in t.column("species").to_pylist()],
                        [x or "?" for x in t.column("genus").to_pylist()], rows)

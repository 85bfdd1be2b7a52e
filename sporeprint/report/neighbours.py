"""The two computations over sampled vectors: a 2-d map (PCA, then t-SNE) and the danger
frontier (exact cosine kNN across the edible/poisonous line)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def project_2d(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """(n, d) -> (n, 2): PCA to at most 50 dimensions, then t-SNE (scikit-learn)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = normalise(vectors.astype(np.float32))
    n = len(x)
    dims = min(50, x.shape[1], n - 1)
    x = PCA(dims, random_state=seed).fit_transform(x)
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    tsne = TSNE(2, perplexity=perplexity, init="pca", learning_rate="auto", max_iter=350,
                angle=0.8, random_state=seed)
    # One OpenMP thread: Barnes-Hut t-SNE synchronises its threads every iteration, and on a
    # machine shared with other work two threads took 5x the CPU time of one (measured).
    with threadpool_limits(1, user_api="openmp"):
        return tsne.fit_transform(x)


@dataclass
class Frontier:
    """Result of ``danger_frontier`` (rows index the database sample)."""

    on_frontier: np.ndarray  # (q,) bool, per query
    query_rows: np.ndarray  # (q,) rows of the queries in the sample
    pairs: list[tuple[int, int, float]]  # (poisonous row, edible row, cosine), closest first
    k: int


def danger_frontier(vectors: np.ndarray, poisonous: np.ndarray, query_rows: np.ndarray,
                    k: int = 5, max_pairs: int = 15, chunk: int = 512) -> Frontier:
    """For each query row, its ``k`` nearest other rows of ``vectors`` by cosine similarity
    (exact: one matrix product per chunk of queries); a query is on the frontier when one
    of them has the other toxicity. Also returns the closest cross pairs, each pair once."""
    db = normalise(vectors.astype(np.float32))
    k = int(min(k, len(db) - 1))
    on = np.zeros(len(query_rows), dtype=bool)
    best: dict[tuple[int, int], float] = {}
    if k < 1:
        return Frontier(on, query_rows, [], 0)
    for start in range(0, len(query_rows), chunk):
        rows = query_rows[start:start + chunk]
        sims = db[rows] @ db.T  # (c, n)
        sims[np.arange(len(rows)), rows] = -np.inf  # not its own neighbour
        nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (c, k) unordered
        nn_sims = np.take_along_axis(sims, nn, axis=1)
        cross = poisonous[nn] != poisonous[rows][:, None]
        on[start:start + len(rows)] = cross.any(axis=1)
        for i, j in zip(*np.nonzero(cross), strict=True):
            a, b = int(rows[i]), int(nn[i, j])
            key = (a, b) if poisonous[a] else (b, a)
            s = float(nn_sims[i, j])
            if s > best.get(key, -np.inf):
                best[key] = s
    pairs = sorted(((p, e, s) for (p, e), s in best.items()), key=lambda t: -t[2])[:max_pairs]
    return Frontier(on, query_rows, pairs, k)

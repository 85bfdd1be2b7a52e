"""The two computations over sampled vectors: a 2-d map (PCA, then t-SNE where
scikit-learn is installed, PCA alone otherwise) and the danger frontier (exact cosine kNN
across the edible/poisonous line)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class Projection:
    """Result of ``project_2d``: the points and how they were made, for the caption."""

    xy: np.ndarray  # (n, 2)
    method: str  # "t-SNE" or "PCA"
    how: str  # "projected with ..." for the figure caption
    reading: str  # what distances on the map mean


def pca(x: np.ndarray, dims: int) -> np.ndarray:
    """(n, d) -> (n, dims): the centred rows on their ``dims`` leading principal axes, from
    an eigendecomposition of the smaller of the (d, d) scatter and the (n, n) Gram matrix
    (a full SVD of a 2,000 × 1,024 sample is several times slower). Each axis is signed so
    that its largest loading is positive: the map does not flip between runs."""
    x = x - x.mean(axis=0)
    if x.shape[0] >= x.shape[1]:
        _, vecs = np.linalg.eigh(x.T @ x)  # eigenvalues ascending
        axes = vecs[:, ::-1][:, :dims].T
    else:
        _, vecs = np.linalg.eigh(x @ x.T)
        axes = (x.T @ vecs[:, ::-1][:, :dims]).T
        axes /= np.maximum(np.linalg.norm(axes, axis=1, keepdims=True), 1e-12)
    axes *= np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]
    return x @ axes.T


def project_2d(vectors: np.ndarray, seed: int = 0) -> Projection:
    """(n, d) -> 2-d points. With scikit-learn: PCA to at most 50 dimensions, then t-SNE.
    Without it (the runtime install leaves it out): PCA to 2 dimensions (numpy)."""
    x = normalise(vectors.astype(np.float32))
    n = len(x)
    try:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits
    except ImportError:  # the runtime install: no scikit-learn
        TSNE = None
    if n < 3 or TSNE is None:
        why = "" if n < 3 else " (the t-SNE map needs scikit-learn: pip install scikit-learn)"
        xy = np.zeros((n, 2), np.float32)
        axes = pca(x, 2)
        xy[:, :axes.shape[1]] = axes
        return Projection(
            xy, "PCA", f"projected with PCA onto its 2 leading principal axes{why}",
            "PCA keeps the directions of largest spread, so islands that t-SNE would pull apart "
            "may overlap here; distances on the map are a flattening of real cosine geometry.")
    x = PCA(min(50, x.shape[1], n - 1), random_state=seed).fit_transform(x)
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    tsne = TSNE(2, perplexity=perplexity, init="pca", learning_rate="auto", max_iter=350,
                angle=0.8, random_state=seed)
    # One OpenMP thread: Barnes-Hut t-SNE synchronises its threads every iteration, and on a
    # machine shared with other work two threads took 5x the CPU time of one (measured).
    with threadpool_limits(1, user_api="openmp"):
        xy = tsne.fit_transform(x)
    return Projection(
        xy, "t-SNE", f"projected with PCA to {x.shape[1]} dimensions and then t-SNE to 2",
        "t-SNE keeps neighbourhoods, not distances, so the gaps between islands mean little.")


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

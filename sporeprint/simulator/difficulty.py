"""How hard a simulation is: a plain kNN baseline, with and without a metadata prior.

The kNN baseline votes with the ``k`` most similar training images (cosine,
numpy brute force) of every image of an observation; the metadata variant
multiplies those vote shares by naive-Bayes likelihoods of the observation's
Substrate, Habitat, month and municipality estimated on the training rows.
Accuracy is top-1 over *known* validation observations.

>>> from sporeprint.simulator.simulate import SimConfig, simulate
>>> knn_baseline(simulate(SimConfig(scale="small")))["knn_top1"]  # doctest: +SKIP
0.55
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

METADATA_COLUMNS = ("Substrate", "Habitat", "month", "level2Name")
_MISSING = "\x00missing"


def _first_rows(t: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(observation ids in first-appearance order, index of each row's observation)."""
    ids = np.asarray(t["observationID"])
    uniq, first, inv = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return uniq[order], rank[inv]


def knn_votes(train_vectors: np.ndarray, train_labels: np.ndarray, queries: np.ndarray,
              query_group: np.ndarray, n_groups: int, n_classes: int, k: int = 10,
              batch: int = 2048) -> np.ndarray:
    """Similarity-weighted votes (n_groups, n_classes) of the ``k`` nearest training images
    of every query row, summed over rows of the same group (observation)."""
    votes = np.zeros((n_groups, n_classes))
    for s in range(0, len(queries), batch):
        sims = queries[s:s + batch] @ train_vectors.T  # (b, n_train)
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        w = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0)
        np.add.at(votes, (np.repeat(query_group[s:s + batch], k), train_labels[top].ravel()),
                  w.ravel())
    return votes


def _strings(col) -> np.ndarray:
    filled = pc.fill_null(pc.cast(col, pa.string()), _MISSING)
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=str)


def _metadata_loglik(train: pa.Table, query: pa.Table, label_index: np.ndarray,
                     n_classes: int) -> np.ndarray:
    """Sum over metadata columns of log P(value | class), Laplace-smoothed; missing adds 0."""
    _, tr_group = _first_rows(train)
    _, first = np.unique(tr_group, return_index=True)
    qids, q_group = _first_rows(query)
    _, qfirst = np.unique(q_group, return_index=True)
    y = label_index[first]
    out = np.zeros((len(qfirst), n_classes))
    for col in METADATA_COLUMNS:
        tv, qv = _strings(train[col])[first], _strings(query[col])[qfirst]
        vocab, t_code = np.unique(tv, return_inverse=True)
        table = np.ones((n_classes, len(vocab)))
        np.add.at(table, (y, t_code), 1.0)
        table /= table.sum(1, keepdims=True)
        pos = np.searchsorted(vocab, qv)
        pos = np.minimum(pos, len(vocab) - 1)
        seen = (vocab[pos] == qv) & (qv != _MISSING)
        out[seen] += np.log(table[:, pos[seen]].T)
    return out


def knn_baseline(sim, k: int = 10, max_queries: int | None = None, seed: int = 0) -> dict:
    """Top-1 accuracy of kNN, of kNN × metadata likelihood (naive Bayes over the
    metadata columns) and of the metadata alone (likelihood × training prior), on known
    validation observations.

    ``max_queries`` caps the number of validation observations (a seeded sample) to keep
    full-scale measurements short.
    """
    roles = sim.image_roles
    tr = roles == "train"
    classes = np.unique(sim.image_class_ids[tr])
    label_index = np.searchsorted(classes, sim.image_class_ids[tr])
    val = sim.val
    obs_ids, group = _first_rows(val)
    cid = np.asarray(val["class_id"])
    _, first = np.unique(group, return_index=True)
    known_obs = np.flatnonzero(cid[first] != -1)
    if max_queries is not None and len(known_obs) > max_queries:
        known_obs = np.sort(np.random.default_rng(seed).choice(known_obs, max_queries,
                                                               replace=False))
    keep_rows = np.isin(group, known_obs)
    remap = np.full(len(first), -1)
    remap[known_obs] = np.arange(len(known_obs))
    val_vectors = sim.vectors[roles == "val"][keep_rows]
    votes = knn_votes(sim.vectors[tr], label_index, val_vectors, remap[group[keep_rows]],
                      len(known_obs), len(classes), k=k)
    truth = np.searchsorted(classes, cid[first][known_obs])
    knn_pred = votes.argmax(1)
    share = (votes + 1e-3) / (votes + 1e-3).sum(1, keepdims=True)
    meta = _metadata_loglik(sim.train, val.take(np.flatnonzero(keep_rows)),
                            np.searchsorted(classes, np.asarray(sim.train["class_id"])),
                            len(classes))
    meta_pred = (np.log(share) + meta).argmax(1)
    train_labels = np.searchsorted(classes, np.asarray(sim.train["class_id"]))
    _, tr_group = _first_rows(sim.train)
    _, tr_first = np.unique(tr_group, return_index=True)
    prior = np.bincount(train_labels[tr_first], minlength=len(classes)) + 1.0
    alone = (np.log(prior / prior.sum()) + meta).argmax(1)
    return {"observations": len(known_obs), "k": k,
            "knn_top1": float(np.mean(knn_pred == truth)),
            "knn_metadata_top1": float(np.mean(meta_pred == truth)),
            "metadata_top1": float(np.mean(alone == truth))}

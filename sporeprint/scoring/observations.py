"""Per-observation inputs of a decision: the ensemble's probabilities averaged over
an observation's images, and its query vector for the kNN unknown score."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

from heads.classifier import Ensemble


@dataclass
class ObservationScores:
    """Everything the decision needs from the heads, one row per observation."""

    observation_ids: np.ndarray  # (n,)
    log_probs: np.ndarray  # (n, C) log of the ensemble's mean image probabilities
    queries: np.ndarray  # (n, d) normalised mean image vector


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class ObservationMeans:
    """Per-observation means of image rows, one sparse product per array: the same
    arithmetic as :func:`heads.inference.aggregate_by_observation` (observations in
    order of first appearance), with the grouping worked out once for every array."""

    def __init__(self, observation_ids: np.ndarray):
        obs = np.asarray(observation_ids)
        uniq, first, inv = np.unique(obs, return_index=True, return_inverse=True)
        counts = np.bincount(inv, minlength=len(uniq))
        self._weights = 1.0 / counts[inv]
        self._where = (inv, np.arange(len(obs)))
        self._shape = (len(uniq), len(obs))
        self._order = np.argsort(first, kind="stable")
        self._matrices: dict = {}
        self.ids = uniq[self._order]

    def __call__(self, values: np.ndarray) -> np.ndarray:
        dtype = values.dtype if values.dtype in (np.float32, np.float64) else np.float64
        avg = self._matrices.get(np.dtype(dtype))
        if avg is None:
            avg = csr_matrix((self._weights.astype(dtype), self._where), shape=self._shape)
            self._matrices[np.dtype(dtype)] = avg
        return (avg @ values.astype(dtype, copy=False))[self._order].astype(dtype, copy=False)


def observation_scores(ensemble: Ensemble, rows) -> ObservationScores:
    """``rows``: image rows with ``embeddings``, ``metadata`` and ``observation_ids``."""
    probs = ensemble.predict_proba(rows.embeddings, rows.metadata)
    means = ObservationMeans(rows.observation_ids)
    obs, mean = means.ids, means(probs)
    qmean = means(normalise(rows.embeddings))
    if ensemble.classes_[-1] == -1:  # explicit "unknown" output: fold into the open-set score
        mean = mean[:, :-1] / np.maximum(mean[:, :-1].sum(1, keepdims=True), 1e-12)
    return ObservationScores(np.asarray(obs, dtype=np.int64), np.log(np.maximum(mean, 1e-12)),
                             normalise(qmean).astype(np.float32))


def uncertainty(probs: np.ndarray) -> np.ndarray:
    """Head uncertainty fed to the unknown detector: 1 - max probability."""
    return 1.0 - probs.max(axis=1)

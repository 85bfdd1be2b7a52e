"""Per-observation inputs of a decision: the ensemble's probabilities averaged over
an observation's images, and its query vector for the kNN unknown score."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heads.classifier import Ensemble
from heads.inference import ObservationMeans


@dataclass
class ObservationScores:
    """Everything the decision needs from the heads, one row per observation."""

    observation_ids: np.ndarray  # (n,)
    log_probs: np.ndarray  # (n, C) log of the ensemble's mean image probabilities
    queries: np.ndarray  # (n, d) normalised mean image vector


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


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

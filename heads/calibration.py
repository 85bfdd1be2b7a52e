"""Probability calibration fitted on validation data.

The Track 3 decision rule compares a poison probability with a threshold of a
percent or two, so the probabilities must mean what they say.

- ``TemperatureScaler``: one temperature ``T`` for the species logits,
  ``softmax(z / T)``, fitted by minimising the validation negative log-likelihood.
- ``PlattScaler``: a one-feature logistic regression turning a score (the
  open-set detector's unknown score) into a probability.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(size=(500, 5)) * 4
    >>> labels = logits.argmax(1)
    >>> TemperatureScaler().fit(logits, labels).temperature_ < 1.0   # over-cautious logits get sharpened
    True
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


class TemperatureScaler:
    """``fit(logits, labels)`` then ``transform(logits) -> probabilities``.

    Log-probabilities of an ensemble average work as logits too.
    """

    def __init__(self, min_temperature: float = 0.05, max_temperature: float = 20.0):
        self.min_temperature = min_temperature
        self.max_temperature = max_temperature

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> TemperatureScaler:
        logits = np.asarray(logits, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.int64)
        if logits.ndim != 2 or labels.shape != (len(logits),):
            raise ValueError(f"logits must be (n, C) and labels (n,), got {logits.shape}, {labels.shape}")
        keep = (labels >= 0) & (labels < logits.shape[1])  # unknowns have no column
        if keep.sum() == 0:
            raise ValueError("no labelled rows with a known class to fit the temperature on")
        z, y = logits[keep], labels[keep]
        rows = np.arange(len(y))

        def nll(log_t: float) -> float:
            return -float(np.mean(_log_softmax(z / np.exp(log_t))[rows, y]))

        res = minimize_scalar(nll, bounds=(np.log(self.min_temperature), np.log(self.max_temperature)),
                              method="bounded", options={"xatol": 1e-4})
        self.temperature_ = float(np.exp(res.x))
        self.nll_before_ = nll(0.0)
        self.nll_after_ = float(res.fun)
        return self

    def transform(self, logits: np.ndarray) -> np.ndarray:
        if not hasattr(self, "temperature_"):
            raise RuntimeError("TemperatureScaler is not fitted yet; call fit first")
        return np.exp(_log_softmax(np.asarray(logits, dtype=np.float64) / self.temperature_))


class PlattScaler:
    """``P(positive | score) = sigmoid(a·score + b)``, fitted by maximum likelihood."""

    def fit(self, scores: np.ndarray, positive: np.ndarray) -> PlattScaler:
        from sklearn.linear_model import LogisticRegression

        s = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
        y = np.asarray(positive, dtype=bool)
        if len(np.unique(y)) < 2:
            raise ValueError("PlattScaler needs both positive and negative examples")
        lr = LogisticRegression(C=1e4).fit(s, y)
        self.coef_ = float(lr.coef_[0, 0])
        self.intercept_ = float(lr.intercept_[0])
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise RuntimeError("PlattScaler is not fitted yet; call fit first")
        z = self.coef_ * np.asarray(scores, dtype=np.float64) + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))

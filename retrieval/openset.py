"""``OpenSetDetector``: is this observation a species the training set never saw?

The kNN score of a vector is its cosine distance (1 - similarity) to its k-th
nearest training vector: far from every known species means likely unknown.
A caller may fuse in a head-uncertainty score (entropy, or 1 - max
probability; higher = less sure). Both scores are standardised with the mean
and standard deviation seen in :meth:`OpenSetDetector.calibrate`, then
averaged with weight ``fusion_weight`` on the uncertainty.

All scores here are *unknown-ness*: higher means more likely unknown (the
opposite sign of scikit-learn's ``score_samples`` for outlier detectors).
"""

from __future__ import annotations

import logging

import numpy as np

from .errors import InvalidVectorsError, NotFittedError, RetrievalError
from .index import VectorIndex

logger = logging.getLogger(__name__)

TARGETS = ("track1", "known_recall")
STATE_VERSION = 1


class OpenSetDetector:
    """kNN distance (+ optional head uncertainty) detector of unknown species.

    Example:
        >>> det = OpenSetDetector(k=5).fit(train_vectors)
        >>> det.calibrate(val_vectors, val_is_unknown)          # Track-1 threshold
        >>> det.predict(test_vectors)                           # bool (n,), True = unknown
        >>> det.evaluate(test_vectors, test_is_unknown)         # {'auroc': ..., 'fpr_at_95_tpr': ...}
    """

    def __init__(self, k: int = 10, kind: str = "exact", fusion_weight: float = 0.5, **index_params):
        self.k = k
        self.kind = kind
        self.fusion_weight = fusion_weight
        self.index_params = index_params

    # ----------------------------------------------------------------- fitting
    def fit(self, train_vectors: np.ndarray) -> OpenSetDetector:
        """Index the training vectors (float32 (n, d)) of the known species."""
        x = np.asarray(train_vectors)
        if x.ndim != 2 or x.shape[0] == 0:
            raise InvalidVectorsError(f"train_vectors must be a non-empty (n, d) array, got shape {x.shape}")
        if not isinstance(self.k, (int, np.integer)) or not 1 <= self.k <= x.shape[0]:
            raise RetrievalError(f"k={self.k!r} must be an integer in 1..{x.shape[0]} "
                                 "(the training set size)")
        if not 0.0 <= self.fusion_weight <= 1.0:
            raise RetrievalError(f"fusion_weight={self.fusion_weight!r} must lie in [0, 1]")
        self.index_ = VectorIndex(x.shape[1], kind=self.kind, **self.index_params)
        self.index_.add(np.arange(x.shape[0], dtype=np.int64), x)
        self.n_features_in_ = x.shape[1]
        for attr in ("threshold_", "knn_stats_", "uncertainty_stats_"):
            self.__dict__.pop(attr, None)
        return self

    def fit_index(self, index: VectorIndex) -> OpenSetDetector:
        """Use an existing index of the training vectors (shared, not copied), e.g. the
        one that also answers look-alike queries."""
        if len(index) == 0:
            raise InvalidVectorsError("the index is empty; add the training vectors first")
        if not isinstance(self.k, (int, np.integer)) or not 1 <= self.k <= len(index):
            raise RetrievalError(f"k={self.k!r} must be an integer in 1..{len(index)} (the index size)")
        self.index_ = index
        self.n_features_in_ = index.dim
        for attr in ("threshold_", "knn_stats_", "uncertainty_stats_"):
            self.__dict__.pop(attr, None)
        return self

    def knn_scores(self, X: np.ndarray) -> np.ndarray:
        """Cosine distance of each row to its k-th nearest training vector, float64 (n,)."""
        self._require("index_", "fit")
        D, _ = self.index_.search(X, self.k)
        return 1.0 - D[:, -1].astype(np.float64)

    def score_samples(self, X: np.ndarray, uncertainty: np.ndarray | None = None) -> np.ndarray:
        """Unknown-ness score per row (higher = more likely unknown).

        Without calibration, or when calibrated without uncertainty, this is the
        raw kNN score. When :meth:`calibrate` saw ``uncertainty``, it must be
        passed here too and the standardised scores are fused.
        """
        return self.fuse(self.knn_scores(X), uncertainty)

    def fuse(self, knn: np.ndarray, uncertainty: np.ndarray | None = None) -> np.ndarray:
        """:meth:`score_samples` from kNN scores the caller already has (e.g. from one
        search that also served the look-alike evidence): ``1 - similarity`` to the
        k-th nearest training vector, float (n,)."""
        knn = np.asarray(knn, dtype=np.float64)
        stats_u = getattr(self, "uncertainty_stats_", None)
        if stats_u is None:
            if uncertainty is not None:
                raise RetrievalError(
                    "uncertainty was passed but the detector was calibrated without it; "
                    "call calibrate(..., uncertainty=...) first or drop the argument"
                )
            return knn
        if uncertainty is None:
            raise RetrievalError(
                "this detector was calibrated with head uncertainty; pass uncertainty=... "
                "(same definition as in calibrate)"
            )
        u = _check_1d(uncertainty, knn.size, "uncertainty")
        z_knn = (knn - self.knn_stats_[0]) / self.knn_stats_[1]
        z_u = (u - stats_u[0]) / stats_u[1]
        return (1.0 - self.fusion_weight) * z_knn + self.fusion_weight * z_u

    def calibrate(self, X_val: np.ndarray, is_unknown: np.ndarray, uncertainty: np.ndarray | None = None,
                  known_correct: np.ndarray | None = None, target: str = "track1",
                  known_recall: float = 0.95) -> OpenSetDetector:
        """Choose ``threshold_`` on a validation set that contains unknowns.

        ``target="track1"`` (default) minimises the classification error with
        unknowns: an unknown flagged unknown is right, a known flagged unknown
        is wrong, and a known left alone is right only where ``known_correct``
        (bool per row: the classifier's species answer is right) says so; all
        True when omitted. ``target="known_recall"`` keeps ``known_recall`` of
        the known rows below the threshold. Sets ``val_error_`` (Track-1 error
        at the threshold) and ``val_error_never_`` (never predicting unknown).
        """
        if target not in TARGETS:
            raise RetrievalError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
        self._require("index_", "fit")
        self.__dict__.pop("uncertainty_stats_", None)
        knn = self.knn_scores(X_val)
        n = knn.size
        unknown = _check_1d(is_unknown, n, "is_unknown").astype(bool)
        correct = (np.ones(n, bool) if known_correct is None
                   else _check_1d(known_correct, n, "known_correct").astype(bool))
        self.knn_stats_ = _mean_std(knn)
        if uncertainty is not None:
            self.uncertainty_stats_ = _mean_std(_check_1d(uncertainty, n, "uncertainty"))
        scores = self.score_samples(X_val, uncertainty)

        if target == "known_recall":
            if not 0.0 < known_recall <= 1.0 or not (~unknown).any():
                raise RetrievalError(
                    f"known_recall={known_recall!r} must lie in (0, 1] and the validation set "
                    "needs known rows"
                )
            self.threshold_ = float(np.quantile(scores[~unknown], known_recall, method="higher"))
        else:
            self.threshold_ = _track1_threshold(scores, unknown, correct)
        flagged = scores > self.threshold_
        self.val_error_ = float(np.mean(np.where(flagged, ~unknown, unknown | ~correct)))
        self.val_error_never_ = float(np.mean(unknown | ~correct))
        logger.info("open-set threshold %.4f: Track-1 error %.4f (never-unknown %.4f)",
                    self.threshold_, self.val_error_, self.val_error_never_)
        return self

    # -------------------------------------------------------------- predicting
    def predict(self, X: np.ndarray, uncertainty: np.ndarray | None = None) -> np.ndarray:
        """Bool (n,): True where the row is predicted to be an unknown species."""
        self._require("threshold_", "calibrate")
        return self.score_samples(X, uncertainty) > self.threshold_

    def evaluate(self, X: np.ndarray, is_unknown: np.ndarray,
                 uncertainty: np.ndarray | None = None) -> dict[str, float]:
        """AUROC (unknown = positive) and FPR at 95% TPR.

        FPR at 95% TPR follows the open-set literature: the threshold keeps 95%
        of the *known* rows (TPR), and the FPR is the share of unknown rows
        wrongly accepted as known there.
        """
        scores = self.score_samples(X, uncertainty)
        unknown = _check_1d(is_unknown, scores.size, "is_unknown").astype(bool)
        if unknown.all() or not unknown.any():
            raise RetrievalError("evaluate needs both known and unknown rows in is_unknown")
        fpr, tpr = _roc_curve(unknown, scores)
        auroc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)  # trapezoid area
        fpr, tpr = _roc_curve(~unknown, -scores)  # positive = known, higher = more known
        return {"auroc": auroc, "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95, side="left")])}

    # ------------------------------------------------------------- persistence
    def get_state(self) -> dict:
        """Everything but the index, as a JSON-able dict, for :meth:`from_state`.

        Holds the settings (``k``, ``kind``, ``fusion_weight``, ``index_params``),
        ``n_features_in_`` once fitted and, once calibrated, ``threshold_``,
        ``knn_stats_``, ``uncertainty_stats_`` (None when calibrated without
        uncertainty), ``val_error_`` and ``val_error_never_``.
        """
        state: dict = {
            "format_version": STATE_VERSION,
            "k": int(self.k),
            "kind": self.kind,
            "fusion_weight": float(self.fusion_weight),
            "index_params": {key: _plain(v) for key, v in self.index_params.items()},
            "n_features_in": _plain(getattr(self, "n_features_in_", None)),
            "threshold": None,
            "knn_stats": None,
            "uncertainty_stats": None,
            "val_error": None,
            "val_error_never": None,
        }
        if hasattr(self, "threshold_"):
            state["threshold"] = float(self.threshold_)
            state["knn_stats"] = [float(v) for v in self.knn_stats_]
            stats_u = getattr(self, "uncertainty_stats_", None)
            state["uncertainty_stats"] = None if stats_u is None else [float(v) for v in stats_u]
            state["val_error"] = _plain(getattr(self, "val_error_", None))
            state["val_error_never"] = _plain(getattr(self, "val_error_never_", None))
        return state

    @classmethod
    def from_state(cls, state: dict, index: VectorIndex) -> OpenSetDetector:
        """A detector from :meth:`get_state` that searches ``index`` (shared, not
        copied, as in :meth:`fit_index`); ``index`` must hold the training vectors
        the state was fitted on."""
        if not isinstance(state, dict):
            raise RetrievalError("state must be a dict from OpenSetDetector.get_state(), got "
                                 f"{type(state).__name__}")
        missing = sorted({"k", "fusion_weight"} - set(state))
        if missing:
            raise RetrievalError(
                f"OpenSetDetector state lacks {missing}; save it again with OpenSetDetector.get_state()")
        version = state.get("format_version", STATE_VERSION)
        if version != STATE_VERSION:
            raise RetrievalError(
                f"OpenSetDetector state has format_version {version!r}, this sporeprint reads "
                f"{STATE_VERSION}; calibrate the detector again")
        det = cls(k=state["k"], kind=state.get("kind", "exact"),
                  fusion_weight=state["fusion_weight"], **dict(state.get("index_params") or {}))
        if not 0.0 <= float(det.fusion_weight) <= 1.0:
            raise RetrievalError(f"fusion_weight={det.fusion_weight!r} in the state must lie in [0, 1]")
        n_features = state.get("n_features_in")
        if n_features is not None and int(n_features) != index.dim:
            raise RetrievalError(
                f"the detector was fitted on {n_features}-d vectors but the index holds {index.dim}-d "
                "ones; pass the index of the embedding space it was fitted on")
        det.fit_index(index)
        if state.get("threshold") is not None:
            det.threshold_ = float(state["threshold"])
            det.knn_stats_ = _stats(state.get("knn_stats"), "knn_stats")
            if state.get("uncertainty_stats") is not None:
                det.uncertainty_stats_ = _stats(state["uncertainty_stats"], "uncertainty_stats")
            for key in ("val_error", "val_error_never"):
                if state.get(key) is not None:
                    setattr(det, key + "_", float(state[key]))
        return det

    def _require(self, attr: str, method: str) -> None:
        if not hasattr(self, attr):
            done = {"fit": "fitted", "calibrate": "calibrated"}[method]
            raise NotFittedError(f"this OpenSetDetector is not {done} yet; call {method}(...) first")


def _roc_curve(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` at every distinct score used as a threshold, highest first, from
    ``(0, 0)`` to ``(1, 1)``; points collinear with their neighbours are left out, as
    scikit-learn's ``roc_curve`` leaves them out, so the curve and its thresholds match
    it point for point. ``positive`` needs both classes."""
    order = np.argsort(scores, kind="mergesort")[::-1]
    s, y = scores[order], positive[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each distinct score
    tps = np.cumsum(y)[last]
    fps = 1.0 + last - tps
    if len(fps) > 2:
        corner = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        fps, tps = fps[corner], tps[corner]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    return fps / fps[-1], tps / tps[-1]


def _track1_threshold(scores: np.ndarray, unknown: np.ndarray, correct: np.ndarray) -> float:
    """Threshold minimising errors when ``score > threshold`` means 'unknown'."""
    order = np.argsort(-scores, kind="stable")
    s, u, c = scores[order], unknown[order], correct[order]
    # Flagging the top j rows: errors = knowns among them + unknowns/wrong knowns below.
    cost_flagged = np.concatenate([[0], np.cumsum(~u)])
    cost_rest = np.concatenate([np.cumsum((u | ~c)[::-1])[::-1], [0]])
    errors = cost_flagged + cost_rest  # index j = number flagged
    valid = np.concatenate([[True], s[:-1] > s[1:], [True]])  # cut only between distinct scores
    errors = np.where(valid, errors, np.iinfo(np.int64).max)
    j = int(np.argmin(errors))  # first minimum: fewest flagged among ties
    if j == 0:
        return float(np.inf) if s.size == 0 else float(s[0])
    if j == s.size:
        return float(np.nextafter(s[-1], -np.inf))
    return float((s[j - 1] + s[j]) / 2)


def _stats(value, name: str) -> tuple[float, float]:
    """(mean, std) from a saved state, checked."""
    try:
        mean, std = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise RetrievalError(
            f"{name}={value!r} in the OpenSetDetector state must be [mean, std]; calibrate again") from exc
    if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
        raise RetrievalError(f"{name}={value!r} in the OpenSetDetector state must be finite with std > 0")
    return mean, std


def _plain(value):
    """numpy scalars as Python ones, so the state is JSON-able."""
    return value.item() if isinstance(value, np.generic) else value


def _mean_std(x: np.ndarray) -> tuple[float, float]:
    std = float(np.std(x))
    return float(np.mean(x)), std if std > 0 else 1.0


def _check_1d(a, n: int, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.shape != (n,):
        raise InvalidVectorsError(f"{name} has shape {arr.shape}, expected ({n},): one value per row")
    if arr.dtype != bool and not np.isfinite(arr.astype(np.float64)).all():
        raise InvalidVectorsError(f"{name} holds NaN or inf values; fill or drop those rows")
    return arr.astype(np.float64) if arr.dtype != bool else arr

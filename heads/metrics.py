"""The official FungiCLEF scores, per observation.

Definitions (DESIGN §5): unknown species are ``-1`` in truth and prediction;
a class is poisonous when it is in the official list, so ``-1`` counts as
edible. Scores are computed over observations: when several rows share an
observation id only the first one counts, as in the official scoring.

Example:
    >>> s = fungiclef_scores([1, 2, -1], [1, -1, 2], poisonous_class_ids=[2])
    >>> round(s["track2"], 3)   # one poisonous observation answered "unknown"
    33.667
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

UNKNOWN = -1

# Track 2 costs: a poisonous mushroom called edible is a hundred times worse
# than an edible one called poisonous.
COST_POISONOUS_AS_EDIBLE = 100.0
COST_EDIBLE_AS_POISONOUS = 1.0
# Track 4 costs.
COST_UNKNOWN_AS_SPECIES = 10.0
COST_SPECIES_AS_UNKNOWN = 0.1


def first_per_observation(
    observation_ids: Iterable[int], *arrays: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Keep the first row of each observation id, in order of first appearance."""
    obs = np.asarray(observation_ids)
    _, first = np.unique(obs, return_index=True)
    keep = np.sort(first)
    return (obs[keep], *(np.asarray(a)[keep] for a in arrays))


def macro_f1_score(y_true: Iterable[int], y_pred: Iterable[int]) -> float:
    """Unweighted mean over labels of the per-label F1 = 2·TP / (2·TP + FP + FN).

    The labels are those present in truth or prediction (``-1`` included), so no
    label has a zero denominator; this is scikit-learn's
    ``f1_score(y_true, y_pred, average="macro", zero_division=0)``.

    Example:
        >>> macro_f1_score([0, 0, 1], [0, 1, 1])   # F1 2/3 for each label
        0.6666666666666666
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have one length, got {len(y_true)} and {len(y_pred)}")
    if len(y_true) == 0:
        return 0.0
    labels, codes = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    t, p = codes[:len(y_true)], codes[len(y_true):]
    n = len(labels)
    tp = np.bincount(t[t == p], minlength=n)
    true_sum = np.bincount(t, minlength=n)
    pred_sum = np.bincount(p, minlength=n)
    return float(np.mean(2.0 * tp / (true_sum + pred_sum).astype(np.float64)))


def roc_auc_score(y_true: Iterable[bool], y_score: Iterable[float]) -> float:
    """Area under the ROC curve of ``y_score`` for the positives in ``y_true``.

    Computed from ranks (Mann–Whitney): the probability that a random positive
    scores above a random negative, a tie counting one half (average ranks), which is
    what the trapezoid area under scikit-learn's ``roc_curve`` gives. ``nan`` when
    ``y_true`` holds only one class, as scikit-learn returns.

    Example:
        >>> roc_auc_score([False, True, False, True], [0.1, 0.4, 0.4, 0.8])
        0.875
    """
    y = np.asarray(y_true).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true and y_score must have one length, got {len(y)} and {len(s)}")
    if np.isnan(s).any():
        raise ValueError("y_score contains NaN; drop those rows or fill them before scoring")
    classes = np.unique(y)
    if len(classes) != 2:
        return float("nan")
    pos = y == classes[1]
    n_pos = int(pos.sum())
    n_neg = len(y) - n_pos
    uniq, inv, counts = np.unique(s, return_inverse=True, return_counts=True)
    # average rank (1-based) of each distinct score: half-integers, exact in float64
    upper = np.cumsum(counts)
    mean_rank = upper - (counts - 1) / 2.0
    rank_sum = float(np.sum(mean_rank[inv.ravel()[pos]]))
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def fungiclef_scores(
    y_true: Iterable[int],
    y_pred: Iterable[int],
    poisonous_class_ids: Iterable[int],
    observation_ids: Iterable[int] | None = None,
) -> dict[str, float]:
    """Accuracy, macro F1 (×100) and Tracks 1–4 with the official definitions.

    ``y_true`` and ``y_pred`` are class ids with ``-1`` for unknown. When
    ``observation_ids`` is given, rows are reduced to the first one per
    observation before scoring.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-d arrays of one length, got shapes "
            f"{y_true.shape} and {y_pred.shape}"
        )
    if observation_ids is not None:
        obs = np.asarray(observation_ids)
        if obs.shape != y_true.shape:
            raise ValueError(
                f"observation_ids has shape {obs.shape}, expected {y_true.shape}"
            )
        _, y_true, y_pred = first_per_observation(obs, y_true, y_pred)
    n = len(y_true)
    if n == 0:
        raise ValueError("cannot score an empty prediction set")

    poison = np.asarray(sorted(set(int(c) for c in poisonous_class_ids)), dtype=np.int64)
    true_pois = np.isin(y_true, poison)
    pred_pois = np.isin(y_pred, poison)
    wrong = y_pred != y_true

    pois_as_edible = int(np.sum(true_pois & ~pred_pois))
    edible_as_pois = int(np.sum(~true_pois & pred_pois))
    unknown_as_species = int(np.sum((y_true == UNKNOWN) & (y_pred != UNKNOWN)))
    species_as_unknown = int(np.sum((y_true != UNKNOWN) & (y_pred == UNKNOWN)))
    other_errors = int(np.sum(wrong & (y_true != UNKNOWN) & (y_pred != UNKNOWN)))

    track1 = float(np.sum(wrong)) / n
    track2 = (COST_POISONOUS_AS_EDIBLE * pois_as_edible
              + COST_EDIBLE_AS_POISONOUS * edible_as_pois) / n
    track4 = (other_errors + COST_UNKNOWN_AS_SPECIES * unknown_as_species
              + COST_SPECIES_AS_UNKNOWN * species_as_unknown) / n
    macro_f1 = 100.0 * macro_f1_score(y_true, y_pred)
    return {
        "n": n,
        "accuracy": 1.0 - track1,
        "macro_f1": float(macro_f1),
        "track1": track1,
        "track2": track2,
        "track3": track1 + track2,
        "track4": track4,
        "poisonous_as_edible": pois_as_edible,
        "edible_as_poisonous": edible_as_pois,
        "poisonous_correct_flag": int(np.sum(true_pois & pred_pois)),
        "edible_correct_flag": int(np.sum(~true_pois & ~pred_pois)),
        "unknown_as_species": unknown_as_species,
        "species_as_unknown": species_as_unknown,
        "other_errors": other_errors,
    }


def topk_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label index is among the ``k`` highest scores.

    ``labels`` are column indices into ``probs``; rows with a negative label
    (not a column, e.g. unknown) count as misses.
    """
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    if probs.ndim != 2 or len(labels) != len(probs):
        raise ValueError(f"probs must be (n, C) and labels (n,), got {probs.shape}, {labels.shape}")
    if len(labels) == 0:
        return float("nan")
    k = min(k, probs.shape[1])
    top = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def poisonous_recall(y_true: np.ndarray, y_pred: np.ndarray,
                     poisonous_class_ids: Iterable[int]) -> float:
    """Share of truly poisonous rows whose predicted class is poisonous too."""
    poison = np.asarray(list(poisonous_class_ids))
    true_pois = np.isin(np.asarray(y_true), poison)
    if not true_pois.any():
        return float("nan")
    return float(np.mean(np.isin(np.asarray(y_pred)[true_pois], poison)))


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = 10
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Mean confidence, accuracy and count per equal-width confidence bin on [0, 1], and
    the expected calibration error (bin-size weighted mean of |accuracy - confidence|).

    Empty bins have confidence and accuracy 0 and count 0; a confidence of exactly 1
    falls in the last bin.

    Example:
        >>> conf, acc, count, ece = reliability_bins([0.9, 0.9, 0.2], [1, 0, 0], bins=5)
        >>> count.tolist(), round(ece, 3)
        ([0.0, 1.0, 0.0, 0.0, 2.0], 0.333)
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError(f"confidence and correct must be 1-d arrays of one length, got shapes "
                         f"{confidence.shape} and {correct.shape}")
    if bins < 1:
        raise ValueError(f"bins={bins} must be at least 1")
    at = np.clip((confidence * bins).astype(np.int64), 0, bins - 1)
    count = np.bincount(at, minlength=bins).astype(np.float64)
    conf = np.bincount(at, confidence, minlength=bins) / np.maximum(count, 1)
    acc = np.bincount(at, correct, minlength=bins) / np.maximum(count, 1)
    ece = float(np.sum(count * np.abs(acc - conf)) / max(count.sum(), 1))
    return conf, acc, count, ece


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (exact to float rounding)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    from math import lgamma, log

    i = np.arange(k + 1)
    log_terms = (lgamma(n + 1) - np.array([lgamma(x + 1) + lgamma(n - x + 1) for x in i])
                 + i * log(p) + (n - i) * log(1.0 - p))
    top = log_terms.max()
    return float(min(1.0, np.exp(top) * np.exp(log_terms - top).sum()))


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) two-sided ``level`` interval of a binomial share
    ``k / n``, by bisection on the binomial tails (numpy only; equal to the beta-quantile
    form to 1e-9); ``(nan, nan)`` when ``n`` is 0.

    >>> [round(x, 4) for x in clopper_pearson(4, 84)]
    [0.0131, 0.1175]
    """
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= k <= n:
        raise ValueError(f"k={k} is outside 0..n={n}")
    a = (1.0 - level) / 2

    def crossing(k_: int, target: float) -> float:  # the p where P(X <= k_; p) = target
        lo, hi = 0.0, 1.0  # P(X <= k_; p) falls as p grows
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if _binomial_cdf(k_, n, mid) > target else (lo, mid)
        return 0.5 * (lo + hi)

    lower = 0.0 if k == 0 else crossing(k - 1, 1.0 - a)  # P(X >= k; p) = a
    upper = 1.0 if k == n else crossing(k, a)  # P(X <= k; p) = a
    return lower, upper

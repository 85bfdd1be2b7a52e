"""Split conformal prediction sets: adaptive prediction sets (APS) over the options of
an observation, the known species and "a species not in the model".

The options are the columns of :func:`with_unknown`: the known-species probabilities
scaled by ``1 - P(unknown)``, then ``P(unknown)`` as the last column. The score of an
option ``y`` is the probability mass of every option at least as probable as ``y``
(``y`` included), plus an optional regulariser ``lam * max(0, rank(y) - k_reg)``
(RAPS; ``lam = 0``, the default, is plain APS). The set of an observation holds every
option whose score is at most the threshold, and its most probable option even when
that option's own mass is above the threshold (so no set is empty; this only adds
coverage); a set is a prefix of the options sorted by probability.

The sets are **not randomised**: an option enters with its whole mass, so coverage
is at least the level (slightly more on average), never less. With ``n`` calibration
observations exchangeable with the new ones, the threshold is the
``ceil((n + 1) * coverage)``-th smallest calibration score; then the true option lies
in the set with probability at least ``coverage``, whatever the model's calibration.
That rank exists only for ``coverage <= n / (n + 1)``: a higher level cannot be
promised with ``n`` points, and :func:`threshold` refuses it.

Example:
    >>> import numpy as np
    >>> probs = with_unknown(np.array([[0.7, 0.2, 0.1]]), np.array([0.0]))
    >>> s = scores(probs, np.array([1]))           # option 1: 0.7 + 0.2
    >>> round(float(s[0]), 3)
    0.9
    >>> predict_sets(probs, 0.9).tolist()           # the unknown option has no mass
    [[True, True, False, False]]
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_COVERAGE = 0.90
DEFAULT_POISON_COVERAGE = 0.99


def with_unknown(species_probs: np.ndarray, unknown_prob: np.ndarray) -> np.ndarray:
    """(n, C + 1) joint probabilities: the (n, C) known-species probabilities (conditional
    on a known species) times ``1 - unknown_prob``, then ``unknown_prob``."""
    p = np.asarray(species_probs, dtype=np.float64)
    u = np.clip(np.asarray(unknown_prob, dtype=np.float64), 0.0, 1.0)
    if p.ndim != 2 or u.shape != (len(p),):
        raise ValueError(f"species_probs must be (n, C) and unknown_prob (n,), got shapes "
                         f"{p.shape} and {u.shape}")
    return np.concatenate([p * (1.0 - u)[:, None], u[:, None]], axis=1)


def option_index(labels: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
    """The column of :func:`with_unknown` of each true class id: its known class's
    column, or the last (unknown) one for ``-1`` and ids not in ``class_ids``."""
    labels = np.asarray(labels, dtype=np.int64)
    class_ids = np.asarray(class_ids, dtype=np.int64)
    order = np.argsort(class_ids)
    pos = np.clip(np.searchsorted(class_ids, labels, sorter=order), 0, len(class_ids) - 1)
    found = class_ids[order[pos]] == labels
    return np.where(found, order[pos], len(class_ids))


CHUNK = 1024  # rows scored at a time: (CHUNK, K) work arrays, not (n, K) ones


def _all_scores(probs: np.ndarray, lam: float, k_reg: int) -> np.ndarray:
    """(n, K) score of every option: the mass of the options at least as probable
    (tied options count together and share a score), plus the regulariser."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be (n, K), got shape {p.shape}")
    k = p.shape[1]
    order = np.argsort(-p, axis=1, kind="stable")
    sorted_p = np.take_along_axis(p, order, 1)
    cum = np.cumsum(sorted_p, axis=1)
    # each position's tie group ends at the first later position with another value
    cols = np.broadcast_to(np.arange(k), p.shape)
    is_end = np.ones(p.shape, dtype=bool)
    is_end[:, :-1] = sorted_p[:, :-1] != sorted_p[:, 1:]
    end = np.minimum.accumulate(np.where(is_end, cols, k)[:, ::-1], axis=1)[:, ::-1]
    rank = np.arange(1, k + 1, dtype=np.float64)
    sorted_scores = np.take_along_axis(cum, end, 1) + lam * np.maximum(0.0, rank - k_reg)
    out = np.empty_like(sorted_scores)
    np.put_along_axis(out, order, sorted_scores, 1)
    return out


def scores(probs: np.ndarray, labels: np.ndarray, lam: float = 0.0, k_reg: int = 0
           ) -> np.ndarray:
    """(n,) conformity scores of the true options ``labels`` (column indices of ``probs``)."""
    labels = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs)
    if labels.shape != (len(p),) or (len(labels) and (labels.min() < 0
                                                      or labels.max() >= p.shape[1])):
        raise ValueError(f"labels must be ({len(p)},) column indices in 0..{p.shape[1] - 1}")
    out = np.empty(len(p))
    for i in range(0, len(p), CHUNK):
        block = _all_scores(p[i:i + CHUNK], lam, k_reg)
        out[i:i + CHUNK] = np.take_along_axis(block, labels[i:i + CHUNK, None], 1)[:, 0]
    return out


def max_coverage(n: int) -> float:
    """The highest level ``n`` calibration observations can promise: ``n / (n + 1)``."""
    return n / (n + 1) if n > 0 else 0.0


def threshold(calibration_scores: np.ndarray, coverage: float) -> float:
    """The finite-sample threshold: the ``ceil((n + 1) * coverage)``-th smallest score.

    Raises ``ValueError`` for a level outside (0, 1) or above ``n / (n + 1)``."""
    s = np.sort(np.asarray(calibration_scores, dtype=np.float64))
    n = len(s)
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage {coverage!r} must be between 0 and 1 (e.g. 0.9)")
    k = math.ceil((n + 1) * coverage - 1e-9)
    if k > n:
        raise ValueError(f"coverage {coverage} cannot be promised with {n} calibration "
                         f"observations (at most {max_coverage(n):.4f} = n/(n+1)); lower it "
                         "or calibrate on more observations")
    return float(s[k - 1])


def fit(probs: np.ndarray, labels: np.ndarray, coverage: float, lam: float = 0.0,
        k_reg: int = 0) -> float:
    """The threshold of ``coverage`` from calibration ``probs`` (n, K) and true columns."""
    return threshold(scores(probs, labels, lam, k_reg), coverage)


def predict_sets(probs: np.ndarray, threshold_: float, lam: float = 0.0, k_reg: int = 0,
                 keep_top: bool = True) -> np.ndarray:
    """(n, K) bool: the options in each observation's set. ``keep_top``: the most
    probable option is always in, so no set is empty (this only adds coverage, on the
    sure observations whose top option alone has more mass than the threshold)."""
    p = np.asarray(probs, dtype=np.float64)
    n, k = p.shape
    # An option of probability q has at most k * q mass below it, so a score of at least
    # 1 - k * q: options with k * q < 1 - threshold cannot be in (half that, for rounding).
    # Every option at least as probable as a candidate is one, so the candidates' scores
    # need only the candidates: sort those, not the whole row.
    floor = 0.5 * (1.0 - threshold_) / k
    inside = np.zeros(p.shape, dtype=bool)
    for i in range(0, n, CHUNK):
        block = p[i:i + CHUNK]
        cand = block > floor
        m = int(cand.sum(1).max()) if len(block) else 0
        if m == 0:
            continue
        if m >= k:
            inside[i:i + CHUNK] = _all_scores(block, lam, k_reg) <= threshold_ + 1e-12
            continue
        top = np.argpartition(-block, m - 1, axis=1)[:, :m]  # every candidate, and fillers
        sub = np.take_along_axis(block, top, 1)
        ok = (_all_scores(sub, lam, k_reg) <= threshold_ + 1e-12) & (sub > floor)
        np.put_along_axis(inside[i:i + CHUNK], top, ok, 1)
    if keep_top and len(p):
        inside[np.arange(len(p)), p.argmax(axis=1)] = True
    return inside


def coverage_interval(level: float, draws: int, z: float = 3.0) -> tuple[float, float]:
    """The range of empirical coverage over ``draws`` test points that a level
    promises, ``z`` binomial standard deviations either side."""
    sd = math.sqrt(level * (1.0 - level) / draws)
    return level - z * sd, level + z * sd

"""Summaries over seeds and paired-bootstrap intervals for the benchmark tables.

A variant's score on one seed is computed from per-observation predictions
(``y_true``, ``y_pred``, class ids with ``-1`` for unknown). To compare variant
A against variant B:

- per seed, the test observations are resampled with replacement, and *the same*
  resampled observations score both variants (paired), giving one difference
  ``m(A) - m(B)`` per seed;
- the pooled difference of a bootstrap replicate is the mean of the per-seed
  differences (each seed resampled independently, every seed weighted equally);
- the point estimate ``d`` is the mean over seeds of the differences on the full
  test sets; the 95% interval is the 2.5th to 97.5th percentile of the pooled
  replicate differences, shifted by their bias ``mean(replicates) - d`` so that it
  is centred where the data put the difference. For accuracy and the Track
  scores (means over observations) the shift is ~0 and this is the plain
  percentile interval; macro F1 of a resample with repeated observations is
  biased (classes drop out of the resample), and the shift removes that bias
  instead of reporting it as part of the interval.

So the interval covers the test-set sampling noise of each seed and, through the
seeds, the variation of simulation and training; it does not treat the seeds as
a population (with 5 seeds a t-interval over seeds would be very wide).

Example:
    >>> import numpy as np
    >>> y = np.array([0, 1, 2, 3] * 25)
    >>> runs = [{"y": y, "a": y, "b": np.where(np.arange(100) < 30, 9, y)}]
    >>> lo, hi = paired_interval([(r["y"], r["a"], r["b"]) for r in runs], "accuracy",
    ...                          reps=200)[1:]
    >>> lo > 0.15 and hi < 0.45
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

UNKNOWN = -1
COST_POISONOUS_AS_EDIBLE = 100.0
COST_EDIBLE_AS_POISONOUS = 1.0
METRICS = ("accuracy", "macro_f1", "track1", "track2", "track3", "poisonous_as_edible")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro F1 ×100 over the labels present in truth or prediction (as scikit-learn's
    ``f1_score(average="macro", zero_division=0)``), in one pass of bincounts."""
    labels, inv = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    t, p = inv[: len(y_true)], inv[len(y_true):]
    k = len(labels)
    hit = t == p
    tp = np.bincount(t[hit], minlength=k)
    n_true = np.bincount(t, minlength=k)
    n_pred = np.bincount(p, minlength=k)
    denom = n_true + n_pred
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(100.0 * f1.mean())


def metric(name: str, y_true: np.ndarray, y_pred: np.ndarray,
           poisonous: np.ndarray) -> float:
    """One official score (``heads.metrics.fungiclef_scores`` definitions) of rows that
    are already one per observation; ``poisonous_as_edible`` is a rate per 1000."""
    if name == "macro_f1":
        return macro_f1(y_true, y_pred)
    wrong = y_true != y_pred
    if name == "accuracy":
        return float(1.0 - wrong.mean())
    if name == "track1":
        return float(wrong.mean())
    tp, pp = np.isin(y_true, poisonous), np.isin(y_pred, poisonous)
    if name == "poisonous_as_edible":
        return float(1000.0 * (tp & ~pp).mean())
    t2 = float((COST_POISONOUS_AS_EDIBLE * (tp & ~pp)
                + COST_EDIBLE_AS_POISONOUS * (~tp & pp)).mean())
    if name == "track2":
        return t2
    if name == "track3":
        return float(wrong.mean()) + t2
    raise ValueError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")


def paired_interval(pairs: Sequence[tuple], name: str, poisonous=(), reps: int = 1000,
                    seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean difference, low, high)`` of ``m(A) - m(B)`` pooled over seeds.

    ``pairs``: one ``(y_true, pred_a, pred_b)`` per seed, or ``(y_true, pred_a, pred_b,
    poisonous)`` when each seed has its own poisonous class list (see the module doc).
    """
    def diff(pair):
        y, a, b = (np.asarray(v) for v in pair[:3])
        pois = np.asarray(pair[3] if len(pair) > 3 else poisonous)
        return len(y), lambda i: metric(name, y[i], a[i], pois) - metric(name, y[i], b[i], pois)

    return paired_bootstrap([diff(p) for p in pairs], reps=reps, seed=seed, level=level)


def paired_bootstrap(per_seed: Sequence[tuple[int, Callable[[np.ndarray], float]]],
                     reps: int = 1000, seed: int = 0, level: float = 0.95
                     ) -> tuple[float, float, float]:
    """The interval of the module doc for any paired statistic: ``per_seed`` holds one
    ``(n, diff)`` per seed, ``diff(idx)`` the difference A - B computed on the test
    observations ``idx`` (an index array into that seed's n observations, the same rows
    for both variants). Returns ``(mean difference, low, high)``.

    >>> a, b = np.arange(50.0), np.arange(50.0) - 1.0
    >>> paired_bootstrap([(50, lambda i: float(a[i].mean() - b[i].mean()))], reps=50)
    (1.0, 1.0, 1.0)
    """
    rng = np.random.default_rng(seed)
    point, boot = [], np.zeros(reps)
    for n, diff in per_seed:
        point.append(float(diff(np.arange(n))))
        for r in range(reps):
            boot[r] += diff(rng.integers(0, n, n))
    boot /= len(per_seed)
    tail = 100 * (1 - level) / 2
    q_lo, q_hi = np.percentile(boot, [tail, 100 - tail])
    d = float(np.mean(point))
    bias = float(boot.mean()) - d
    return d, float(q_lo - bias), float(q_hi - bias)


def nll(p_true: np.ndarray) -> float:
    """Mean negative log-likelihood of the probabilities given to the true answers."""
    return float(-np.mean(np.log(np.clip(np.asarray(p_true, dtype=np.float64), 1e-12, 1.0))))


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: the count-weighted mean |accuracy - confidence| over
    equal-width confidence bins.

    >>> ece(np.array([0.9, 0.9, 0.6, 0.6]), np.array([True, True, True, False]), bins=10)
    0.1
    """
    c = np.asarray(confidence, dtype=np.float64)
    at = np.clip((c * bins).astype(int), 0, bins - 1)
    count = np.bincount(at, minlength=bins)
    gap = np.abs(np.bincount(at, np.asarray(correct, np.float64), minlength=bins)
                 - np.bincount(at, c, minlength=bins))
    return float(round(gap.sum() / max(count.sum(), 1), 12))


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``positive`` (ties count half); NaN
    when one class is absent."""
    from scipy.stats import rankdata

    pos = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial proportion ``k / n`` (the beta
    quantiles ``B(a/2; k, n-k+1)`` and ``B(1-a/2; k+1, n-k)``, 0 / 1 at the ends), computed
    by ``heads.metrics.clopper_pearson``; here the counts and level are checked first.

    >>> [round(v, 4) for v in clopper_pearson(4, 84)]
    [0.0131, 0.1175]
    >>> [round(v, 4) for v in clopper_pearson(0, 84)]
    [0.0, 0.043]
    """
    from heads.metrics import clopper_pearson as exact

    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n \
            or not 0 <= k <= n or n < 1:
        raise ValueError(f"clopper_pearson needs whole numbers 0 <= k <= n and n >= 1, got "
                         f"k={k!r}, n={n!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r} must be between 0 and 1 (e.g. 0.95)")
    return exact(int(k), int(n), level)


def fmt_count(k: int, n: int, level: float = 0.95) -> str:
    """``4/84 = 4.8% [1.3, 11.7]``: a count with its Clopper-Pearson interval in percent."""
    lo, hi = clopper_pearson(k, n, level)
    return f"{k}/{n} = {100 * k / n:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def fmt_mean_sd(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
    m, s = mean_sd(np.asarray(values) * scale)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def fmt_interval(diff: tuple[float, float, float], scale: float = 1.0, digits: int = 1) -> str:
    """``+1.2 [+0.3, +2.1]``, starred when the interval excludes zero."""
    d, lo, hi = (scale * x for x in diff)
    star = " *" if lo > 0 or hi < 0 else ""
    return f"{d:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]{star}"

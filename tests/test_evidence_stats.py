"""The paired bootstrap and the fast metrics of benchmarks/stats.py."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from stats import fmt_interval, macro_f1, metric, paired_interval  # noqa: E402

from heads.metrics import fungiclef_scores  # noqa: E402


def test_metrics_match_the_official_scores():
    rng = np.random.default_rng(0)
    y = rng.integers(-1, 30, 400)
    p = np.where(rng.random(400) < 0.6, y, rng.integers(-1, 35, 400))
    official = fungiclef_scores(y, p, [3, 4, 5])
    assert macro_f1(y, p) == pytest.approx(official["macro_f1"], abs=1e-9)
    for name in ("accuracy", "track1", "track2", "track3"):
        assert metric(name, y, p, np.array([3, 4, 5])) == pytest.approx(official[name])
    assert metric("poisonous_as_edible", y, p, np.array([3, 4, 5])) == pytest.approx(
        1000 * official["poisonous_as_edible"] / 400)


def test_paired_interval_finds_a_real_difference_and_not_a_fake_one():
    rng = np.random.default_rng(1)
    pairs, nulls = [], []
    for _ in range(3):
        y = rng.integers(0, 20, 300)
        a = np.where(rng.random(300) < 0.8, y, 99)
        b = np.where(rng.random(300) < 0.7, y, 99)  # 10 points worse
        pairs.append((y, a, b))
        nulls.append((y, a, a[rng.permutation(300)]))  # same rate, other rows
    d, lo, hi = paired_interval(pairs, "accuracy", reps=300)
    assert 0.05 < d < 0.15 and lo > 0 and hi > d
    assert "*" in fmt_interval((d, lo, hi), 100)
    d, lo, hi = paired_interval([(y, a, a) for y, a, _ in pairs], "macro_f1", reps=50)
    assert d == lo == hi == 0  # identical predictions: no difference at all
    with pytest.raises(ValueError, match="unknown metric"):
        metric("auc", y, a, np.array([]))

"""The paired bootstrap and the fast metrics of benchmarks/stats.py."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from stats import clopper_pearson, fmt_count, fmt_interval, macro_f1, metric, paired_interval  # noqa: E402

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


def test_clopper_pearson_matches_known_values():
    # R: binom.test(5, 10)$conf.int = 0.187086 0.812914; binom.test(4, 84) = 0.01313 0.11746
    assert clopper_pearson(5, 10) == pytest.approx((0.187086, 0.812914), abs=1e-6)
    assert clopper_pearson(4, 84) == pytest.approx((0.013125, 0.117457), abs=1e-6)
    # k = 0 and k = n have closed forms: 1 - (a/2)^(1/n) and its mirror
    assert clopper_pearson(0, 84) == pytest.approx((0.0, 1 - 0.025 ** (1 / 84)), abs=1e-12)
    assert clopper_pearson(84, 84) == pytest.approx((0.025 ** (1 / 84), 1.0), abs=1e-12)
    lo90, hi90 = clopper_pearson(5, 10, level=0.90)
    assert 0.187086 < lo90 < 0.5 < hi90 < 0.812914
    assert fmt_count(4, 84) == "4/84 = 4.8% [1.3, 11.7]"


@pytest.mark.parametrize("k, n, level", [(5, 4, 0.95), (-1, 4, 0.95), (1, 0, 0.95), (1.5, 4, 0.95),
                                         (1, 4, 1.0)])
def test_clopper_pearson_refuses_impossible_counts(k, n, level):
    with pytest.raises(ValueError, match="clopper_pearson|level"):
        clopper_pearson(k, n, level)


def test_decision_analysis_pools_poison_misses_and_refuses_a_claim_under_100():
    from decision_analysis import MIN_POISONOUS, fmt_misses, poison_misses

    pois = np.array([3, 4])
    # seed 1: 50 poisonous observations, 2 answered edible, 1 unknown; seed 2: 40, 1 missed
    y1 = np.array([3] * 50 + [7] * 50)
    p1 = y1.copy()
    p1[:2], p1[2] = 7, -1
    p1[50:55] = 4  # five edible observations called poisonous
    y2 = np.array([4] * 40 + [8] * 10)
    p2 = y2.copy()
    p2[0] = 8
    k, n, called, total = poison_misses([(y1, p1, pois), (y2, p2, pois)])
    assert (k, n, called, total) == (4, 90, 47 + 5 + 39, 150)
    assert MIN_POISONOUS == 100
    assert fmt_misses(4, 90) == "4/90 (too few to claim: 90 < 100 poisonous test observations)"
    assert fmt_misses(4, 120).startswith("4/120 = 3.3% [") and "too few" not in fmt_misses(4, 120)

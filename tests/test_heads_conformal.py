"""Split conformal sets (heads/conformal.py): coverage at the level on exchangeable data,
calibrated or not, smaller sets where the model is sure, and the finite-sample limit."""

from __future__ import annotations

import numpy as np
import pytest

from heads import conformal


def _dirichlet_probs(rng, n: int, k: int, sharpness: np.ndarray) -> np.ndarray:
    logits = rng.normal(size=(n, k)) * sharpness[:, None]
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def _draw(rng, probs: np.ndarray) -> np.ndarray:
    u = rng.random(len(probs))[:, None]
    return np.minimum((probs.cumsum(1) < u).sum(1), probs.shape[1] - 1)


def _coverage(probs, labels, model_probs, level, n_cal, lam=0.0, k_reg=0):
    """Coverage of the score rule alone (within the binomial interval of the level) and
    of the sets scoring gives (the top option kept: never less), and those sets."""
    cal, test = slice(0, n_cal), slice(n_cal, None)
    t = conformal.fit(model_probs[cal], labels[cal], level, lam, k_reg)
    rows = np.arange(len(labels) - n_cal)
    bare = conformal.predict_sets(model_probs[test], t, lam, k_reg, keep_top=False)
    sets = conformal.predict_sets(model_probs[test], t, lam, k_reg)
    covered = sets[rows, labels[test]].mean()
    assert covered >= bare[rows, labels[test]].mean()
    return bare[rows, labels[test]].mean(), sets


@pytest.mark.parametrize("lam", [0.0, 0.02])
def test_coverage_on_labels_drawn_from_the_probs(lam):
    rng = np.random.default_rng(0)
    n_cal, n_test, k, level = 2000, 20000, 30, 0.9
    probs = _dirichlet_probs(rng, n_cal + n_test, k, rng.uniform(0.5, 4, n_cal + n_test))
    labels = _draw(rng, probs)
    covered, _ = _coverage(probs, labels, probs, level, n_cal, lam, k_reg=2)
    # the level holds up to the calibration slice's own randomness: the threshold's rank
    # moves by about sqrt(n_cal * level * (1 - level)) scores, 1/n_cal each
    lo, _ = conformal.coverage_interval(level, n_cal)
    _, hi = conformal.coverage_interval(level + 1 / n_cal, n_cal)
    assert lo <= covered <= hi


def test_coverage_holds_for_a_miscalibrated_model():
    """An over-confident model (temperature 0.3) and a wrong one (the truth drawn from
    other probabilities): the sets still cover at the level; only their size changes."""
    rng = np.random.default_rng(1)
    n_cal, n_test, k, level = 3000, 20000, 25, 0.8
    n = n_cal + n_test
    truth = _dirichlet_probs(rng, n, k, np.full(n, 2.0))
    labels = _draw(rng, truth)
    sure = truth ** (1 / 0.3)
    sure /= sure.sum(1, keepdims=True)
    noise = 0.5 * truth + 0.5 * _dirichlet_probs(rng, n, k, np.full(n, 2.0))
    lo, _ = conformal.coverage_interval(level, n_cal)
    _, hi = conformal.coverage_interval(level + 1 / n_cal, n_cal)
    sizes = {}
    for name, model in (("calibrated", truth), ("overconfident", sure), ("wrong", noise)):
        covered, sets = _coverage(truth, labels, model, level, n_cal)
        assert lo <= covered <= hi, name
        sizes[name] = sets.sum(1).mean()
    # the naive top-mass set of the over-confident model would under-cover; its conformal
    # threshold is raised instead, and the wrong model pays with larger sets
    naive = conformal.predict_sets(sure[n_cal:], level)
    assert naive[np.arange(n_test), labels[n_cal:]].mean() < level - 0.05
    assert sizes["wrong"] > sizes["calibrated"]


def test_sets_are_smaller_where_the_model_is_sure():
    rng = np.random.default_rng(2)
    n, k = 8000, 40
    sharp = np.r_[np.full(n // 2, 6.0), np.full(n // 2, 0.7)]
    probs = _dirichlet_probs(rng, n, k, sharp)
    labels = _draw(rng, probs)
    t = conformal.fit(probs[::2], labels[::2], 0.9)
    size = conformal.predict_sets(probs[1::2], t).sum(1)
    sure, unsure = size[: n // 4], size[n // 4:]
    assert sure.mean() * 3 < unsure.mean()
    assert (size >= 1).all()  # never empty: the most probable option is always in


def test_the_finite_sample_rule_refuses_levels_it_cannot_promise():
    s = np.linspace(0.1, 0.9, 9)  # n = 9: at most 0.9
    assert conformal.threshold(s, 0.9) == pytest.approx(0.9)  # ceil(10 * 0.9) = 9th
    assert conformal.threshold(s, 0.5) == pytest.approx(0.5)  # ceil(5) = 5th
    with pytest.raises(ValueError, match=r"0\.95 cannot be promised with 9 calibration.*n/\(n\+1\)"):
        conformal.threshold(s, 0.95)
    with pytest.raises(ValueError, match="between 0 and 1"):
        conformal.threshold(s, 1.0)
    assert conformal.max_coverage(9) == pytest.approx(0.9)


def test_unknown_option_and_ties():
    p = conformal.with_unknown(np.array([[0.5, 0.5, 0.0]]), np.array([0.2]))
    np.testing.assert_allclose(p, [[0.4, 0.4, 0.0, 0.2]])
    s = conformal.scores(p, np.array([0]))
    assert s[0] == pytest.approx(0.8)  # tied options share one score: both or neither
    assert conformal.predict_sets(p, 0.8).tolist() == [[True, True, False, False]]
    assert conformal.predict_sets(p, 0.79).tolist() == [[True, False, False, False]]
    idx = conformal.option_index(np.array([11, -1, 99, 10]), np.array([11, 10, 12]))
    assert idx.tolist() == [0, 3, 3, 1]


def test_average_coverage_over_many_small_calibration_draws_is_the_finite_sample_rank():
    """With n = 19 calibration points and level 0.8, the threshold is the 16th score, so
    the expected coverage is exactly 16/20 = 0.8 (continuous scores): averaged over many
    calibration draws it lies within the binomial interval of that value."""
    rng = np.random.default_rng(3)
    reps, n_cal, n_test, k = 400, 19, 50, 12
    hits = 0
    for _ in range(reps):
        probs = _dirichlet_probs(rng, n_cal + n_test, k, np.full(n_cal + n_test, 1.5))
        labels = _draw(rng, probs)
        covered, _ = _coverage(probs, labels, probs, 0.8, n_cal)
        hits += covered * n_test
    lo, hi = conformal.coverage_interval(16 / 20, reps * n_test, z=4.0)
    # draws within one repetition share a threshold: widen by the design effect
    spread = (hi - lo) / 2 * np.sqrt(n_test / 4)
    assert abs(hits / (reps * n_test) - 0.8) <= spread


@pytest.mark.parametrize("lam", [0.0, 0.05])
def test_sets_from_candidates_equal_the_full_score_rule(lam):
    """predict_sets sorts only the options that can be in; the sets equal the rule on
    every option's score, for sharp and flat rows, ties and zeros included."""
    rng = np.random.default_rng(4)
    n, k = 3000, 200
    probs = _dirichlet_probs(rng, n, k, rng.uniform(0.2, 8, n))
    probs[:50, 100:] = 0.0
    probs[:50] /= probs[:50].sum(1, keepdims=True)
    probs[50:60] = 1.0 / k  # all tied
    for t in (0.3, 0.9, 0.999, 1.2):
        full = conformal._all_scores(probs, lam, 3) <= t + 1e-12
        got = conformal.predict_sets(probs, t, lam, 3, keep_top=False)
        assert np.array_equal(got, full), t

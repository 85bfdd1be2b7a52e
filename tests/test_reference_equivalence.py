"""sporeprint's numpy metrics and fits against scikit-learn and scipy, which the runtime
install leaves out: macro F1 and ROC AUC equal to 1e-12, the ROC curve point for point,
logistic coefficients within 1e-5 of lbfgs at a tight tolerance (predictions within 1e-6),
the bounded minimiser's optimum within 1e-6, and per-observation means equal to the
sparse averaging product."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

sklearn_metrics = pytest.importorskip("sklearn.metrics")
linear_model = pytest.importorskip("sklearn.linear_model")
optimize = pytest.importorskip("scipy.optimize")
sparse = pytest.importorskip("scipy.sparse")

from heads.calibration import (  # noqa: E402
    PlattScaler,
    PoisonFusion,
    PoisonPrior,
    TemperatureScaler,
    fit_logistic,
    minimize_bounded,
)
from heads.inference import ObservationMeans  # noqa: E402
from heads.metrics import fungiclef_scores, macro_f1_score, roc_auc_score  # noqa: E402
from retrieval.openset import _roc_curve  # noqa: E402


def _sk_f1(t, p) -> float:
    return float(sklearn_metrics.f1_score(t, p, average="macro", zero_division=0))


def _sk_auc(y, s) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one class: scikit-learn warns and returns nan
        return float(sklearn_metrics.roc_auc_score(y, s))


# ------------------------------------------------------------------------------ macro F1
@pytest.mark.parametrize("seed", range(20))
def test_macro_f1_equals_scikit_learn_on_random_labels(seed):
    rng = np.random.default_rng(seed)
    n, classes = int(rng.integers(1, 400)), int(rng.integers(1, 40))
    t = rng.integers(-1, classes, n)
    p = np.where(rng.random(n) < 0.5, t, rng.integers(-1, classes + 5, n))  # labels not in truth
    assert abs(macro_f1_score(t, p) - _sk_f1(t, p)) <= 1e-12


@pytest.mark.parametrize("t, p", [
    ([3], [3]),  # one row, right
    ([3], [4]),  # one row, wrong: two labels, F1 0 each
    ([1, 1, 1], [1, 1, 1]),  # one class, perfect
    ([-1, -1, 2], [-1, -1, -1]),  # a class never predicted
    ([0, 1, 2], [5, 6, 7]),  # truth and prediction disjoint
    ([0, 0, 1, 1], [1, 1, 0, 0]),  # all wrong
    ([-1, 5, 5, 9], [5, 5, 5, 5]),  # one prediction for everything
])
def test_macro_f1_equals_scikit_learn_on_edge_cases(t, p):
    assert abs(macro_f1_score(t, p) - _sk_f1(t, p)) <= 1e-12


def test_fungiclef_macro_f1_is_scikit_learns_times_100():
    rng = np.random.default_rng(7)
    t = rng.integers(-1, 30, 500)
    p = np.where(rng.random(500) < 0.6, t, rng.integers(-1, 30, 500))
    s = fungiclef_scores(t, p, poisonous_class_ids=[1, 2, 3])
    assert abs(s["macro_f1"] - 100.0 * _sk_f1(t, p)) <= 1e-10


# ------------------------------------------------------------------------------ ROC AUC
@pytest.mark.parametrize("seed", range(20))
def test_roc_auc_equals_scikit_learn_with_and_without_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 500))
    y = rng.random(n) < rng.uniform(0.05, 0.95)
    y[:2] = [True, False]  # both classes
    s = rng.normal(size=n) + y
    if seed % 2:  # heavy ties
        s = np.round(s * 2) / 2
    assert abs(roc_auc_score(y, s) - _sk_auc(y, s)) <= 1e-12
    s32 = s.astype(np.float32)
    assert abs(roc_auc_score(y.astype(int), s32) - _sk_auc(y.astype(int), s32)) <= 1e-12


@pytest.mark.parametrize("y, s", [
    ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]),  # constant scores: 0.5
    ([0, 0, 1, 1], [1, 2, 3, 4]),  # separable: 1
    ([1, 1, 0, 0], [1, 2, 3, 4]),  # reversed: 0
    ([0, 1, 1, 1, 1], [3, 1, 2, 3, 4]),  # one negative, tied with a positive
    ([True, False], [0.0, 0.0]),
])
def test_roc_auc_equals_scikit_learn_on_edge_cases(y, s):
    assert abs(roc_auc_score(y, s) - _sk_auc(y, s)) <= 1e-12


def test_roc_auc_of_one_class_is_nan_like_scikit_learn():
    assert np.isnan(roc_auc_score([1, 1, 1], [0.1, 0.2, 0.3]))
    assert np.isnan(_sk_auc([1, 1, 1], [0.1, 0.2, 0.3]))


def test_roc_auc_refuses_nan_scores():
    with pytest.raises(ValueError, match="NaN"):
        roc_auc_score([0, 1], [0.1, np.nan])


@pytest.mark.parametrize("seed", range(12))
def test_open_set_roc_curve_matches_scikit_learn_point_for_point(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 400))
    y = rng.random(n) < 0.3
    y[:2] = [True, False]
    s = rng.normal(size=n) + y
    if seed % 3 == 0:
        s = np.round(s)  # ties
    if seed % 3 == 1:  # tie groups of one positive and one negative each: collinear points
        s = np.repeat(np.arange((n + 1) // 2, dtype=float), 2)[:n]
        y = np.tile([True, False], n)[:n]
    fpr, tpr = _roc_curve(y, s)
    ref_fpr, ref_tpr, _ = sklearn_metrics.roc_curve(y, s)
    assert fpr.shape == ref_fpr.shape
    np.testing.assert_allclose(fpr, ref_fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tpr, ref_tpr, rtol=0, atol=1e-12)


def test_open_set_evaluate_matches_scikit_learn():
    from retrieval import OpenSetDetector

    rng = np.random.default_rng(3)
    train = rng.normal(size=(300, 16)).astype(np.float32)
    known = train[rng.choice(300, 120)] + 0.05 * rng.normal(size=(120, 16)).astype(np.float32)
    test = np.vstack([known, rng.normal(size=(60, 16)).astype(np.float32)])
    unknown = np.r_[np.zeros(120, bool), np.ones(60, bool)]
    det = OpenSetDetector(k=3).fit(train)
    got = det.evaluate(test, unknown)
    scores = det.score_samples(test)
    fpr, tpr, _ = sklearn_metrics.roc_curve(~unknown, -scores)
    assert abs(got["auroc"] - sklearn_metrics.roc_auc_score(unknown, scores)) <= 1e-12
    assert got["fpr_at_95_tpr"] == float(fpr[np.searchsorted(tpr, 0.95, side="left")])


# ------------------------------------------------------------------ logistic regression
def _sk_logistic(x, y, C):
    lr = linear_model.LogisticRegression(C=C, tol=1e-12, max_iter=100_000).fit(x, y)
    return lr


def _check_logistic(x, y, C, coef_atol=1e-5):
    coef, intercept = fit_logistic(x, y, C=C)
    lr = _sk_logistic(x, y, C)
    np.testing.assert_allclose(coef, lr.coef_[0], rtol=0, atol=coef_atol)
    assert abs(intercept - lr.intercept_[0]) <= coef_atol
    p = 1.0 / (1.0 + np.exp(-(x @ coef + intercept)))
    np.testing.assert_allclose(p, lr.predict_proba(x)[:, 1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("C", [0.1, 1.0, 1e4])
def test_logistic_regression_matches_scikit_learn_lbfgs(seed, C):
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(20, 400)), int(rng.integers(1, 4))
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, d)
    y = rng.random(n) < 1 / (1 + np.exp(-(x @ rng.normal(size=d) + rng.normal())))
    y[:2] = [True, False]
    _check_logistic(x, y, C)


def test_logistic_regression_on_separable_data_stays_bounded_and_matches():
    # Separable: without a penalty the coefficient would grow without end; C = 1e4 bounds it.
    x = np.r_[np.linspace(-3, -0.5, 20), np.linspace(0.5, 3, 20)][:, None]
    y = x[:, 0] > 0
    coef, _ = fit_logistic(x, y, C=1e4)
    assert 5 < coef[0] < 1e3
    _check_logistic(x, y, 1e4)


def test_logistic_regression_on_a_constant_feature_and_rare_positives():
    rng = np.random.default_rng(1)
    x = np.column_stack([np.ones(200), rng.normal(size=200)])
    y = np.zeros(200, bool)
    y[rng.choice(200, 6, replace=False)] = True
    _check_logistic(x, y, 1.0)
    _check_logistic(x, y, 1e4)


def test_platt_and_fusion_fit_what_scikit_learn_fits():
    rng = np.random.default_rng(2)
    y = rng.random(300) < 0.3
    score = rng.normal(size=300) + 1.5 * y
    platt = PlattScaler().fit(score, y)
    lr = _sk_logistic(score[:, None], y, 1e4)
    assert abs(platt.coef_ - lr.coef_[0, 0]) <= 1e-5 and abs(platt.intercept_ - lr.intercept_[0]) <= 1e-5
    mass = np.clip(rng.random(300) * 0.6 + 0.3 * y, 0, 1)
    logit = rng.normal(size=300) + y
    fusion = PoisonFusion().fit(mass, logit, y)
    lr = _sk_logistic(fusion._features(mass, logit), y, 1e4)
    np.testing.assert_allclose([fusion.coef_mass_, fusion.coef_logit_], lr.coef_[0], atol=1e-5)
    assert abs(fusion.intercept_ - lr.intercept_[0]) <= 1e-5


# ------------------------------------------------------------------- bounded minimiser
def _sp_min(f, lo, hi):
    return optimize.minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})


@pytest.mark.parametrize("f, lo, hi", [
    (lambda x: (x - 2.0) ** 2, 0.0, 5.0),
    (lambda x: np.cosh(x - 0.3) + 0.1 * x, -4.0, 4.0),
    (lambda x: abs(x - 1.234567), -10.0, 10.0),  # not smooth at the minimum
    (lambda x: x ** 4 - 3 * x, -1.0, 3.0),
    (lambda x: np.exp(x), -2.0, 1.0),  # minimum at the lower end
    (lambda x: -x, -2.0, 7.0),  # minimum at the upper end
])
def test_minimiser_finds_scipys_optimum(f, lo, hi):
    got = minimize_bounded(f, lo, hi, xatol=1e-10)
    ref = _sp_min(f, lo, hi)
    assert abs(got.x - ref.x) <= 1e-6
    assert got.fun <= ref.fun + 1e-9


def test_minimiser_refuses_bad_bounds():
    from heads.errors import HeadsError

    with pytest.raises(HeadsError, match="lo < hi"):
        minimize_bounded(lambda x: x * x, 1.0, 1.0)


def test_temperature_and_prior_fits_agree_with_scipy():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(400, 6)) * 3
    labels = np.where(rng.random(400) < 0.7, logits.argmax(1), rng.integers(0, 6, 400))
    ts = TemperatureScaler().fit(logits, labels)
    z, rows = logits, np.arange(400)

    def nll(log_t):
        zz = z / np.exp(log_t)
        zz = zz - zz.max(1, keepdims=True)
        return -np.mean((zz - np.log(np.exp(zz).sum(1, keepdims=True)))[rows, labels])

    ref = _sp_min(nll, np.log(0.05), np.log(20.0))
    assert abs(np.log(ts.temperature_) - ref.x) <= 1e-3  # the fit's own xatol is 1e-4

    probs = rng.dirichlet(np.ones(6), 300)
    poisonous = np.array([True, False, True, False, False, False])
    truth = rng.random(300) < 0.6
    prior = PoisonPrior().fit(probs, poisonous, np.zeros(300), truth)
    mp, me = probs[:, poisonous].sum(1), probs[:, ~poisonous].sum(1)

    def prior_nll(b):
        pp = np.clip(np.exp(b) * mp / (np.exp(b) * mp + me), 1e-9, 1 - 1e-9)
        return -np.mean(np.where(truth, np.log(pp), np.log1p(-pp)))

    assert abs(prior.bias_ - _sp_min(prior_nll, -8.0, 8.0).x) <= 1e-4


# ------------------------------------------------------------------- per-observation means
def _csr_means(obs, values):
    uniq, first, inv = np.unique(obs, return_index=True, return_inverse=True)
    counts = np.bincount(inv)
    avg = sparse.csr_matrix((1.0 / counts[inv], (inv, np.arange(len(obs)))), shape=(len(uniq), len(obs)))
    order = np.argsort(first, kind="stable")
    return uniq[order], (avg @ values.astype(np.float64))[order]


@pytest.mark.parametrize("seed", range(6))
def test_observation_means_equal_the_sparse_averaging_product(seed):
    rng = np.random.default_rng(seed)
    obs = np.repeat(rng.permutation(300) * 11 + 5, rng.choice([1, 1, 2, 3, 7], 300))
    if seed % 2:
        obs = rng.permutation(obs)  # an observation's rows apart
    for values in (rng.random((len(obs), 9)), rng.random(len(obs)), rng.integers(0, 5, len(obs))):
        means = ObservationMeans(obs)
        ids, ref = _csr_means(obs, values)
        np.testing.assert_array_equal(means.ids, ids)
        np.testing.assert_allclose(means(values), ref, rtol=1e-12, atol=1e-15)
    v32 = rng.random((len(obs), 4)).astype(np.float32)
    got = ObservationMeans(obs)(v32)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _csr_means(obs, v32)[1], rtol=1e-6)


# ------------------------------------------------------------------- the report map's PCA
@pytest.mark.parametrize("shape", [(300, 20), (15, 40)])  # scatter and Gram routes
def test_map_pca_matches_scikit_learn_up_to_sign(shape):
    from sklearn.decomposition import PCA

    from sporeprint.report.neighbours import pca

    rng = np.random.default_rng(5)
    x = rng.normal(size=shape) * np.linspace(4, 0.2, shape[1])
    got = pca(x, 2)
    ref = PCA(2, svd_solver="full").fit_transform(x)
    signs = np.sign((got * ref).sum(0))
    np.testing.assert_allclose(got, ref * signs, atol=1e-8)


@pytest.mark.parametrize("k, n", [(0, 1), (1, 1), (0, 10), (10, 10), (1, 2), (4, 84),
                                  (46, 207), (79, 207), (500, 1000), (3, 1500)])
def test_clopper_pearson_equals_the_beta_quantiles(k, n):
    from scipy.stats import beta

    from heads.metrics import clopper_pearson

    lo = 0.0 if k == 0 else beta.ppf(0.025, k, n - k + 1)
    hi = 1.0 if k == n else beta.ppf(0.975, k + 1, n - k)
    assert clopper_pearson(k, n) == pytest.approx((lo, hi), abs=1e-9)

"""Official metrics on hand-computed cases, the Track 3 decision rule, calibration."""

import numpy as np
import pytest

from heads.calibration import PlattScaler, TemperatureScaler
from heads.decision import decide, poison_threshold
from heads.errors import NotFittedError
from heads.metrics import fungiclef_scores, poisonous_recall, topk_accuracy

POISON = [5, 6]


def test_poisonous_called_unknown_costs_100_and_edible_called_poisonous_costs_1():
    # truth:  5 (poisonous)   1 (edible)   -1 (unknown)   2 (edible)
    # pred:  -1 (unknown)     6 (pois.)     3 (species)    2 (correct)
    s = fungiclef_scores([5, 1, -1, 2], [-1, 6, 3, 2], POISON)
    assert s["n"] == 4
    assert s["track1"] == pytest.approx(3 / 4)
    assert s["accuracy"] == pytest.approx(1 / 4)
    assert s["poisonous_as_edible"] == 1 and s["edible_as_poisonous"] == 1
    assert s["track2"] == pytest.approx((100 + 1) / 4)
    assert s["track3"] == pytest.approx(3 / 4 + 101 / 4)
    # track 4: species->unknown 0.1, edible->other species 1 (other error), unknown->species 10
    assert s["track4"] == pytest.approx((0.1 + 1 + 10) / 4)


def test_duplicates_per_observation_keep_the_first_row_only():
    obs = [10, 10, 11, 11, 11]
    truth = [5, 5, 2, 2, 2]
    pred = [5, -1, 3, 2, 2]  # first rows: 5 (right) and 3 (wrong)
    s = fungiclef_scores(truth, pred, POISON, observation_ids=obs)
    assert s["n"] == 2
    assert s["track1"] == pytest.approx(0.5)
    assert s["track2"] == 0.0


def test_macro_f1_uses_labels_in_truth_or_prediction_including_unknown():
    from sklearn.metrics import f1_score

    truth, pred = [1, 1, -1, 2], [1, -1, -1, 3]
    s = fungiclef_scores(truth, pred, POISON)
    # labels: -1, 1, 2, 3 -> F1 per label: -1: 2/3, 1: 2/3, 2: 0, 3: 0
    assert s["macro_f1"] == pytest.approx(100 * (2 / 3 + 2 / 3) / 4)
    assert s["macro_f1"] == pytest.approx(100 * f1_score(truth, pred, average="macro"))


def test_metric_input_errors():
    with pytest.raises(ValueError, match="shapes"):
        fungiclef_scores([1, 2], [1], POISON)
    with pytest.raises(ValueError, match="empty"):
        fungiclef_scores([], [], POISON)


def test_topk_and_poisonous_recall():
    probs = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]])
    labels = np.array([2, 1, -1])
    assert topk_accuracy(probs, labels, 1) == pytest.approx(0.0)
    assert topk_accuracy(probs, labels, 2) == pytest.approx(2 / 3)
    assert poisonous_recall([5, 6, 1], [6, 1, 1], POISON) == pytest.approx(0.5)


def _brute_force_track3(q_known, q_unknown, class_ids, poisonous):
    """Expected Track 3 cost of every possible answer, minimised directly."""
    q = q_known * (1 - q_unknown)
    p = q[poisonous].sum()
    costs = {}
    for j, c in enumerate(class_ids):
        costs[c] = (1 - q[j]) + ((1 - p) if poisonous[j] else 100 * p)
    costs[-1] = (1 - q_unknown) + 100 * p
    return min(costs, key=costs.get)


def test_track3_rule_matches_brute_force_expected_cost_on_random_vectors():
    rng = np.random.default_rng(0)
    class_ids = np.array([3, 5, 8, 13, 21, 34])
    poisonous = np.array([False, True, False, False, True, False])
    for _ in range(300):
        q = rng.dirichlet(np.full(6, 0.3))
        qu = rng.uniform(0, 0.9) if rng.random() < 0.5 else 0.0
        d = decide(q[None], np.array([qu]), class_ids, poisonous, rule="track3")
        assert d.class_id[0] == _brute_force_track3(q, qu, class_ids, poisonous)


def test_track3_refuses_edible_and_unknown_when_poison_probability_exceeds_threshold():
    class_ids = np.array([1, 2, 3])
    poisonous = np.array([False, True, False])
    # 97% edible class 1, 3% poisonous class 2: threshold = (1 + .97 - .03)/101 = 0.0192
    d = decide(np.array([[0.97, 0.03, 0.0]]), None, class_ids, poisonous, rule="track3")
    assert d.class_id[0] == 2
    assert d.poison_threshold[0] == pytest.approx((1 + 0.97 - 0.03) / 101)
    assert d.kind[0] == "poison_risk"
    # 99.5% edible: poison mass 0.005 below threshold -> the edible species
    d = decide(np.array([[0.995, 0.005, 0.0]]), None, class_ids, poisonous, rule="track3")
    assert d.class_id[0] == 1
    # mostly unknown but 5% poisonous: never "unknown"
    d = decide(np.array([[0.0, 1.0, 0.0]]), np.array([0.95]), class_ids, poisonous, rule="track3")
    assert d.class_id[0] == 2
    # mostly unknown, no poison mass: "unknown"
    d = decide(np.array([[0.5, 0.0, 0.5]]), np.array([0.9]), class_ids, poisonous, rule="track3")
    assert d.class_id[0] == -1 and d.kind[0] == "unknown"


def test_argmax_rules_and_errors():
    class_ids, poisonous = np.array([1, 2]), np.array([False, True])
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert decide(probs, None, class_ids, poisonous, "argmax").class_id.tolist() == [1, 2]
    d = decide(probs, None, class_ids, poisonous, "argmax_unknown", unknown_flag=np.array([True, False]))
    assert d.class_id.tolist() == [-1, 2]
    with pytest.raises(ValueError, match="unknown_flag"):
        decide(probs, None, class_ids, poisonous, "argmax_unknown")
    with pytest.raises(ValueError, match="decision rule"):
        decide(probs, None, class_ids, poisonous, "vote")
    assert poison_threshold(np.array([1.0]), np.array([0.0]))[0] == pytest.approx(2 / 101)


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(4000, 10)) * 3
    p_true = np.exp(z / 2.0) / np.exp(z / 2.0).sum(1, keepdims=True)  # true T = 2
    labels = np.array([rng.choice(10, p=row) for row in p_true])
    ts = TemperatureScaler().fit(z, labels)
    assert ts.temperature_ == pytest.approx(2.0, rel=0.1)
    assert ts.nll_after_ < ts.nll_before_
    assert np.allclose(ts.transform(z).sum(1), 1.0)
    with pytest.raises(NotFittedError, match="fit first"):
        TemperatureScaler().transform(z)


def test_platt_scaler_is_monotone_and_calibrated():
    rng = np.random.default_rng(2)
    s = rng.normal(size=5000)
    y = rng.random(5000) < 1 / (1 + np.exp(-(2 * s - 1)))
    ps = PlattScaler().fit(s, y)
    assert ps.coef_ == pytest.approx(2.0, rel=0.15) and ps.intercept_ == pytest.approx(-1.0, abs=0.15)
    out = ps.transform(np.array([-1.0, 0.0, 1.0]))
    assert np.all(np.diff(out) > 0)

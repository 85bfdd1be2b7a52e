"""Decisions from the four-number summary, under Track 3 and other cost matrices."""

import numpy as np
import pytest

from heads.decision import (
    KINDS,
    Costs,
    DecisionSummary,
    answer_mix,
    decide,
    decide_summary,
    summarise,
)


def _brute_force(q_known, q_unknown, class_ids, poisonous, costs):
    """Expected cost of every possible answer (each species and "unknown"), minimised."""
    q = q_known * (1 - q_unknown)
    p = q[poisonous].sum()
    w = costs.wrong_answer
    cost = {-1: w * (1 - q_unknown) + costs.poisonous_as_edible * p}
    for j, c in enumerate(class_ids):
        cost[c] = w * (1 - q[j]) + (costs.edible_as_poisonous * (1 - p) if poisonous[j]
                                    else costs.poisonous_as_edible * p)
    best = min(cost.values())
    return {c for c, v in cost.items() if v <= best + 1e-12}


def _random_batch(rng, n=200):
    c = int(rng.integers(1, 8))
    class_ids = np.arange(c) * 3 + 1
    poisonous = rng.random(c) < 0.4
    probs = rng.dirichlet(np.full(c, rng.choice([0.05, 0.3, 1.0])), size=n)
    if rng.random() < 0.3:
        probs = np.round(probs, 2)  # exact ties
    unknown = None if rng.random() < 0.3 else np.where(
        rng.random(n) < 0.3, 0.0, np.round(rng.uniform(0, 1, n), 3))
    return probs, unknown, class_ids, poisonous


def test_summary_with_default_costs_gives_exactly_the_track3_answers():
    rng = np.random.default_rng(0)
    for _ in range(100):
        probs, unknown, class_ids, poisonous = _random_batch(rng)
        d = decide(probs, unknown, class_ids, poisonous, rule="track3")
        s = summarise(probs, unknown, class_ids, poisonous)
        assert isinstance(s, DecisionSummary) and len(s) == len(probs)
        from_summary = decide_summary(s, Costs())
        np.testing.assert_array_equal(from_summary.class_id, d.class_id)
        np.testing.assert_array_equal(from_summary.poison_threshold, d.poison_threshold)
        assert from_summary.reason == d.reason
        u = np.zeros(len(probs)) if unknown is None else unknown
        for i in range(0, len(probs), 20):
            assert d.class_id[i] in _brute_force(probs[i], u[i], class_ids, poisonous, Costs())


@pytest.mark.parametrize("costs", [Costs(1000, 1), Costs(5, 2, 0.5), Costs(1, 1, 0), Costs(0, 3, 2)])
def test_decide_summary_is_the_expected_cost_argmin_under_other_costs(costs):
    rng = np.random.default_rng(1)
    for _ in range(30):
        probs, unknown, class_ids, poisonous = _random_batch(rng, n=40)
        d = decide_summary(summarise(probs, unknown, class_ids, poisonous), costs)
        u = np.zeros(len(probs)) if unknown is None else unknown
        for i in range(len(probs)):
            assert d.class_id[i] in _brute_force(probs[i], u[i], class_ids, poisonous, costs)


def test_summary_holds_the_four_numbers():
    class_ids, poisonous = np.array([10, 11, 12]), np.array([False, True, True])
    s = summarise(np.array([[0.5, 0.2, 0.3]]), np.array([0.5]), class_ids, poisonous)
    assert (s.best_edible_class[0], s.best_poisonous_class[0]) == (10, 12)
    assert s.best_edible_prob[0] == pytest.approx(0.25)
    assert s.best_poisonous_prob[0] == pytest.approx(0.15)
    assert s.poison_prob[0] == pytest.approx(0.25)
    assert s.unknown_prob[0] == pytest.approx(0.5)
    none = summarise(np.array([[1.0]]), None, np.array([4]), np.array([False]))
    assert none.best_poisonous_class[0] == -1 and none.best_poisonous_prob[0] == 0.0
    assert decide_summary(none).class_id[0] == 4


def test_summary_matches_masked_argmax_with_interleaved_columns_and_ties():
    rng = np.random.default_rng(5)
    class_ids = np.arange(100, 130)
    poisonous = rng.random(30) < 0.4  # poisonous columns scattered among edible ones
    probs = rng.dirichlet(np.ones(30), size=200)
    probs[0, :] = 1.0 / 30  # all tied: the lowest column of each group wins
    unknown = rng.random(200)
    unknown[1] = 1.0  # no known species left: probabilities 0, species still the most likely
    s = summarise(probs, unknown, class_ids, poisonous)
    for mask, cls, prob in ((~poisonous, s.best_edible_class, s.best_edible_prob),
                            (poisonous, s.best_poisonous_class, s.best_poisonous_prob)):
        j = np.argmax(np.where(mask, probs, -np.inf), axis=1)
        np.testing.assert_array_equal(cls, class_ids[j])
        np.testing.assert_array_equal(prob, probs[np.arange(200), j] * (1 - unknown))
    assert s.best_poisonous_class[0] == class_ids[np.flatnonzero(poisonous)[0]]
    assert s.best_edible_class[0] == class_ids[np.flatnonzero(~poisonous)[0]]
    np.testing.assert_allclose(s.poison_prob, (probs * (1 - unknown)[:, None])[:, poisonous].sum(1))


def test_a_stricter_matrix_flags_more_observations_as_poison_risk():
    rng = np.random.default_rng(2)
    class_ids = np.arange(20)
    poisonous = np.zeros(20, dtype=bool)
    poisonous[[3, 7, 11]] = True
    probs = rng.dirichlet(np.full(20, 0.1), size=2000)
    unknown = rng.uniform(0, 0.5, 2000)
    s = summarise(probs, unknown, class_ids, poisonous)
    default = np.isin(decide_summary(s).class_id, class_ids[poisonous])
    strict = np.isin(decide_summary(s, Costs(poisonous_as_edible=1000)).class_id,
                     class_ids[poisonous])
    assert strict.sum() > default.sum() + 50
    assert not (default & ~strict).any()  # everything flagged at 100:1 stays flagged at 1000:1
    strict_decision = decide(probs, unknown, class_ids, poisonous, costs=Costs(1000, 1))
    np.testing.assert_array_equal(strict_decision.class_id, decide_summary(s, Costs(1000, 1)).class_id)


def test_costs_are_checked():
    with pytest.raises(ValueError, match="poisonous_as_edible=-1"):
        Costs(poisonous_as_edible=-1)
    with pytest.raises(ValueError, match="wrong_answer=nan"):
        Costs(wrong_answer=float("nan"))
    with pytest.raises(ValueError, match="cannot both be 0"):
        Costs(0, 0)
    with pytest.raises(ValueError, match="one entry per row"):
        summarise(np.ones((2, 1)), np.zeros(3), np.array([1]), np.array([False]))


CLASS_IDS, POISONOUS = np.array([1, 2, 3]), np.array([False, True, False])


def test_each_kind_of_answer_is_reached_and_carried_per_row():
    probs = np.array([[0.995, 0.005, 0.0],  # edible species, poison mass below break-even
                      [0.97, 0.03, 0.0],  # 3% poisonous: the poisonous species, not the argmax
                      [0.10, 0.90, 0.0],  # a poisonous species that is the most probable
                      [0.50, 0.00, 0.5]])  # mostly unknown, no poison mass
    unknown = np.array([0.0, 0.0, 0.0, 0.9])
    d = decide(probs, unknown, CLASS_IDS, POISONOUS, rule="track3")
    assert d.class_id.tolist() == [1, 2, 2, -1]
    assert d.kind.tolist() == ["species", "poison_risk", "species", "unknown"]
    prior = decide(probs, unknown, CLASS_IDS, POISONOUS, rule="track3",
                   prior_only=np.array([False, True, False, True]))
    assert prior.class_id.tolist() == d.class_id.tolist()  # the same answers, marked prior-only
    assert prior.kind.tolist() == ["species", "prior_only", "species", "prior_only"]
    assert answer_mix(prior.kind) == {"species": 2, "poison_risk": 0, "unknown": 0,
                                      "prior_only": 2}
    assert set(KINDS) == {"species", "poison_risk", "unknown", "prior_only"}
    # the other rules: argmax names a species; the open-set flag makes "unknown"
    assert decide(probs, None, CLASS_IDS, POISONOUS, "argmax").kind.tolist() == ["species"] * 4
    flag = np.array([False, True, False, True])
    d = decide(probs, None, CLASS_IDS, POISONOUS, "argmax_unknown", unknown_flag=flag)
    assert d.kind.tolist() == ["species", "unknown", "species", "unknown"]
    with pytest.raises(ValueError, match="prior_only must have one entry per row"):
        decide(probs, unknown, CLASS_IDS, POISONOUS, prior_only=np.array([True]))


def test_answer_mix_counts_every_kind_and_refuses_other_words():
    assert answer_mix([]) == dict.fromkeys(KINDS, 0)
    assert list(answer_mix(["unknown"])) == list(KINDS)
    with pytest.raises(ValueError, match="'poison-risk' is not one of species"):
        answer_mix(["species", "poison-risk"])
    with pytest.raises(ValueError, match="None"):
        answer_mix(["species", None])


def _check_kinds(d, s, prior):
    """What each kind means, row by row, against the summary it was decided from."""
    q_be = np.maximum(s.unknown_prob, s.best_edible_prob)
    poisonous_answer = (d.class_id == s.best_poisonous_class) & (d.class_id >= 0) & \
        (d.class_id != s.best_edible_class)
    for i, k in enumerate(d.kind):
        if prior[i]:
            assert k == "prior_only"
        elif k == "unknown":
            assert d.class_id[i] == -1
        elif k == "poison_risk":
            assert poisonous_answer[i] and s.best_poisonous_prob[i] < q_be[i]
        else:
            assert k == "species" and d.class_id[i] >= 0
            assert not poisonous_answer[i] or s.best_poisonous_prob[i] >= q_be[i]


@pytest.mark.parametrize("costs", [Costs(1000, 1), Costs(10, 1), Costs(5, 2, 0.5)])
def test_other_costs_change_the_kinds_consistently(costs):
    rng = np.random.default_rng(7)
    class_ids = np.arange(20)
    poisonous = np.zeros(20, dtype=bool)
    poisonous[[3, 7, 11]] = True
    probs = rng.dirichlet(np.full(20, 0.1), size=3000)
    unknown = rng.uniform(0, 0.9, 3000)
    prior = rng.random(3000) < 0.05
    s = summarise(probs, unknown, class_ids, poisonous)
    default = decide_summary(s, prior_only=prior)
    other = decide_summary(s, costs, prior_only=prior)
    _check_kinds(default, s, prior)
    _check_kinds(other, s, prior)
    np.testing.assert_array_equal(other.kind, decide(probs, unknown, class_ids, poisonous,
                                                     costs=costs, prior_only=prior).kind)
    changed = other.kind != default.kind
    assert changed.any()
    before, after = answer_mix(default.kind), answer_mix(other.kind)
    assert before["prior_only"] == after["prior_only"] == int(prior.sum())
    stricter = costs.poisonous_as_edible / costs.edible_as_poisonous > 100
    # a stricter matrix only turns edible and unknown answers into poison-risk ones
    moved_to_risk = (default.kind != "poison_risk") & (other.kind == "poison_risk")
    moved_from_risk = (default.kind == "poison_risk") & (other.kind != "poison_risk")
    if stricter:
        assert moved_to_risk.any() and not moved_from_risk.any()
        assert after["poison_risk"] > before["poison_risk"]
    else:
        assert moved_from_risk.any() and not moved_to_risk.any()
        assert after["poison_risk"] < before["poison_risk"]

"""Calibrators: state round trips through JSON, the not-fitted convention, the poison prior."""

import json

import numpy as np
import pytest

from heads import (
    HeadsError,
    NotFittedError,
    PlattScaler,
    PoisonFusion,
    PoisonPrior,
    TemperatureScaler,
)


def _json_round_trip(state: dict) -> dict:
    return json.loads(json.dumps(state, allow_nan=False))


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 6)) * 3
    labels = rng.integers(0, 6, 300)
    scores = rng.normal(size=300)
    positive = rng.random(300) < 1 / (1 + np.exp(-2 * scores))
    probs = rng.dirichlet(np.full(6, 0.4), size=300)
    poisonous = np.array([False, True, False, False, True, False])
    p_unknown = rng.uniform(0, 0.5, 300)
    is_pois = rng.random(300) < 0.5 * probs[:, poisonous].sum(1)
    return {
        "temperature": (TemperatureScaler().fit(z, labels), lambda m: m.transform(z)),
        "platt": (PlattScaler().fit(scores, positive), lambda m: m.transform(scores)),
        "prior": (PoisonPrior().fit(probs, poisonous, p_unknown, is_pois),
                  lambda m: m.apply(probs, poisonous)),
        "fusion": (PoisonFusion().fit(probs[:, poisonous].sum(1), scores, is_pois),
                   lambda m: m.transform(probs[:, poisonous].sum(1), scores)),
    }


@pytest.mark.parametrize("name", ["temperature", "platt", "prior", "fusion"])
def test_state_round_trip_through_json_gives_identical_transforms(name, fitted):
    model, use = fitted[name]
    state = model.get_state()
    back = type(model).from_state(_json_round_trip(state))
    np.testing.assert_array_equal(use(back), use(model))
    assert back.get_state() == state
    assert all(isinstance(v, (str, float)) for v in state.values())


@pytest.mark.parametrize("cls,call", [
    (TemperatureScaler, lambda m: m.transform(np.zeros((2, 3)))),
    (PlattScaler, lambda m: m.transform(np.zeros(2))),
    (PoisonPrior, lambda m: m.apply(np.full((2, 2), 0.5), np.array([False, True]))),
    (TemperatureScaler, lambda m: m.get_state()),
    (PlattScaler, lambda m: m.get_state()),
    (PoisonPrior, lambda m: m.get_state()),
    (PoisonFusion, lambda m: m.transform(np.zeros(2), np.zeros(2))),
    (PoisonFusion, lambda m: m.get_state()),
])
def test_unfitted_use_raises_not_fitted(cls, call):
    with pytest.raises(NotFittedError, match="fit first") as info:
        call(cls())
    assert isinstance(info.value, HeadsError)


def test_from_state_refuses_other_kinds_and_bad_fields(fitted):
    state = fitted["platt"][0].get_state()
    with pytest.raises(HeadsError, match="expected 'TemperatureScaler'"):
        TemperatureScaler.from_state(state)
    with pytest.raises(HeadsError, match="lacks intercept"):
        PlattScaler.from_state({"kind": "PlattScaler", "coef": 1.0})
    with pytest.raises(HeadsError, match="'coef' must be a number"):
        PlattScaler.from_state({**state, "coef": "2"})
    with pytest.raises(HeadsError, match="must be a dict"):
        PoisonPrior.from_state([1.0])
    with pytest.raises(HeadsError, match="positive"):
        TemperatureScaler.from_state({"kind": "TemperatureScaler", "temperature": 0.0,
                                      "min_temperature": 0.05, "max_temperature": 20.0})


def _reference_bias(probs, poisonous, p_unknown, is_poisonous):
    """The poison shift computed column by column, minimised on a fine grid."""
    log_p = np.log(np.maximum(probs, 1e-300))
    best, best_b = np.inf, 0.0
    for b in np.linspace(-8, 8, 1601):
        z = log_p + b * poisonous[None, :]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        pp = np.clip((1 - p_unknown) * e[:, poisonous].sum(1) / e.sum(1), 1e-9, 1 - 1e-9)
        nll = -np.mean(np.where(is_poisonous, np.log(pp), np.log1p(-pp)))
        if nll < best:
            best, best_b = nll, b
    return best_b


def test_poison_prior_recovers_a_known_shift_and_matches_the_column_formula():
    rng = np.random.default_rng(3)
    poisonous = np.array([False, True, False, True, False, False])
    probs = rng.dirichlet(np.full(6, 0.5), size=2500)
    true_bias = 1.2  # poisonous species are e^1.2 times more common than the model thinks
    truth_probs = PoisonPrior.from_state({"kind": "PoisonPrior", "bias": true_bias,
                                          "min_bias": -8.0, "max_bias": 8.0}).apply(probs, poisonous)
    p_unknown = rng.uniform(0, 0.3, len(probs))
    unknown = rng.random(len(probs)) < p_unknown
    is_pois = ~unknown & (rng.random(len(probs)) < truth_probs[:, poisonous].sum(1))
    prior = PoisonPrior().fit(probs, poisonous, p_unknown, is_pois)
    assert prior.bias_ == pytest.approx(true_bias, abs=0.2)
    assert prior.nll_after_ < prior.nll_before_
    assert prior.bias_ == pytest.approx(_reference_bias(probs, poisonous, p_unknown, is_pois), abs=0.011)
    shifted = prior.apply(probs, poisonous)
    np.testing.assert_allclose(shifted.sum(1), 1.0)
    # same as adding the bias to the poisonous log-probabilities
    z = np.log(probs) + prior.bias_ * poisonous
    np.testing.assert_allclose(shifted, np.exp(z) / np.exp(z).sum(1, keepdims=True), rtol=1e-12)


def test_poison_prior_input_errors():
    probs = np.full((3, 2), 0.5)
    with pytest.raises(HeadsError, match="bool flag per column"):
        PoisonPrior().fit(probs, np.array([0, 1]), np.zeros(3), np.zeros(3, bool))
    with pytest.raises(HeadsError, match="one entry per row"):
        PoisonPrior().fit(probs, np.array([False, True]), np.zeros(2), np.zeros(3, bool))
    with pytest.raises(HeadsError, match=r"\[0, 1\]"):
        PoisonPrior().fit(probs, np.array([False, True]), np.full(3, 2.0), np.zeros(3, bool))


def _poison_signals(rng, n):
    """Truth drawn from two independent signals: the species mass and a head logit."""
    mass = rng.beta(0.3, 4.0, n)
    head = rng.normal(size=n)
    z = 1.0 * np.log(mass / (1 - mass)) + 1.5 * head - 0.5
    truth = rng.random(n) < 1 / (1 + np.exp(-z))
    return mass, head, truth


def _log_loss(p, y):
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return -np.mean(np.where(y, np.log(p), np.log1p(-p)))


def test_poison_fusion_beats_either_signal_alone_on_held_out_data():
    rng = np.random.default_rng(4)
    mass, head, truth = _poison_signals(rng, 4000)
    t_mass, t_head, t_truth = _poison_signals(rng, 4000)
    fusion = PoisonFusion().fit(mass, head, truth)
    assert fusion.coef_mass_ == pytest.approx(1.0, abs=0.2)
    assert fusion.coef_logit_ == pytest.approx(1.5, abs=0.25)
    fused = _log_loss(fusion.transform(t_mass, t_head), t_truth)
    head_only = PlattScaler().fit(head, truth).transform(t_head)
    mass_only = PlattScaler().fit(np.log(mass / (1 - mass)), truth).transform(
        np.log(t_mass / (1 - t_mass)))
    assert fused < _log_loss(head_only, t_truth) - 0.02
    assert fused < _log_loss(mass_only, t_truth) - 0.02


def test_poison_fusion_drops_a_head_logit_that_carries_no_information():
    rng = np.random.default_rng(5)
    mass, _, _ = _poison_signals(rng, 4000)
    truth = rng.random(4000) < mass  # the mass is calibrated; the logit below is noise
    noise = rng.normal(size=4000)
    fusion = PoisonFusion().fit(mass, noise, truth)
    assert abs(fusion.coef_logit_) < 0.1
    assert fusion.coef_mass_ == pytest.approx(1.0, abs=0.15)
    with pytest.raises(HeadsError, match="poisonous and edible"):
        PoisonFusion().fit(mass, noise, np.zeros(4000, bool))
    with pytest.raises(HeadsError, match=r"\(n,\) each"):
        PoisonFusion().fit(mass, noise[:10], truth)

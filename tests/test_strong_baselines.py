"""The strong baselines of sporeprint.simulator.baselines on a small synthetic task whose
class prior shifts between training and evaluation: the prior correction undoes the shift,
late fusion combines the two single-input models, and the embeddings-only form exists."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sporeprint.errors import SporeprintError
from sporeprint.simulator.baselines import Data, obs_labels, saerens_prior, strong_baselines

CLASSES = 20


def draw(rng, n_obs, prior, centers, meta_centers, first_id):
    """Observations of 1-2 images: image = class centre + noise, metadata = one noisy
    class profile per observation (shared by its images)."""
    y = rng.choice(len(prior), n_obs, p=prior)
    images = rng.integers(1, 3, n_obs)
    obs = np.repeat(np.arange(first_id, first_id + n_obs), images)
    rows = np.repeat(y, images)
    x = centers[rows] + rng.normal(0, 2.0, (len(rows), centers.shape[1]))
    meta = np.repeat(meta_centers[y] + rng.normal(0, 1.5, (n_obs, meta_centers.shape[1])),
                     images, axis=0)
    return Data(x.astype(np.float32), meta.astype(np.float32), rows, obs)


@pytest.fixture(scope="module")
def task():
    rng = np.random.default_rng(0)
    centers, meta_centers = rng.normal(0, 1, (CLASSES, 32)), rng.normal(0, 1, (CLASSES, 6))
    train_prior = np.linspace(1, 10, CLASSES)
    train_prior /= train_prior.sum()
    later = train_prior[::-1].copy()  # the evaluation period favours the rare classes
    return (draw(rng, 2000, train_prior, centers, meta_centers, 0),
            draw(rng, 400, later, centers, meta_centers, 10**6),
            draw(rng, 800, later, centers, meta_centers, 2 * 10**6))


def top1(out, test):
    ids, truth = obs_labels(test)
    res = {}
    for key, (got, pred) in out.items():
        assert np.array_equal(got, ids), key
        res[key] = float(np.mean(pred == truth))
    return res


@pytest.fixture(scope="module")
def scored(task):
    warnings.filterwarnings("ignore", category=UserWarning)
    train, val, test = task
    out = {prior: strong_baselines(train, val, test, prior=prior, c_grid=(0.01, 0.1))
           for prior in ("val", "none")}
    return {prior: (top1(o, test), settings) for prior, (o, settings) in out.items()}


def test_the_prior_correction_undoes_a_shift_of_the_class_prior(scored):
    corrected, plain = scored["val"][0], scored["none"][0]
    assert corrected["meta_lr"] >= plain["meta_lr"] + 0.05, (corrected, plain)
    assert corrected["lr_c"] >= plain["lr_c"], (corrected, plain)


def test_late_fusion_beats_each_single_input_model(scored):
    r, settings = scored["val"]
    assert r["late_fusion"] >= max(r["lr_c"], r["meta_lr"]) + 0.03, r
    assert r["lr_meta_c"] >= r["lr_c"] + 0.03, r
    assert settings["fusion weight"] > 0 and settings["C embeddings"] in (0.01, 0.1)


def test_embeddings_only_form_and_em_prior(task):
    train, val, test = task
    out, settings = strong_baselines(train, val, test, use_meta=False, prior="em",
                                     c_grid=(0.1,))
    assert sorted(out) == ["lr_c"] and settings["C embeddings"] == 0.1
    assert top1(out, test)["lr_c"] > 0.5
    with pytest.raises(SporeprintError, match="prior correction 'flat'"):
        strong_baselines(train, val, test, prior="flat")


def test_saerens_em_finds_the_prior_of_confident_posteriors():
    probs = np.eye(4)[[0, 0, 0, 1, 2, 2, 3, 3, 3, 3]] * 0.97 + 0.0075
    prior = saerens_prior(probs, np.full(4, 0.25))
    assert prior == pytest.approx([0.3, 0.1, 0.2, 0.4], abs=0.02)

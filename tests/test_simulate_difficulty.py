"""The simulator's difficulty, pinned small: nearest class mean and shrinkage LDA stay below a
trained two-fold MLP ensemble with metadata, and metadata helps that ensemble
(benchmarks/difficulty.py measures the full table over seeds; see docs/simulator.md).

One seed, 80 classes at small-scale counts, and five times the usual number of
validation observations so that the held-out part (about 250 known-species
observations) is large enough for the margins below to mean something. Measured on
this configuration: 1-NN 72.8%, nearest class mean 44.7%, LDA (shrinkage) 60.6%,
ensemble 61.4% without and 64.2% with metadata.
"""

from __future__ import annotations

import pytest

from sporeprint.simulator.baselines import measure
from sporeprint.simulator.simulate import SimConfig, simulate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scores():
    sim = simulate(SimConfig(scale="small", classes=80, count_scale=0.1,
                             period_observations=0.5, seed=0))
    return measure(sim, seed=0, epochs=12, skip=("lda", "lr", "lr_meta"))


def test_nearest_class_mean_is_far_below_the_trained_ensemble(scores):
    assert scores["mlp_meta"] >= scores["ncm"] + 0.10, scores


def test_lda_is_below_the_trained_ensemble_with_metadata(scores):
    assert scores["mlp_meta"] > scores["lda_shrink"], scores


def test_metadata_helps_the_trained_ensemble(scores):
    assert scores["mlp_meta"] > scores["mlp"], scores

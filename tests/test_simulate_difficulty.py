"""The simulator's difficulty, pinned small: 1-NN stays in its band, nearest class mean
stays well below the trained two-fold MLP ensemble, and metadata — drawn from real
Danish records, as weakly telling as real metadata — is no shortcut: it moves the
ensemble by a few points at most (benchmarks/difficulty.py measures the full table over
seeds; docs/results.md).

One seed of the default ``--scale small`` simulation (200 classes), scored on part
``test`` and the simulation's own test role (``extra_test``). Measured over five seeds
on the test draw: 1-NN 50.5%, nearest class mean 34.5%, shrinkage LDA 45.6%, ensemble
47.4% without and 47.7% with metadata.
"""

from __future__ import annotations

import pytest

from sporeprint.simulator.baselines import measure
from sporeprint.simulator.simulate import SimConfig, simulate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scores():
    sim = simulate(SimConfig(scale="small", seed=0))
    return measure(sim, seed=0, epochs=12, skip=("lda", "lr", "lr_meta"), extra_test=True,
                   strong=False)


def test_one_nearest_neighbour_is_in_its_band(scores):
    assert 0.40 <= scores["1nn"] <= 0.65, scores


def test_nearest_class_mean_is_far_below_the_trained_ensemble(scores):
    assert scores["mlp"] >= scores["ncm"] + 0.08, scores
    assert scores["mlp_meta"] >= scores["ncm"] + 0.08, scores


def test_metadata_is_no_shortcut_for_the_trained_ensemble(scores):
    assert abs(scores["mlp_meta"] - scores["mlp"]) <= 0.05, scores

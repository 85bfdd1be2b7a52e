"""The simulator's difficulty, pinned small: 1-NN stays in its band, nearest class mean and
shrinkage LDA stay well below a trained two-fold MLP ensemble with metadata, and metadata
helps that ensemble (benchmarks/difficulty.py measures the full table over seeds; see
docs/simulator.md).

One seed of the default ``--scale small`` simulation (200 classes; fewer classes in 128
latent directions make an easier task, e.g. 80 classes put 1-NN at 68%). To have enough
held-out observations for the margins below to mean something without training on more,
the simulation's own test role is scored too (``extra_test``: 355 known-species
observations of the later period instead of 97). Measured on this configuration: 1-NN
49.6%, nearest class mean 36.6%, shrinkage LDA 45.6%, ensemble 44.2% without and 57.5%
with metadata.
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


def test_training_free_baselines_are_far_below_the_trained_ensemble(scores):
    assert scores["mlp_meta"] >= scores["ncm"] + 0.08, scores
    assert scores["mlp_meta"] >= scores["lda_shrink"] + 0.08, scores


def test_metadata_helps_the_trained_ensemble(scores):
    assert scores["mlp_meta"] >= scores["mlp"] + 0.02, scores

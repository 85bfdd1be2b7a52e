"""The simulator's difficulty, pinned small: simple baselines stay clearly below a trained
MLP ensemble with metadata, and metadata helps that ensemble (benchmarks/difficulty.py
measures the full table over seeds; see docs/simulator.md)."""

from __future__ import annotations

import pytest

from sporeprint.simulator.baselines import measure
from sporeprint.simulator.simulate import SimConfig, simulate


@pytest.fixture(scope="module")
def scores():
    sim = simulate(SimConfig(scale="small", classes=120, count_scale=0.05, seed=0))
    return measure(sim, seed=0, epochs=12, skip=("lda", "lr", "lr_meta"))


def test_training_free_baselines_are_clearly_below_the_trained_ensemble(scores):
    assert scores["mlp_meta"] >= max(scores["ncm"], scores["lda_shrink"]) + MARGIN_BASELINE, scores


def test_metadata_helps_the_trained_ensemble(scores):
    assert scores["mlp_meta"] >= scores["mlp"] + MARGIN_METADATA, scores


def test_one_nn_is_far_from_solved(scores):
    assert scores["1nn"] <= 0.75, scores

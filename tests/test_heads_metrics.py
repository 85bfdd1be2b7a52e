"""``heads.metrics.reliability_bins``: per-bin confidence, accuracy and count, and the ECE."""

from __future__ import annotations

import numpy as np
import pytest

from heads.metrics import reliability_bins


def test_reliability_bins_on_a_hand_computed_case():
    conf, acc, count, ece = reliability_bins(np.array([0.05, 0.95, 0.95, 0.55]),
                                             np.array([0, 1, 0, 1]))
    assert count.tolist() == [1, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    assert acc[9] == 0.5 and conf[9] == 0.95 and acc[0] == 0.0 and acc[5] == 1.0
    assert conf[1] == 0.0 and acc[1] == 0.0  # an empty bin
    assert ece == pytest.approx((0.05 + 0.45 + 2 * 0.45) / 4)


def test_reliability_bins_edges_and_a_perfectly_calibrated_sample():
    conf, _, count, _ = reliability_bins(np.array([0.0, 1.0, 0.1, 0.3]), np.array([0, 1, 1, 0]),
                                         bins=5)
    assert count.tolist() == [2, 1, 0, 0, 1]  # 1.0 falls in the last bin, 0.1 in the first
    assert conf[0] == pytest.approx(0.05)
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 200_000)
    _, _, _, ece = reliability_bins(p, rng.uniform(0, 1, p.size) < p)
    assert ece < 0.01  # outcomes drawn with the stated probability
    _, _, _, over = reliability_bins(p, rng.uniform(0, 1, p.size) < p / 2)
    assert over == pytest.approx(0.25, abs=0.01)  # half as often right as claimed


def test_reliability_bins_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="one length"):
        reliability_bins(np.array([0.5, 0.5]), np.array([1]))
    with pytest.raises(ValueError, match="bins=0"):
        reliability_bins(np.array([0.5]), np.array([1]), bins=0)

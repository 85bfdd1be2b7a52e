"""Seesaw class counts follow what the loss sees: the sampled labels, not the raw ones."""

import numpy as np
import pytest

from heads.errors import HeadsError
from heads.modules import LinearConfig
from heads.train import HeadData, TrainConfig, sample_weights, train_head


def _long_tailed(seed: int = 0):
    rng = np.random.default_rng(seed)
    train_p = np.array([0.5, 0.25, 0.12, 0.08, 0.05])  # long-tailed training set
    val_p = np.array([0.05, 0.1, 0.15, 0.3, 0.4])  # the period to serve: tail-heavy
    y = rng.choice(5, size=800, p=train_p)
    yv = rng.choice(5, size=300, p=val_p)
    centres = rng.normal(scale=2.0, size=(5, 8))
    X = (centres[y] + rng.normal(size=(len(y), 8))).astype(np.float32)
    Xv = (centres[yv] + rng.normal(size=(len(yv), 8))).astype(np.float32)
    return HeadData(X, y), HeadData(Xv, yv)


CFG = dict(epochs=3, batch_size=64, lr=1e-2, loss="seesaw", progress=False, patience=0)


def test_accumulated_counts_track_the_sampled_labels_under_val_matched_sampling():
    train, val = _long_tailed()
    head = LinearConfig(embed_dim=8, num_classes=5)
    result = train_head(head, train, val, TrainConfig(**CFG, sampler="val_matched"))
    assert result.config.seesaw_counts == "accumulate"
    counts = result.loss_counts
    assert counts.sum() == 3 * len(train)  # every sampled label of every epoch, nothing from validation
    w = sample_weights(train.labels, 5, "val_matched", val.labels)
    expected = np.bincount(train.labels, weights=w, minlength=5) / w.sum()
    raw = np.bincount(train.labels, minlength=5) / len(train)
    seen = counts / counts.sum()
    np.testing.assert_allclose(seen, expected, atol=0.03)  # sampling noise of 2,400 draws
    assert np.abs(seen - raw).max() > 0.2  # far from the raw training frequencies
    assert seen.argmax() != raw.argmax()


def test_fixed_counts_keep_the_training_set_counts():
    train, val = _long_tailed()
    head = LinearConfig(embed_dim=8, num_classes=5)
    result = train_head(head, train, val,
                        TrainConfig(**CFG, sampler="val_matched", seesaw_counts="fixed"))
    np.testing.assert_array_equal(result.loss_counts, np.bincount(train.labels, minlength=5))
    with pytest.raises(HeadsError, match="seesaw_counts='raw'"):
        train_head(head, train, val, TrainConfig(**CFG, seesaw_counts="raw"))


def test_other_losses_report_no_counts():
    train, _ = _long_tailed()
    result = train_head(LinearConfig(embed_dim=8, num_classes=5), train, None,
                        TrainConfig(**{**CFG, "loss": "ce"}))
    assert result.loss_counts is None

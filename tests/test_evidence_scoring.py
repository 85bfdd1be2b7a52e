"""The unknown detector's AUROC on observations the calibration was not fitted on."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import split_store

from heads.train import TrainConfig
from sporeprint.errors import SporeprintError
from sporeprint.scoring import ScoringModel
from sporeprint.scoring.calibration import fit_and_record
from sporeprint.training import train_folds


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("auroc")
    # Count scale 0.3: a test part of about a hundred observations, enough for an AUROC.
    fs = split_store(root, 1, 64, count_scale=0.3)
    runs = train_folds(fs, "sim", head="mlp", head_params={"hidden": 32},
                       config=TrainConfig(epochs=2, lr=3e-3, progress=False),
                       out_dir=root / "runs", split_seed=1)
    fit_and_record(fs, [runs[-1].run_id])
    yield fs, ScoringModel.load(fs, [runs[-1].run_id])
    fs.close()


def test_heldout_auroc_counts_the_test_part(scored):
    fs, model = scored
    test = fs.fold_observations(1)["test"]
    out = model.unknown_auroc(fs, test)
    truth = fs.observation_class_ids(test)
    assert out["n_unknown"] == int((~np.isin(truth, model.classes)).sum()) > 0
    assert out["n_known"] + out["n_unknown"] == len(test)
    assert 0.5 < out["auroc"] <= 1.0, out  # the simulated unknowns are separable at all
    known = test[np.isin(truth, model.classes)]
    with pytest.raises(SporeprintError, match="both known-species and unknown-species"):
        model.unknown_auroc(fs, known)

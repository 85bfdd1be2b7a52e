"""Calibrating what is deployed: the calibration slice, the ensemble's temperature fitted
on it, the single-head out-of-fold mode kept, old runs refused until recalibrated."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import split_store

from heads.calibration import TemperatureScaler
from heads.train import TrainConfig
from sporeprint.errors import SporeprintError
from sporeprint.rows import load_rows
from sporeprint.scoring import ScoringModel
from sporeprint.scoring import calibration as calib
from sporeprint.scoring.calibration import slice_digest
from sporeprint.scoring.observations import observation_scores
from sporeprint.scoring.settings import DEFAULT_CALIBRATION, DEFAULT_POISON_SHIFT
from sporeprint.training import train_folds
from store import StoreError
from store.splits import calibration_mask

SEED = 1


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("holdout")
    fs = split_store(root, SEED, 16)
    cfg = TrainConfig(epochs=2, lr=3e-3, progress=False, seed=SEED)
    runs = {}
    for mode in ("holdout", "oof"):
        runs[mode] = train_folds(fs, "sim", head="mlp", head_params={"hidden": 32}, config=cfg,
                                 out_dir=root / f"runs-{mode}", split_seed=SEED,
                                 calibration=mode)
        calib.fit_and_record(fs, [runs[mode][-1].run_id])  # as `sporeprint train` ends
        time.sleep(1.1)  # run ids carry a one-second stamp
    yield fs, runs
    fs.close()


def test_slice_is_disjoint_from_training_early_stopping_and_test(trained):
    fs, runs = trained
    held = fs.calibration_observations()
    assert len(held) > 0
    p1, p2 = fs.fold_observations(1)["val"], fs.fold_observations(2)["val"]
    assert np.isin(held, np.concatenate([p1, p2])).all()
    for fold, run in zip((1, 2), runs["holdout"][:2], strict=True):
        parts = fs.fold_observations(fold, calibration_slice=3)
        assert np.array_equal(parts["calibration"], held)
        for name in ("train", "val", "test"):
            assert not np.isin(parts[name], held).any(), name
        # the heads were trained and early-stopped on exactly those rows, not on the slice
        full = fs.fold_observations(fold)
        assert run.metrics["n_train_images"] == len(load_rows(fs, "sim", parts["train"])[0])
        assert run.metrics["n_val_images"] == len(load_rows(fs, "sim", parts["val"])[0])
        assert len(load_rows(fs, "sim", full["val"])[0]) > run.metrics["n_val_images"]
        assert np.array_equal(np.sort(np.concatenate([parts["val"], held[np.isin(held, full["val"])]])),
                              full["val"])
    # the out-of-fold runs trained on all of p1/p2
    oof_fold1 = runs["oof"][0]
    assert oof_fold1.metrics["n_val_images"] == len(
        load_rows(fs, "sim", fs.fold_observations(1)["val"])[0])


def test_slice_is_deterministic_and_stratified(trained):
    fs, _ = trained
    assert np.array_equal(fs.calibration_observations(), fs.calibration_observations(seed=SEED))
    ids = np.arange(300, dtype=np.int64)
    parts = np.repeat([0, 1], 150)
    strata = np.tile(np.arange(10), 30)
    a = calibration_mask(ids, parts, strata, seed=4)
    order = np.random.default_rng(0).permutation(300)
    b = calibration_mask(ids[order], parts[order], strata[order], seed=4)
    assert np.array_equal(a[order], b)  # independent of the input order
    assert not np.array_equal(a, calibration_mask(ids, parts, strata, seed=5))
    for p in (0, 1):
        for c in range(10):
            sel = (parts == p) & (strata == c)
            assert a[sel].sum() == 5  # 15 per (part, species): one in three exactly
    with pytest.raises(StoreError, match="at least 2"):
        calibration_mask(ids, parts, strata, seed=4, one_in=1)


def test_deployed_temperature_is_fitted_on_the_ensemble_over_the_slice(trained):
    fs, runs = trained
    model = ScoringModel.load(fs, [runs["holdout"][-1].run_id])
    cal = model.calibration
    assert cal.mode == "holdout"
    rows, _ = load_rows(fs, "sim", fs.calibration_observations())
    s = observation_scores(model.ensemble, rows)
    y = fs.observation_class_ids(s.observation_ids)
    known = np.isin(y, model.classes)
    labels = np.where(known, np.searchsorted(model.classes, np.where(known, y, 0)), -1)
    by_hand = TemperatureScaler().fit(s.log_probs, labels)
    assert cal.temperature_scaler.temperature_ == pytest.approx(by_hand.temperature_, rel=1e-9)
    assert cal.metrics["n_val_observations"] == len(s.observation_ids)
    # the single-head out-of-fold mode on the same heads fits other observations
    oof = calib.calibrate(fs, model.members, model.ensemble, model.poisonous, model.index,
                          "sim", mode="oof")
    assert oof.mode == "oof"
    assert oof.metrics["n_val_observations"] > cal.metrics["n_val_observations"]
    assert oof.temperature_scaler.temperature_ != pytest.approx(by_hand.temperature_, rel=1e-6)


def test_poison_shift_setting(trained):
    fs, runs = trained
    model = ScoringModel.load(fs, [runs["holdout"][-1].run_id])
    on = calib.calibrate(fs, model.members, model.ensemble, model.poisonous, model.index, "sim",
                         poison_shift=True)
    off = calib.calibrate(fs, model.members, model.ensemble, model.poisonous, model.index, "sim",
                          poison_shift=False)
    assert on.fitted_prior.bias_ == off.fitted_prior.bias_ != 0.0
    assert off.prior.bias_ == 0.0 and on.prior.bias_ == on.fitted_prior.bias_
    lp = np.log(np.full((2, len(model.classes)), 1.0 / len(model.classes)))
    assert np.allclose(off.species_probs(lp, model.poisonous), off.temperature_scaler.transform(lp))
    back = calib.Calibration.from_dict(off.to_dict())
    assert back.poison_shift is False and back.prior.bias_ == 0.0


def test_old_runs_are_refused_until_recalibrated_then_load_as_out_of_fold(trained):
    fs, runs = trained
    ens = runs["oof"][-1]
    for r in runs["oof"]:  # strip the setting: what a run recorded before it existed holds
        rec = fs.get_run(r.run_id)
        config = {k: v for k, v in rec["config"].items() if k != "calibration"}
        fs.record_run(r.run_id, rec["kind"], rec["space"], rec["head"], rec["fold"], config,
                      rec["metrics"], rec["path"], split_seed=rec["split_seed"])
    # an old-format calibration record of these heads is refused, not trusted nor refitted
    cal_id = calib.record_id([r.run_id for r in runs["oof"][:2]])
    old = {"format": 2, "temperature": {}, "platt": {}, "detector": {}, "poison_prior": {},
           "unknown_rate": 0.3, "split_seed": SEED, "metrics": {}}
    fs.record_run(cal_id, "calibration", "sim", None, None, {}, old, None, split_seed=SEED)
    with pytest.raises(SporeprintError, match="older format") as err:
        ScoringModel.load(fs, [ens.run_id])
    assert f"sporeprint calibrate --store {fs.path} --run {ens.run_id}" in str(err.value)
    assert "\n" not in str(err.value)
    assert fs.get_run(cal_id)["metrics"]["format"] == 2  # loading wrote nothing
    calib.fit_and_record(fs, [ens.run_id])
    model = ScoringModel.load(fs, [ens.run_id])
    assert model.calibration.mode == "oof" and model.calibration.format == calib.FORMAT
    assert fs.get_run(cal_id)["metrics"]["format"] == calib.FORMAT
    with pytest.raises(SporeprintError, match="sporeprint train --calibration holdout"):
        calib.calibrate(fs, model.members, model.ensemble, model.poisonous, model.index, "sim",
                        mode="holdout")


def test_train_cli_options():
    import argparse

    from sporeprint.commands import train

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(["--store", "s", "--space", "x", "--calibration", "oof",
                              "--poison-shift"])
    assert args.calibration == "oof" and args.poison_shift is True
    args = parser.parse_args(["--store", "s", "--space", "x"])
    assert args.calibration == DEFAULT_CALIBRATION  # the measured defaults
    assert args.poison_shift is DEFAULT_POISON_SHIFT is False  # off: docs/results.md
    with pytest.raises(SystemExit):
        parser.parse_args(["--store", "s", "--space", "x", "--calibration", "ensemble"])


def test_a_changed_slice_is_refused(trained):
    fs, runs = trained
    model = ScoringModel.load(fs, [runs["holdout"][-1].run_id])
    held = fs.calibration_observations()
    records = [fs.get_run(r.run_id) for r in runs["holdout"][:2]]
    assert {r["config"]["calibration"]["slice_digest"] for r in records} == {slice_digest(held)}
    assert slice_digest(held[1:]) != slice_digest(held)
    # what the runs would hold had the slice moved since training (relabelled observations)
    for rec in records:
        cal = {**rec["config"]["calibration"], "slice_digest": slice_digest(held[1:])}
        fs.record_run(rec["run_id"], rec["kind"], rec["space"], rec["head"], rec["fold"],
                      {**rec["config"], "calibration": cal}, rec["metrics"], rec["path"],
                      split_seed=rec["split_seed"])
    try:
        with pytest.raises(SporeprintError, match="calibration slice .* has changed"):
            calib.calibrate(fs, model.members, model.ensemble, model.poisonous, model.index,
                            "sim")
    finally:
        for rec in records:
            fs.record_run(rec["run_id"], rec["kind"], rec["space"], rec["head"], rec["fold"],
                          rec["config"], rec["metrics"], rec["path"], split_seed=rec["split_seed"])
    assert calib.calibrate(fs, model.members, model.ensemble, model.poisonous, model.index,
                           "sim").mode == "holdout"

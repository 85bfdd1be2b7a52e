"""Calibration belongs to training: `sporeprint train` records it, `sporeprint calibrate`
refits it, and scoring, the report, `decide` and the Python API only read it."""

from __future__ import annotations

import hashlib
import shutil
import time

import numpy as np
import pytest
from conftest import trained_store_cli

import sporeprint
from heads.train import TrainConfig
from sporeprint.cli import main
from sporeprint.errors import SporeprintError
from sporeprint.scoring import ScoringModel
from sporeprint.scoring.calibration import fit_and_record, record_id
from sporeprint.scoring.runs import resolve_runs
from sporeprint.training import train_folds
from store import FeatureStore

SPACE = "sim"


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _runs(fs) -> list[tuple]:
    return [(r["run_id"], r["kind"], r["metrics"]) for r in fs.sql(
        "SELECT run_id, kind, metrics FROM runs ORDER BY run_id").to_pylist()]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A CLI-trained two-fold ensemble; one batch scored."""
    root = tmp_path_factory.mktemp("calibrate")
    store, files = trained_store_cli(root, seed=2, space=SPACE, score=False)
    with FeatureStore(store, read_only=True) as fs:
        ensemble = fs.latest_runs(("ensemble",), limit=1)[0]
        members = [r["run_id"] for r in resolve_runs(fs, [ensemble])]
        record = fs.get_run(record_id(members))
    return {"root": root, "store": store, "files": files, "ensemble": ensemble,
            "members": members, "record": record}


def test_train_records_the_ensembles_calibration(world):
    rec = world["record"]
    assert rec is not None and rec["kind"] == "calibration"
    assert sorted(rec["config"]["members"]) == sorted(world["members"]) and len(
        world["members"]) == 2
    assert rec["metrics"]["mode"] == "oof" and rec["metrics"]["metrics"]["n_val_observations"] > 0


def test_scoring_reading_and_deciding_write_no_training_artifact(world, capsys, tmp_path):
    store, files = world["store"], world["files"]
    with FeatureStore(store, read_only=True) as fs:
        before = _runs(fs)
    assert main(["score", "--store", str(store), "--metadata", str(files["test"]),
                 "--embeddings", str(files["embeddings_test"]), "--batch", "heldout",
                 "--out", str(world["root"] / "p.csv")]) == 0
    with FeatureStore(store, read_only=True) as fs:
        assert _runs(fs) == before  # score wrote predictions, no run or calibration record

    # a copy of the store and its heads, opened read-only by everything that only reads
    copy = tmp_path / "copy" / store.name
    copy.parent.mkdir()
    shutil.copy2(store, copy)
    shutil.copytree(str(store) + ".runs", str(copy) + ".runs")
    digest = _digest(copy)
    with FeatureStore(copy, read_only=True) as fs:
        model = ScoringModel.load(fs, [world["ensemble"]])
        assert model.calibration.to_dict() == world["record"]["metrics"]
        _, vectors = fs.fetch_embeddings(SPACE, fs.selection_image_ids(SPACE, "train")[:3])
    table = model.predict(vectors)
    assert table.num_rows == 3
    with sporeprint.open(copy) as db:
        assert db.model().predict(vectors).column("class_id") == table.column("class_id")
    capsys.readouterr()
    assert main(["decide", "--store", str(copy), "--batch", "heldout",
                 "--cost-poisonous-as-edible", "10"]) == 0
    assert main(["report", "--store", str(copy), "--out", str(tmp_path / "r.html"),
                 "--heldout-points", "50", "--map-points", "100",
                 "--frontier-points", "100"]) == 0
    assert "Calibration record" in (tmp_path / "r.html").read_text()
    assert _digest(copy) == digest


def test_runs_without_a_record_are_refused_until_calibrated(world, capsys):
    store = world["store"]
    time.sleep(1.1)  # run ids carry a one-second stamp
    with FeatureStore(store) as fs:
        runs = train_folds(fs, SPACE, head="linear", folds=[1],
                           config=TrainConfig(epochs=1, progress=False))
        run_id = runs[-1].run_id
        with pytest.raises(SporeprintError) as err:
            ScoringModel.load(fs, [run_id])
        assert fs.get_run(record_id([run_id])) is None  # refusing wrote nothing
    msg = str(err.value)
    assert "\n" not in msg and f"sporeprint calibrate --store {store} --run {run_id}" in msg
    capsys.readouterr()
    assert main(["score", "--store", str(store), "--metadata", str(world["files"]["test"]),
                 "--embeddings", str(world["files"]["embeddings_test"]), "--run", run_id,
                 "--out", str(world["root"] / "q.csv")]) == 2
    assert "sporeprint calibrate" in capsys.readouterr().err
    assert main(["calibrate", "--store", str(store), "--run", run_id]) == 0
    assert capsys.readouterr().out.startswith(record_id([run_id]) + "\tmode oof")
    with FeatureStore(store, read_only=True) as fs:
        model = ScoringModel.load(fs, [run_id])
        assert model.calibration.metrics["n_val_observations"] == len(
            np.unique(fs.fold_observations(1)["val"]))
        with pytest.raises(SporeprintError, match="read-only"):
            fit_and_record(fs, [run_id])
    # with no --run: the default run (the newest ensemble), what `sporeprint score` uses
    assert main(["calibrate", "--store", str(store)]) == 0
    assert capsys.readouterr().out.startswith(record_id(world["members"]) + "\t")

"""`sporeprint train` end to end on a tiny simulated store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_simulated_store

from heads.classifier import Classifier
from sporeprint.cli import main
from sporeprint.scoring.calibration import record_id
from sporeprint.training import fold_rows
from store import FeatureStore


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = make_simulated_store(tmp_path_factory.mktemp("train"), dim=16)
    return path


def test_train_all_folds_records_runs(store_path, capsys):
    rc = main(["train", "--store", str(store_path), "--space", "sim", "--head", "mlp",
               "--hidden", "32", "--epochs", "2", "--lr", "3e-3", "--fold", "all",
               "--batch-size", "64", "--sampler", "val_matched"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4  # fold 1, fold 2, ensemble, the ensemble's calibration
    ensemble = lines[2].split("\t")[0]
    assert lines[3].startswith(f"calibrated {ensemble}\tmode oof, temperature ")
    with FeatureStore(store_path, read_only=True) as fs:
        runs = fs.sql("SELECT run_id, kind, fold, config, metrics, path FROM runs ORDER BY run_id")
        rows = runs.to_pylist()
        assert [r["kind"] for r in rows].count("train") == 2
        assert [r["kind"] for r in rows].count("ensemble") == 1
        train_rows = [r for r in rows if r["kind"] == "train"]
        assert sorted(r["fold"] for r in train_rows) == [1, 2]
        for r in train_rows:
            metrics = json.loads(r["metrics"])
            assert 0.0 <= metrics["accuracy"] <= 1.0 and "track3" in metrics
            assert json.loads(r["config"])["head"]["hidden"] == 32
            clf = Classifier.load(r["path"], space="sim", dim=16)
            train, val, _, names = fold_rows(fs, "sim", r["fold"])
            assert clf.feature_names == names
            # class list = the class ids seen in this fold's training rows
            assert clf.classes_.tolist() == np.unique(train.class_ids[train.class_ids >= 0]).tolist()
            assert set(val.observation_ids).isdisjoint(train.observation_ids)
            # each image row carries its own observation's label and features
            _, feats, _ = fs.fetch_features(train.observation_ids[:5])
            np.testing.assert_array_equal(train.metadata[:5], feats)
            truth = fs.sql("SELECT class_id FROM observations WHERE observation_id = ?",
                           [int(val.observation_ids[0])]).column(0)[0].as_py()
            assert val.class_ids[0] == truth
            probs = clf.predict_proba(val.embeddings, val.metadata)
            np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
        ens = json.loads(next(r for r in rows if r["kind"] == "ensemble")["metrics"])
        assert "test_track3" in ens
        cal = next(r for r in rows if r["kind"] == "calibration")
        assert cal["run_id"] == record_id([r["run_id"] for r in train_rows])


def test_train_bad_space_is_a_clear_error(store_path, capsys):
    rc = main(["train", "--store", str(store_path), "--space", "nope", "--fold", "1",
               "--epochs", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "sim" in err


def test_cli_defaults_are_the_python_defaults_and_every_option_is_explained():
    from heads.config import MLPConfig, TrainConfig
    from sporeprint.cli import build_parser

    parser = build_parser()[1]["train"]
    args = parser.parse_args(["--store", "s", "--space", "x"])
    tc = TrainConfig()
    for name in ("epochs", "batch_size", "lr", "loss", "poison_weight", "poison_mode",
                 "taxonomy_weight", "sampler", "scheduler", "restart_epochs", "patience", "seed",
                 "device"):
        assert getattr(args, name) == getattr(tc, name), name
    assert args.hidden == MLPConfig.hidden and tc.lr == 1e-3
    for action in parser._actions:
        assert action.help, action.option_strings
    text = parser.format_help()
    assert "default: None" not in text and text.count("(default: 0.001)") == 1
    assert text.rstrip().splitlines()[-1].strip().startswith("sporeprint train --store ")
    calibrate = build_parser()[1]["calibrate"]
    assert all(a.help for a in calibrate._actions)
    assert calibrate.format_help().rstrip().splitlines()[-1].strip().startswith(
        "sporeprint calibrate --store ")


def test_taxonomy_weight_turns_on_the_genus_and_family_loss_and_is_off_by_default(store_path,
                                                                                   capsys):
    import time

    from heads.config import TrainConfig

    base = ["train", "--store", str(store_path), "--space", "sim", "--head", "mlp",
            "--hidden", "32", "--epochs", "1", "--fold", "1", "--batch-size", "64",
            "--seed", "7", "--retrain"]
    runs = {}
    for weight in (None, "2.0"):
        assert main(base + ([] if weight is None else ["--taxonomy-weight", weight])) == 0
        run_id = capsys.readouterr().out.strip().splitlines()[0].split("\t")[0]
        with FeatureStore(store_path, read_only=True) as fs:
            run = fs.get_run(run_id)
        runs[weight] = (run["config"], run["metrics"]["history"][0]["train_loss"],
                        Classifier.load(run["path"], space="sim", dim=16))
        time.sleep(1.1)  # run ids carry a one-second stamp
    plain, taxonomy = runs[None], runs["2.0"]
    assert TrainConfig().taxonomy_weight == 0.0
    assert plain[0]["train"]["taxonomy_weight"] == 0.0
    assert plain[0]["head"]["num_genus"] == 0 and plain[0]["head"]["num_family"] == 0
    assert taxonomy[0]["train"]["taxonomy_weight"] == 2.0
    assert taxonomy[0]["head"]["num_genus"] > 1 and taxonomy[0]["head"]["num_family"] > 1
    assert taxonomy[2].config_.num_genus == taxonomy[0]["head"]["num_genus"]
    # the same seed, data and head: only the beta * (genus CE + family CE) term differs
    assert taxonomy[1] > plain[1] + 1.0, (taxonomy[1], plain[1])

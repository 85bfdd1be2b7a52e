"""`sporeprint train` killed between its folds resumes: a rerun of the same command keeps
the finished fold run (its head files untouched), trains only the missing fold, and builds
and calibrates the ensemble; other settings or other data train afresh."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from conftest import make_simulated_store

from heads.train import TrainConfig
from sporeprint.cli import main
from sporeprint.scoring.calibration import record_id
from sporeprint.training import calibration_settings, fold_identity, fold_rows
from store import FeatureStore

ROOT = Path(__file__).resolve().parents[1]
# tiny settings; enough epochs (no early stopping) that fold 2 is still training when the
# kill arrives right after it starts
ARGS = ["--space", "sim", "--fold", "all", "--hidden", "16", "--epochs", "20", "--patience",
        "0", "--batch-size", "64", "--device", "cpu"]


def _files(folder: Path) -> dict[str, tuple[str, int]]:
    """Each file of a head folder: (sha256, mtime in ns)."""
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir())}


def _runs(store: Path) -> list[dict]:
    with FeatureStore(store, read_only=True) as fs:
        rows = fs.sql("SELECT run_id, kind, fold, config, path FROM runs ORDER BY run_id")
        return [fs.get_run(r["run_id"]) for r in rows.to_pylist()]


def _train_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if not line.startswith(("reused ", "calibrated "))]


def test_a_train_killed_in_fold_2_resumes_with_the_finished_fold_1(tmp_path, capsys):
    store = make_simulated_store(tmp_path, dim=16)
    cmd = [sys.executable, "-m", "sporeprint", "train", "--store", str(store), *ARGS]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, text=True)
    seen = []
    for line in child.stderr:  # fold 2 logs its start after fold 1's run is recorded
        seen.append(line)
        if "fold 2: " in line and "training images" in line:
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=120)
    assert child.returncode == -signal.SIGKILL, "".join(seen[-5:])

    before = _runs(store)
    assert [(r["kind"], r["fold"]) for r in before] == [("train", 1)]  # killed inside fold 2
    fold1 = before[0]
    heads = Path(fold1["path"])
    files = _files(heads)
    assert set(files) == {"config.json", "model.safetensors"}

    assert main(["train", "--store", str(store), *ARGS]) == 0
    out = capsys.readouterr().out
    assert f"reused fold 1 run {fold1['run_id']} (same settings and data" in out
    assert "reused fold 2" not in out
    after = _runs(store)
    train = [r for r in after if r["kind"] == "train"]
    assert sorted(r["fold"] for r in train) == [1, 2]  # exactly one run of each fold
    fold2 = next(r for r in train if r["fold"] == 2)
    ensemble = [r for r in after if r["kind"] == "ensemble"]
    assert len(ensemble) == 1
    assert ensemble[0]["config"]["members"] == [fold1["run_id"], fold2["run_id"]]
    assert "test_track3" in ensemble[0]["metrics"]
    calibration = [r for r in after if r["kind"] == "calibration"]
    assert [r["run_id"] for r in calibration] == [record_id([fold1["run_id"], fold2["run_id"]])]
    assert _files(heads) == files  # the reused head was read, not rewritten
    assert next(r for r in train if r["fold"] == 1) == fold1
    lines = _train_lines(out)
    assert [line.split("\t")[0] for line in lines] == [fold1["run_id"], fold2["run_id"],
                                                         ensemble[0]["run_id"]]

    # the same command once more: nothing to train, the ensemble too is the recorded one
    assert main(["train", "--store", str(store), *ARGS]) == 0
    out = capsys.readouterr().out
    assert "reused fold 2 run" in out and f"reused ensemble run {ensemble[0]['run_id']}" in out
    assert [r["run_id"] for r in _runs(store)] == [r["run_id"] for r in after]

    # other settings train afresh, nothing is said to be reused (fold 1 alone, to be quick)
    assert main(["train", "--store", str(store), *ARGS, "--fold", "1", "--seed", "1"]) == 0
    assert "reused" not in capsys.readouterr().out
    assert sorted(r["fold"] for r in _runs(store) if r["kind"] == "train") == [1, 1, 2]

    # --retrain: the same settings as the finished fold 1 train again
    assert main(["train", "--store", str(store), *ARGS, "--fold", "1", "--retrain"]) == 0
    assert "reused" not in capsys.readouterr().out
    assert sorted(r["fold"] for r in _runs(store) if r["kind"] == "train") == [1, 1, 1, 2]


def test_the_fold_identity_changes_with_the_settings_the_split_and_the_data(tmp_path):
    store = make_simulated_store(tmp_path, dim=16)
    with FeatureStore(store) as fs:
        fs.fit_encoder()
        fs.make_splits(0)
        train, val, _, names = fold_rows(fs, "sim", 1, 0)
    config, settings = TrainConfig(epochs=2), calibration_settings()

    def identity(**change):
        args = dict(space="sim", head="mlp", head_params={"hidden": 16}, config=config,
                    settings=settings, split_seed=0, fold=1, names=names, train=train, val=val)
        args.update(change)
        return fold_identity(**args)

    base = identity()
    assert identity() == base
    assert identity(config=replace(config, progress=False)) == base  # display only
    changed = {
        "lr": identity(config=replace(config, lr=3e-3)),
        "hidden": identity(head_params={"hidden": 32}),
        "calibration": identity(settings=calibration_settings("holdout")),
        "split seed": identity(split_seed=1),
        "fold": identity(fold=2),
    }
    emb = train.embeddings.copy()
    emb[3, 0] += 1e-3
    changed["one embedding value"] = identity(train=replace(train, embeddings=emb))
    labels = val.class_ids.copy()
    labels[0] = -1 if labels[0] != -1 else 0
    changed["one validation label"] = identity(val=replace(val, class_ids=labels))
    changed["one image fewer"] = identity(train=replace(
        train, **{k: getattr(train, k)[1:] for k in ("image_ids", "observation_ids",
                                                     "class_ids", "embeddings", "metadata")}))
    assert all(v != base for v in changed.values()), changed
    assert len(set(changed.values())) == len(changed)

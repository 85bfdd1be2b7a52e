"""Heads are scored only with the metadata columns they were trained on: a store whose
encoder was refitted after training (new training metadata) refuses the old heads in
one line naming `sporeprint train`, through the API and the CLI."""

from __future__ import annotations

import pytest
from conftest import ingest_simulation_cli

import sporeprint
from sporeprint.cli import main
from sporeprint.errors import SporeprintError
from store import FeatureStore

SPACE = "sim"


def test_heads_trained_on_other_feature_names_are_refused(tmp_path, capsys):
    store, files = ingest_simulation_cli(tmp_path, seed=5, space=SPACE)
    assert main(["train", "--store", str(store), "--space", SPACE, "--hidden", "16",
                 "--epochs", "1"]) == 0
    with sporeprint.open(store) as db:  # the encoder the heads were trained with: accepted
        assert db.model().classes.size > 0
    with FeatureStore(store) as fs:
        before = fs.encoder()
        fs.sql("UPDATE observations SET habitat = 'salt marsh on the moon' WHERE observation_id "
               "= (SELECT min(observation_id) FROM observations WHERE role = 'train')")
        after = fs.fit_encoder()
    assert after.version == before.version + 1 and after.columns != before.columns
    with sporeprint.open(store) as db, pytest.raises(SporeprintError) as exc:
        db.model()
    message = str(exc.value)
    assert "sporeprint train" in message and f"version {after.version}" in message
    assert f"makes {len(after.columns)}" in message
    capsys.readouterr()
    assert main(["score", "--store", str(store), "--metadata", str(files["test"]),
                 "--embeddings", str(files["embeddings_test"]),
                 "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "sporeprint train" in err
    assert not (tmp_path / "p.csv").exists()

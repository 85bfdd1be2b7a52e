"""`sporeprint demo` runs end to end (one epoch, a few photos) and leaves a usable store."""

from __future__ import annotations

from conftest import copy_folder

from sporeprint.cli import main
from store import FeatureStore


def test_demo_end_to_end(demo_world, tmp_path, capsys):
    out = demo_world["stdout"]
    for heading in ("Held-out batch, official scores", "Decision analysis", "Track 3-optimal rule",
                    "Example SQL", "Look-alikes of observation", "Try next:"):
        assert heading in out
    with FeatureStore(demo_world["dir"] / "fungi.duckdb", read_only=True) as fs:
        n_test = fs.sql("SELECT count(*) FROM observations WHERE role = 'new'").column(0)[0].as_py()
        n_pred = fs.sql("SELECT count(DISTINCT observation_id) FROM predictions").column(0)[0].as_py()
        assert n_test == n_pred > 0
        assert fs.sql("SELECT count(*) FROM emb_dinov2_tiny").column(0)[0].as_py() > 0
    # a second run into the same directory refuses instead of mixing two stores
    again = copy_folder(demo_world["dir"], tmp_path / "demo")
    assert main(["demo", "--dir", str(again), "--epochs", "1"]) == 2
    assert "already exists" in capsys.readouterr().err

"""`sporeprint demo` runs end to end (one epoch, a few held-out photos) and leaves a usable
store whose default run identifies photos: `score --images` and `search --image` work on
the demo's own photos."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.csv as pacsv
from conftest import copy_folder

from sporeprint.cli import main
from sporeprint.demo import PHOTO_SPACE, SPACE
from store import FeatureStore


def test_demo_end_to_end(demo_world, tmp_path, capsys):
    out = demo_world["stdout"]
    for heading in ("Photos in, answers out", "Held-out batch, official scores", "Decision analysis",
                    "Track 3-optimal rule", "Example SQL", "Look-alikes of observation",
                    "Look-alikes of the photo", "Try next:"):
        assert heading in out
    # the photo heads' held-out top-1 is measured and printed, whatever it is
    assert re.search(r"scored from photos: \d+\.\d% of \d+ \(the simulated-vector heads: "
                     r"\d+\.\d% of \d+\)", out)
    with FeatureStore(demo_world["dir"] / "fungi.duckdb", read_only=True) as fs:
        n_test = fs.sql("SELECT count(*) FROM observations WHERE role = 'new'").column(0)[0].as_py()
        per_batch = {r["batch"]: r["n"] for r in fs.sql(
            "SELECT batch, count(DISTINCT observation_id) AS n FROM predictions GROUP BY 1"
        ).to_pylist()}
        assert per_batch == {"heldout": n_test, "heldout_photos": n_test} and n_test > 0
        # every training image has a photo vector: the photo heads learnt from them
        photo_train = fs.sql(f"SELECT count(*) FROM emb_{PHOTO_SPACE} e JOIN images i "
                             "USING (image_id) JOIN observations o USING (observation_id) "
                             "WHERE o.role = 'train'").column(0)[0].as_py()
        train_images = fs.sql("SELECT count(*) FROM images i JOIN observations o "
                              "USING (observation_id) WHERE o.role = 'train'").column(0)[0].as_py()
        assert photo_train == train_images > 0
        # the photo ensemble was trained last: score, serve and report use it by default
        default = fs.get_run(fs.default_run())
        assert default["space"] == PHOTO_SPACE and default["kind"] == "ensemble"
        sim_runs = fs.sql("SELECT count(*) FROM runs WHERE kind = 'ensemble' AND space = ?",
                          [SPACE]).column(0)[0].as_py()
        assert sim_runs == 1
    # a second run into the same directory refuses instead of mixing two stores
    again = copy_folder(demo_world["dir"], tmp_path / "demo")
    assert main(["demo", "--dir", str(again), "--epochs", "1"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_score_images_answers_every_heldout_observation(demo_world, tmp_path, capsys):
    demo = copy_folder(demo_world["dir"], tmp_path / "demo")  # scoring writes
    data = demo / "data"
    out = tmp_path / "photos.csv"
    capsys.readouterr()
    assert main(["score", "--store", str(demo / "fungi.duckdb"), "--metadata",
                 str(data / "test_2024.csv"), "--images", str(data / "images"), "--out", str(out),
                 "--batch", "again", "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert f"scored with {PHOTO_SPACE}-mlp-fold1" in printed  # the default run: the photo heads
    test = pacsv.read_csv(data / "test_2024.csv").to_pylist()
    with_photo = {r["observation_id"] for r in test if (data / "images" / r["image_path"]).is_file()}
    every = {r["observation_id"] for r in test}
    got = pacsv.read_csv(out.with_name("photos.full.csv")).to_pylist()
    assert sorted(r["observation_id"] for r in got) == sorted(every)  # one answer each
    status = {r["observation_id"]: r["status"] for r in got}
    assert 0 < len(with_photo) < len(every)
    assert {status[o] for o in with_photo} == {"scored"}
    assert {status[o] for o in every - with_photo} == {"no_usable_image"}
    for r in got:
        assert 0.0 <= r["poison_prob"] <= 1.0 and r["kind"] in (
            "species", "poison_risk", "unknown", "prior_only")
        if r["status"] == "scored":
            assert len(str(r["evidence_observation_ids"]).split()) > 0


def test_search_by_photo_finds_labelled_training_observations(demo_world, capsys):
    test = pacsv.read_csv(demo_world["dir"] / "data" / "test_2024.csv").to_pylist()
    images = demo_world["dir"] / "data" / "images"
    photo = next(images / r["image_path"] for r in test if (images / r["image_path"]).is_file())
    capsys.readouterr()
    # no --space: the default run's space (the demo store has two)
    assert main(["search", "--store", str(demo_world["dir"] / "fungi.duckdb"), "--image",
                 str(photo), "-k", "5", "--format", "json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 5
    assert {h["role"] for h in hits} == {"train"}
    assert all(h["species"] for h in hits)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and scores[0] < 0.999  # not the photo itself


def test_the_ids_the_serve_docs_and_page_show_exist_in_the_demo_store(demo_world):
    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "serve.md").read_text()
    page = (root / "sporeprint" / "serve" / "templates" / "page.html").read_text()
    ids = {int(x) for x in re.findall(r"\b(2\d{9})\b", text + page)}
    assert 2708537666 in ids and len(ids) > 3
    with FeatureStore(demo_world["dir"] / "fungi.duckdb", read_only=True) as fs:
        stored = set(fs.existing_observations(sorted(ids)).column(0).to_pylist())
    assert stored == ids, sorted(ids - stored)

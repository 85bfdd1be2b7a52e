"""Enrolling species the heads never saw: the labels file's rules, the record and its undo,
answers from `score`, `model.predict` and the page's identify API, the poison status an
enrolled species gets, `train` after an enrollment, and the README's enrollment block
as written. Runs on a private copy of the session's demo store."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import sporeprint
from sporeprint.cli import main
from sporeprint.errors import SporeprintError
from store import InvalidValueError
from tests.conftest import copy_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def demo(demo_world, tmp_path) -> Path:
    """A private copy of the demo folder; returns its store."""
    return copy_folder(demo_world["dir"], tmp_path / "demo-run") / "fungi.duckdb"


def _sim_run(db) -> str:
    return db.sql("SELECT run_id FROM runs WHERE kind = 'ensemble' AND space = 'sim'")[
        "run_id"][0].as_py()


def _unseen(db, n_species: int = 2) -> list[dict]:
    """Val observations of the ``n_species`` most observed species the heads never saw
    (the simulator stores their names beside class -1)."""
    return db.sql(
        "WITH s AS (SELECT species, count(*) AS n FROM observations WHERE role = 'val' AND "
        "class_id = -1 GROUP BY 1 ORDER BY n DESC, species LIMIT ?) SELECT o.observation_id, "
        "o.species FROM observations o JOIN s USING (species) WHERE o.role = 'val' AND "
        "o.class_id = -1 ORDER BY o.species, o.observation_id", [n_species]).to_pylist()


def _write(path: Path, rows: list[dict], extra: str = "") -> Path:
    head = "observation_id,species" + ("," + extra if extra else "")
    lines = [head] + [",".join(str(r[k]) for k in ["observation_id", "species",
                                                   *([extra] if extra else [])]) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _predictions(db, batch: str) -> pa.Table:
    t = db.sql("SELECT * EXCLUDE (created_at) FROM predictions WHERE batch = ? "
               "ORDER BY observation_id", [batch])
    return t


def _score(store: Path, run: str, batch: str, out: Path) -> None:
    data = store.parent / "data"
    assert main(["score", "--store", str(store), "--metadata", str(data / "test_2024.csv"),
                 "--embeddings", str(data / "embeddings_test.parquet"), "--run", run,
                 "--batch", batch, "--out", str(out)]) == 0


def test_labels_file_rules(demo, tmp_path):
    with sporeprint.open(demo, write=True) as db:
        obs = _unseen(db, 1)
        train_id = db.sql("SELECT min(observation_id) AS i FROM observations WHERE role = "
                          "'train'")["i"][0].as_py()
        bad = tmp_path / "bad.csv"
        bad.write_text("observation_id,species,colour\n1,A b,red\n")
        with pytest.raises(InvalidValueError, match="column 'colour'"):
            db.enroll(bad)
        bad.write_text(f"observation_id,species,poisonous\n{obs[0]['observation_id']},A b,maybe\n")
        with pytest.raises(InvalidValueError, match="poisonous 'maybe'"):
            db.enroll(bad)
        bad.write_text("observation_id,species\n999999999999,A b\n")
        with pytest.raises(InvalidValueError, match="not in the store"):
            db.enroll(bad)
        bad.write_text(f"observation_id,species\n{train_id},A b\n")
        with pytest.raises(InvalidValueError, match="training observations"):
            db.enroll(bad)
        # a poisonous value against the official list is refused; the list governs
        poison = db.sql("SELECT species FROM species WHERE poisonous AND species IS NOT NULL "
                        "LIMIT 1")["species"][0].as_py()
        bad.write_text(f"observation_id,species,poisonous\n{obs[0]['observation_id']},"
                       f"{poison},no\n")
        with pytest.raises(InvalidValueError, match="contradicts the official poisonous list"):
            db.enroll(bad)
        assert db.enrollments().num_rows == 0  # nothing was recorded by a refusal
        report = db.enroll(_write(tmp_path / "ok.csv", obs), by="tester")
        assert report.enrollment_id == 1 and len(report.new_species) == 1
        assert report.new_species[0][0] == 1604  # past the official list's 0..1603
        with pytest.raises(InvalidValueError, match="already enrolled"):
            db.enroll(_write(tmp_path / "again.csv", obs[:1]))
        record = db.enrollments().to_pylist()[0]
        assert record["enrolled_by"] == "tester" and record["labels_digest"].startswith("sha256:")
        # a name spelt otherwise joins the same species; the official list is unchanged
        db.undo_enrollment(1)
        rows = [{"observation_id": r["observation_id"], "species": r["species"].upper()}
                for r in obs]
        again = db.enroll(_write(tmp_path / "upper.csv", rows))
        assert again.new_species == [] and again.joined[0][0] == 1604
        assert db.sql("SELECT max(class_id) AS m FROM species")["m"][0].as_py() == 1603
        with pytest.raises(InvalidValueError, match="no enrollment 7"):
            db.undo_enrollment(7)


def test_enrolled_species_answered_and_undo_restores_the_answers(demo, tmp_path):
    with sporeprint.open(demo) as db:
        run = _sim_run(db)
        obs = _unseen(db, 2)
    _score(demo, run, "before", tmp_path / "before.csv")
    labels = _write(tmp_path / "experts.csv", obs)
    assert main(["enroll", "--store", str(demo), "--labels", str(labels)]) == 0
    _score(demo, run, "during", tmp_path / "during.csv")
    assert main(["enroll", "--store", str(demo), "--undo", "1"]) == 0
    _score(demo, run, "after", tmp_path / "after.csv")
    with sporeprint.open(demo) as db:
        before, during, after = (_predictions(db, b).drop_columns(["batch"])
                                 for b in ("before", "during", "after"))
        assert after.equals(before)  # undo restores the previous answers exactly
        enrolled = [c >= 1604 for c in during.column("class_id").to_pylist()]
        assert any(enrolled), "no observation of the batch was answered an enrolled species"
        tops = [c for row in during.column("top5_class_ids").to_pylist() for c in row]
        assert {1604, 1605} <= set(tops)
        # fewer observations are called unknown once their species is enrolled
        kinds = during.column("kind").to_pylist()
        assert kinds.count("unknown") < before.column("kind").to_pylist().count("unknown")
        # an enrolled species without a poison status is treated as possibly poisonous:
        # never the best edible species, and every answer naming it is a poison answer
        assert not set(during.column("best_edible_class").to_pylist()) & {1604, 1605}
        for c, k in zip(during.column("class_id").to_pylist(), kinds, strict=True):
            if c >= 1604:
                assert k in ("species", "poison_risk")


def test_model_predict_and_the_page_answer_an_enrolled_species(demo, tmp_path):
    from sporeprint.serve.service import Service

    with sporeprint.open(demo, write=True) as db:
        obs = _unseen(db, 1)
        db.enroll(_write(tmp_path / "experts.csv", obs))
        run = _sim_run(db)
        model = db.model(run)
        assert model.enrolled is not None and list(model.enrolled.class_ids) == [1604]
        # the enrolled observations themselves: their own prototype explains them
        ids = np.asarray([r["observation_id"] for r in obs], np.int64)
        images = db.store.observation_images(ids, labelled_only=False)
        image_ids, vectors = db.store.fetch_embeddings("sim", images.column("image_id")
                                                       .to_numpy())
        owner = dict(zip(images.column("image_id").to_pylist(),
                         images.column("observation_id").to_pylist(), strict=True))
        out = model.predict(vectors, observation_ids=[owner[int(i)] for i in image_ids])
        named = out.filter(pa.compute.equal(out["class_id"], 1604))
        assert named.num_rows >= 1
        assert set(named["species"].to_pylist()) == {obs[0]["species"]}
        assert all(p >= 0.0 for p in named["poison_prob"].to_pylist())
        assert bool(model.enrolled.poisonous[0])  # unknown status: possibly poisonous
        assert model.enrolled.status_word(1604) == "unknown"
        vector = vectors.mean(0)
    service = Service(demo, run=run)
    try:
        answer = service.identify_vector(vector.tolist(), {}, {}, 5)
    finally:
        service.close()
    top = {t["class_id"]: t for t in answer["top5"]}
    assert 1604 in top and top[1604]["species"] == obs[0]["species"]
    assert top[1604]["poisonous"] is None  # unknown, never "edible"
    if answer["answer"]["class_id"] == 1604:
        assert answer["answer"]["poisonous"] is None


def test_a_stated_edible_status_makes_the_enrolled_species_edible(demo, tmp_path):
    with sporeprint.open(demo, write=True) as db:
        obs = [{**r, "poisonous": "no"} for r in _unseen(db, 1)]
        db.enroll(_write(tmp_path / "experts.csv", obs, extra="poisonous"))
        model = db.model(_sim_run(db))
        assert not model.enrolled.poisonous[0] and model.enrolled.status_word(1604) == "edible"
        assert db.enrolled_species()["poisonous"].to_pylist() == [False]


def test_enroll_list_and_errors_on_the_command_line(demo, tmp_path, capsys):
    with sporeprint.open(demo) as db:
        obs = _unseen(db, 1)
    labels = _write(tmp_path / "experts.csv", obs)
    assert main(["enroll", "--store", str(demo), "--labels", str(labels), "--by", "ann"]) == 0
    assert main(["enroll", "--store", str(demo), "--list"]) == 0
    out = capsys.readouterr().out
    assert "undo with: sporeprint enroll" in out
    assert re.search(r"^1\t.*\tann\t2? ?\d+ observations, 1 new species.*in force$", out, re.M)
    assert "poison status unknown (treated as possibly poisonous)" in out
    assert main(["enroll", "--store", str(demo), "--undo", "1"]) == 0
    assert main(["enroll", "--store", str(demo), "--undo", "1"]) == 2
    assert "already undone" in capsys.readouterr().err
    assert main(["enroll", "--store", str(demo), "--list"]) == 0
    assert "undone" in capsys.readouterr().out


def test_read_only_database_refuses_to_enroll(demo, tmp_path):
    with sporeprint.open(demo) as db:
        obs = _unseen(db, 1)
        with pytest.raises(SporeprintError, match="read-only"):
            db.enroll(_write(tmp_path / "experts.csv", obs))


def test_train_after_an_enrollment_runs_and_keeps_it(demo, tmp_path):
    """`train` reads the training observations only: an enrollment neither breaks it nor
    changes what it trains on, and the new heads answer the enrolled species too."""
    with sporeprint.open(demo, write=True) as db:
        db.enroll(_write(tmp_path / "experts.csv", _unseen(db, 1)))
    assert main(["train", "--store", str(demo), "--space", "sim", "--hidden", "16",
                 "--epochs", "1"]) == 0
    with sporeprint.open(demo) as db:
        model = db.model()
        assert model.space == "sim" and list(model.enrolled.class_ids) == [1604]
        assert not np.isin(1604, model.classes)


def _readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Enroll a species the model has never seen"):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_readme_enroll_block_runs_as_written(demo):
    folder = demo.parent.parent  # holds demo-run/, as after `make demo`
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{bindir}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", _readme_block()], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "new species 1" in done.stdout and "enrollment 1 undone" in done.stdout
    assert re.search(r"scored with sim-mlp-fold1", done.stdout)

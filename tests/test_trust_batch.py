"""A bad row never blocks a scored batch: through `sporeprint score --embeddings` on a real
trained store, a batch file with one bad row (a value out of range, an unparseable value,
two rows of one observation that disagree, an observation id already stored as training,
an id too large for the store) gets exactly one answer per observation; the bad one is
answered from the training prior with its reject reason, and its image's vector is
skipped, never stored."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from conftest import trained_store_cli

from sporeprint.cli import main
from store import FeatureStore

SPACE = "sim"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust_batch")
    store, files = trained_store_cli(root, seed=0, space=SPACE, score=False)
    return {"root": root, "store": store, "files": files}


def _copy(world, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(world["root"], dst, ignore=shutil.ignore_patterns("copy*"))
    return dst / "fungi.duckdb"


def _batch(world, tmp_path, edit):
    """A 20-row slice of the test file edited by ``edit(rows)``, and a vector file with a
    vector for every row of it (rows that name new image paths get a random vector)."""
    test = pacsv.read_csv(world["files"]["test"]).slice(0, 20)
    rows = [{k: "" if v is None else str(v) for k, v in r.items()} for r in test.to_pylist()]
    edit(rows)
    path = tmp_path / "batch.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    emb = pq.read_table(world["files"]["embeddings_test"])
    by_path = dict(zip(emb["image_path"].to_pylist(),
                       emb["embedding"].to_numpy(zero_copy_only=False), strict=True))
    rng = np.random.default_rng(1)
    paths = list(dict.fromkeys(r["image_path"] for r in rows))
    vectors = [np.asarray(by_path[p], np.float32) if p in by_path
               else rng.normal(size=16).astype(np.float32) for p in paths]
    pq.write_table(pa.table({"image_path": paths,
                             "embedding": pa.array(vectors, pa.list_(pa.float32()))}),
                   tmp_path / "vecs.parquet")
    return path, tmp_path / "vecs.parquet", rows


def _score(store, metadata, vectors, out):
    return main(["score", "--store", str(store), "--metadata", str(metadata), "--embeddings",
                 str(vectors), "--out", str(out)])


def _predictions(store):
    with FeatureStore(store, read_only=True) as fs:
        return {r["observation_id"]: r for r in fs.sql(
            "SELECT observation_id, status, reason FROM predictions WHERE batch = 'batch'"
        ).to_pylist()}


def _one_observation(rows, value):
    """Set ``value`` (a dict of fields) on every row of the first observation."""
    first = rows[0]["observation_id"]
    for r in rows:
        if r["observation_id"] == first:
            r.update(value)
    return int(first)


def _train_row(world):
    train = pacsv.read_csv(world["files"]["train"]).slice(0, 1).to_pylist()[0]
    return int(train["observationID"]), train["image_path"]


CASES = {
    "month 13": ({"month": "13"}, "month"),
    "latitude 999": ({"Latitude": "999"}, "latitude"),
    "day abc": ({"day": "abc"}, "unparseable day 'abc'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_batch_with_a_bad_row_answers_every_observation_once(world, tmp_path, case, capsys):
    store = _copy(world, tmp_path)
    value, reason = CASES[case]
    bad = {}
    metadata, vectors, rows = _batch(world, tmp_path, lambda rows: bad.setdefault(
        "id", _one_observation(rows, value)))
    bad_paths = [r["image_path"] for r in rows if int(r["observation_id"]) == bad["id"]]
    ids = {int(r["observation_id"]) for r in rows}
    for attempt in range(2):  # and scoring it again gives the same answers
        assert _score(store, metadata, vectors, tmp_path / "pred.csv") == 0, attempt
        printed = capsys.readouterr().out
        assert f"vectors skipped {len(bad_paths)}" in printed
        got = _predictions(store)
        assert set(got) == ids
        assert got[bad["id"]]["status"] == "rejected"
        assert got[bad["id"]]["reason"].startswith("no accepted metadata row (")
        assert reason in got[bad["id"]]["reason"]
        assert {r["status"] for i, r in got.items() if i != bad["id"]} == {"scored"}
    submission = pacsv.read_csv(tmp_path / "pred.csv")
    assert sorted(submission["observation_id"].to_pylist()) == sorted(ids)
    with FeatureStore(store, read_only=True) as fs:  # the bad image has no row, no vector
        assert fs.stored_image_paths(bad_paths) == []
        assert fs.sql("SELECT count(*) FROM rejects").column(0)[0].as_py() == len(bad_paths)


def test_two_rows_of_one_observation_that_disagree_keep_the_first_and_skip_the_second(
        world, tmp_path, capsys):
    store = _copy(world, tmp_path)

    def disagree(rows):
        extra = dict(rows[0], image_path="extra-" + rows[0]["image_path"], Habitat="bog")
        rows.append(extra)

    metadata, vectors, rows = _batch(world, tmp_path, disagree)
    assert _score(store, metadata, vectors, tmp_path / "pred.csv") == 0
    assert "vectors skipped 1" in capsys.readouterr().out
    got = _predictions(store)
    assert set(got) == {int(r["observation_id"]) for r in rows}
    assert got[int(rows[0]["observation_id"])]["status"] == "scored"
    with FeatureStore(store, read_only=True) as fs:
        assert fs.stored_image_paths([rows[-1]["image_path"]]) == []
        (reason,) = fs.sql("SELECT reason FROM rejects").column(0).to_pylist()
    assert "habitat" in reason


def test_an_observation_stored_as_training_is_answered_prior_only_and_left_unchanged(
        world, tmp_path, capsys):
    store = _copy(world, tmp_path)
    train_id, train_path = _train_row(world)
    with FeatureStore(store, read_only=True) as fs:
        before = fs.sql("SELECT * FROM observations WHERE observation_id = ?",
                        [train_id]).to_pylist()
        (image_id,) = fs.sql("SELECT image_id FROM images WHERE image_path = ?",
                             [train_path]).column(0).to_pylist()
        _, vector_before = fs.fetch_embeddings(SPACE, np.asarray([image_id]))

    def steal(rows):  # a training observation's id and image path, with other content
        rows[0].update(observation_id=str(train_id), image_path=train_path)

    metadata, vectors, rows = _batch(world, tmp_path, steal)
    table = pq.read_table(vectors)  # a different vector for the training image
    emb = table["embedding"].to_pylist()
    emb[0] = (np.asarray(emb[0]) + 1.0).tolist()
    pq.write_table(table.set_column(1, "embedding", pa.array(emb, pa.list_(pa.float32()))),
                   vectors)
    assert _score(store, metadata, vectors, tmp_path / "pred.csv") == 0
    assert "vectors skipped 1" in capsys.readouterr().out
    got = _predictions(store)
    assert set(got) == {int(r["observation_id"]) for r in rows}
    assert got[train_id]["status"] == "rejected"
    assert f"observation {train_id} is already stored as a train observation" in \
        got[train_id]["reason"]
    with FeatureStore(store, read_only=True) as fs:
        assert fs.sql("SELECT * FROM observations WHERE observation_id = ?",
                      [train_id]).to_pylist() == before
        _, vector_after = fs.fetch_embeddings(SPACE, np.asarray([image_id]))
    np.testing.assert_array_equal(vector_after, vector_before)


def test_an_id_too_large_for_the_store_is_a_rejected_row_not_a_crash(world, tmp_path, capsys):
    store = _copy(world, tmp_path)

    def huge(rows):
        rows[0]["observation_id"] = "99999999999999999999999"

    metadata, vectors, rows = _batch(world, tmp_path, huge)
    assert _score(store, metadata, vectors, tmp_path / "pred.csv") == 0
    assert "rejected 1" in capsys.readouterr().out
    assert set(_predictions(store)) == {int(r["observation_id"]) for r in rows[1:]}


def test_a_bad_vector_of_an_accepted_row_still_refuses_the_batch_before_any_write(
        world, tmp_path, capsys):
    store = _copy(world, tmp_path)
    metadata, vectors, rows = _batch(world, tmp_path, lambda rows: _one_observation(
        rows, {"month": "13"}))
    table = pq.read_table(vectors)
    emb = table["embedding"].to_pylist()
    emb[-1][0] = float("nan")  # a row that is accepted
    pq.write_table(table.set_column(1, "embedding", pa.array(emb, pa.list_(pa.float32()))),
                   vectors)
    assert _score(store, metadata, vectors, tmp_path / "pred.csv") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(vectors) in err and "sporeprint-batch" not in err
    with FeatureStore(store, read_only=True) as fs:
        assert fs.sql("SELECT count(*) FROM observations WHERE role = 'new'").column(0)[0] \
            .as_py() == 0
        assert fs.sql("SELECT count(*) FROM rejects").column(0)[0].as_py() == 0


def test_ingest_batch_without_vectors_names_why_each_observation_was_left_out(world, tmp_path):
    store = _copy(world, tmp_path)
    train_id, _ = _train_row(world)
    metadata, _, rows = _batch(world, tmp_path, lambda rows: rows[-1].update(
        observation_id=str(train_id)))
    bad = _one_observation(rows, {"day": "abc"})
    with open(metadata, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with FeatureStore(store) as fs:
        report = fs.ingest_batch(metadata, None, SPACE, role="new")
    assert report.embeddings is None and report.vectors_skipped == 0
    assert sorted(report.left_out) == sorted({bad, train_id})
    assert "unparseable day 'abc'" in report.left_out[bad]
    assert "already stored as a train observation" in report.left_out[train_id]


def test_an_unwritable_output_is_refused_before_the_batch_is_stored(world, tmp_path, capsys):
    store = _copy(world, tmp_path)
    metadata, vectors, _ = _batch(world, tmp_path, lambda rows: None)
    (tmp_path / "a_folder").mkdir()
    assert _score(store, metadata, vectors, tmp_path / "a_folder") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "is a folder" in err
    with FeatureStore(store, read_only=True) as fs:
        assert fs.sql("SELECT count(*) FROM observations WHERE role = 'new'").column(0)[0] \
            .as_py() == 0

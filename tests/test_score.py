"""`sporeprint score` end to end through the CLI: photos → tiny DINOv2 → heads →
open-set detector → Track 3 decisions → predictions table and submission files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from conftest import photo_world_copy

from sporeprint.cli import main
from store import FeatureStore

SPACE = "tiny"


@pytest.fixture(scope="module")
def world(photo_world, tmp_path_factory):
    """A store whose train/val photos are embedded with a tiny DINOv2 and a trained
    two-fold ensemble; the held-out test file is cut into two new batches."""
    root = tmp_path_factory.mktemp("score")
    store, files, model = photo_world_copy(photo_world, root / "world")  # scoring writes
    with FeatureStore(store, read_only=True) as fs:
        run = fs.sql("SELECT run_id FROM runs WHERE kind = 'ensemble'").column(0)[0].as_py()
    test = pacsv.read_csv(files["test"])
    obs = np.unique(test["observation_id"].to_numpy())
    half = np.isin(test["observation_id"].to_numpy(), obs[: len(obs) // 2])
    batch_a, batch_b = root / "batch_a.csv", root / "batch_b.csv"
    pacsv.write_csv(test.filter(pa.array(half)), batch_a)
    pacsv.write_csv(test.filter(pa.array(~half)), batch_b)
    return {"root": root, "store": store, "run": run, "images": files["images"],
            "batch_a": batch_a, "batch_b": batch_b, "truth": files["truth"]}


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _predictions(store, batch):
    with FeatureStore(store, read_only=True) as fs:
        return fs.sql("SELECT * FROM predictions WHERE batch = ? ORDER BY observation_id",
                      [batch]).to_pylist()


def _check_answer_kinds(store, batch, rows, printed, full_parquet):
    """Each stored row has a kind; the printed answer mix, the report's query and the full
    output file agree with the predictions table's kind column."""
    from heads.decision import KINDS, answer_mix

    kinds = [r["kind"] for r in rows]
    assert set(kinds) <= set(KINDS)
    for r in rows:
        assert (r["kind"] == "prior_only") == (r["status"] != "scored")
        if r["kind"] == "unknown":
            assert r["class_id"] == -1
    mix = answer_mix(kinds)
    printed_mix = dict(item.rsplit(" ", 1) for item in
                       printed.split("  answers: ")[1].splitlines()[0].split(", "))
    assert {k: int(v) for k, v in printed_mix.items()} == mix
    with FeatureStore(store, read_only=True) as fs:
        assert answer_mix(fs.answer_kinds(batch).column("kind")) == mix
        flagged = fs.poison_flagged(batch, limit=10**6).column("observation_id").to_pylist()
        assert sorted(flagged) == sorted(r["observation_id"] for r in rows
                                         if r["kind"] == "poison_risk")
    full = pq.read_table(full_parquet)
    assert dict(zip(full["observation_id"].to_pylist(), full["kind"].to_pylist(),
                    strict=True)) == {r["observation_id"]: r["kind"] for r in rows}
    return mix


def test_every_observation_gets_exactly_one_prediction_and_rescoring_replaces(world, capsys):
    out = world["root"] / "a" / "pred.csv"
    args = ["score", "--store", str(world["store"]), "--metadata", str(world["batch_a"]),
            "--images", str(world["images"]), "--run", world["run"], "--out", str(out),
            "--workers", "0"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    batch_obs = set(pacsv.read_csv(world["batch_a"])["observation_id"].to_pylist())
    rows = _predictions(world["store"], "batch_a")
    assert sorted(r["observation_id"] for r in rows) == sorted(batch_obs)
    assert f"observations {len(batch_obs)}: scored from images {len(batch_obs)}" in printed

    # Submission format: exactly observation_id,class_id, one row per observation.
    sub = _read_csv(out)
    assert list(sub[0].keys()) == ["observation_id", "class_id"]
    assert sorted(int(r["observation_id"]) for r in sub) == sorted(batch_obs)
    classes = {int(r["class_id"]) for r in sub}
    assert classes <= set(range(-1, 1604))
    full = pq.read_table(out.with_name("pred.full.parquet"))
    for col in ("poison_prob", "unknown_score", "top5_class_ids", "top5_probs",
                "evidence_observation_ids", "reason"):
        assert col in full.column_names
    mix = _check_answer_kinds(world["store"], "batch_a", rows, printed,
                              out.with_name("pred.full.parquet"))
    assert mix["prior_only"] == 0 and sum(mix.values()) == len(batch_obs)
    r0 = rows[0]
    assert len(r0["top5_class_ids"]) == 5 and len(r0["evidence_observation_ids"]) == 5
    assert r0["top5_probs"] == sorted(r0["top5_probs"], reverse=True)
    # Evidence ids are training observations.
    with FeatureStore(world["store"], read_only=True) as fs:
        roles = fs.sql("SELECT DISTINCT role FROM observations WHERE observation_id IN "
                       "(SELECT unnest(?::BIGINT[]))", [r0["evidence_observation_ids"]])
    assert roles.column(0).to_pylist() == ["train"]

    # Poison safety: a poison-risk answer names a species on the poisonous list.
    for r in rows:
        if r["kind"] == "poison_risk":
            with FeatureStore(world["store"], read_only=True) as fs:
                pois = fs.sql("SELECT poisonous FROM species WHERE class_id = ?", [r["class_id"]])
            assert pois.column(0)[0].as_py() is True

    # Scoring the same batch again replaces its predictions.
    assert main(args) == 0
    again = _predictions(world["store"], "batch_a")
    assert len(again) == len(rows)
    assert [r["class_id"] for r in again] == [r["class_id"] for r in rows]


def test_broken_images_missing_metadata_and_bad_rows_are_accounted_for(world, capsys):
    rows = _read_csv(world["batch_b"])
    obs = sorted({r["observation_id"] for r in rows})
    no_photo, broken, bad_row, blank_meta = obs[0], obs[1], obs[2], obs[3]
    images = world["root"] / "images_b"
    images.mkdir()
    for r in rows:
        src = world["images"] / r["image_path"]
        dst = images / r["image_path"]
        if r["observation_id"] == no_photo:
            continue  # every photo of this observation is missing
        data = src.read_bytes()
        if r["observation_id"] == broken:
            data = data[: len(data) // 3]  # truncated JPEG: still decodable or a recorded failure
        dst.write_bytes(data)
    for r in rows:
        if r["observation_id"] == bad_row:
            r["Latitude"] = "123.0"  # out of range: the row is rejected
        if r["observation_id"] == blank_meta:
            r["Habitat"], r["Substrate"], r["month"], r["day"] = "", "", "", ""
    batch = world["root"] / "batch_b_broken.csv"
    with open(batch, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)

    out = world["root"] / "b" / "pred.csv"
    assert main(["score", "--store", str(world["store"]), "--metadata", str(batch),
                 "--images", str(images), "--run", world["run"], "--out", str(out),
                 "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    preds = {str(r["observation_id"]): r for r in _predictions(world["store"], "batch_b_broken")}
    assert set(preds) == set(obs)  # nobody silently dropped
    assert preds[no_photo]["status"] == "no_usable_image"
    assert "no usable image" in preds[no_photo]["reason"]
    assert preds[bad_row]["status"] == "rejected"
    assert preds[blank_meta]["status"] == "scored"
    assert preds[broken]["status"] in ("scored", "no_usable_image")
    mix = _check_answer_kinds(world["store"], "batch_b_broken", list(preds.values()), printed,
                              out.with_name("pred.full.parquet"))
    assert mix["prior_only"] >= 2  # the observation without photos and the rejected one
    assert f"observations {len(obs)}:" in printed and "no accepted row 1" in printed
    assert len(_read_csv(out)) == len(obs)
    with FeatureStore(world["store"], read_only=True) as fs:
        failed = fs.sql("SELECT count(*) FROM embedding_failures WHERE reason LIKE 'missing%'")
        assert failed.column(0)[0].as_py() >= 1


def test_wrong_dimension_embeddings_fail_clearly_and_change_nothing(world, capsys):
    rows = _read_csv(world["batch_b"])
    before = _predictions(world["store"], "batch_b")
    with FeatureStore(world["store"], read_only=True) as fs:
        n_obs = fs.sql("SELECT count(*) FROM observations").column(0)[0].as_py()
    bad = world["root"] / "bad_dim.parquet"
    pq.write_table(pa.table({
        "image_path": [r["image_path"] for r in rows],
        "embedding": pa.array([[0.1] * 7 for _ in rows], pa.list_(pa.float32(), 7)),
    }), bad)
    rc = main(["score", "--store", str(world["store"]), "--metadata", str(world["batch_b"]),
               "--embeddings", str(bad), "--run", world["run"]])
    assert rc == 2
    err = capsys.readouterr().err
    assert "7-d" in err and "is 64-d" in err
    assert _predictions(world["store"], "batch_b") == before == []
    with FeatureStore(world["store"], read_only=True) as fs:  # the batch was not ingested either
        assert fs.sql("SELECT count(*) FROM observations").column(0)[0].as_py() == n_obs


def test_a_nan_vector_in_the_embeddings_leaves_the_whole_batch_out(world, capsys):
    rows = _read_csv(world["batch_b"])
    with FeatureStore(world["store"], read_only=True) as fs:
        n_obs = fs.sql("SELECT count(*) FROM observations").column(0)[0].as_py()
    vectors = np.random.default_rng(0).normal(size=(len(rows), 64)).astype(np.float32)
    vectors[1, 5] = np.nan  # found by the store while ingesting, not by a pre-read
    bad = world["root"] / "nan.parquet"
    pq.write_table(pa.table({"image_path": [r["image_path"] for r in rows],
                             "embedding": pa.array(list(vectors), pa.list_(pa.float32()))}), bad)
    rc = main(["score", "--store", str(world["store"]), "--metadata", str(world["batch_b"]),
               "--embeddings", str(bad), "--run", world["run"]])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"['{rows[1]['image_path']}'] (1 in all) contain NaN or inf" in err
    assert _predictions(world["store"], "batch_b") == []
    with FeatureStore(world["store"], read_only=True) as fs:  # metadata and vectors: one transaction
        assert fs.sql("SELECT count(*) FROM observations").column(0)[0].as_py() == n_obs


def test_unknown_run_and_evaluate_of_the_scored_batch(world, capsys):
    rc = main(["score", "--store", str(world["store"]), "--metadata", str(world["batch_a"]),
               "--images", str(world["images"]), "--run", "no-such-run"])
    assert rc == 2 and "no-such-run" in capsys.readouterr().err
    out = world["root"] / "a" / "pred.csv"
    if not out.exists():
        pytest.skip("depends on the scoring test")
    assert main(["evaluate", "--predictions", str(out), "--truth", str(world["truth"]),
                 "--format", "json", "--missing-as-unknown"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert 0.0 <= s["track1"] <= 1.0 and s["track3"] >= s["track1"]
    # the full CSV (kind, reason, ... beside the two official columns) scores the same
    assert main(["evaluate", "--predictions", str(out.with_name("pred.full.csv")), "--truth",
                 str(world["truth"]), "--format", "json", "--missing-as-unknown"]) == 0
    assert json.loads(capsys.readouterr().out) == s


def test_top_columns_orders_largest_first_and_breaks_ties_by_column():
    from sporeprint.scoring.outputs import top_columns

    values = np.array([[0.1, 0.4, 0.2, 0.4, 0.0],
                       [0.5, 0.0, 0.0, 0.3, 0.2]])
    assert top_columns(values, 3).tolist() == [[1, 3, 2], [0, 3, 4]]
    rng = np.random.default_rng(0)
    big = rng.random((200, 50))
    np.testing.assert_array_equal(top_columns(big, 5), np.argsort(-big, axis=1)[:, :5])


def test_score_serve_report_and_api_pick_the_same_default_run_on_a_timestamp_tie(tmp_path):
    """Two ensembles made in the same instant: every path that picks "the latest run"
    picks the one ``FeatureStore.default_run`` names (the larger run id)."""
    import sporeprint
    from sporeprint.commands.score import latest_run
    from sporeprint.errors import SporeprintError
    from sporeprint.report.build import resolve_run
    from sporeprint.serve.service import Service
    from store import EmbeddingSpace

    path = tmp_path / "s.duckdb"
    with FeatureStore(path) as fs:
        fs.ensure_space(EmbeddingSpace("tiny", model_id="m", dim=4))
        for name in ("a", "b"):  # folds without saved heads: loading one names it
            fs.record_run(f"fold-{name}", "train", "tiny", "mlp", 1, {}, {}, None)
            fs.record_run(f"ens-{name}", "ensemble", "tiny", None, None,
                          {"members": [f"fold-{name}"]}, {}, None)
        fs.sql("UPDATE runs SET created_at = TIMESTAMP '2026-01-01 12:00:00'")
    with FeatureStore(path, read_only=True) as fs:
        assert fs.default_run() == "ens-b"
        assert latest_run(fs) == ["ens-b"]  # sporeprint score --run latest
        assert resolve_run(fs, None)["run_id"] == "ens-b"  # sporeprint report
    with sporeprint.open(path) as db, \
            pytest.raises(SporeprintError, match="run 'fold-b' has no saved head"):
        db.model()  # sporeprint.open(...).model()
    with pytest.raises(SporeprintError, match="run 'fold-b' has no saved head"):
        Service(path)  # sporeprint serve

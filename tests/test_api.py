"""The Python API on a real trained store: SQL, search built step by step, and
``model.predict`` giving the same decisions as ``sporeprint score``."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import trained_store_cli

import sporeprint
from sporeprint.cli import main
from sporeprint.errors import SporeprintError
from store import StoreError

SPACE = "sim"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    store, files = trained_store_cli(root, seed=1, space=SPACE)
    return {"store": store, "files": files}


def test_sql_returns_arrow_and_the_store_opens_read_only(world):
    with sporeprint.open(world["store"]) as db:
        t = db.sql("SELECT role, count(*) AS n FROM observations GROUP BY 1 ORDER BY 1")
        assert t.column("role").to_pylist() == ["new", "train", "val"]
        assert t.to_pandas()["n"].sum() > 0
        with pytest.raises(StoreError):
            db.sql("DELETE FROM observations")


def test_open_never_creates_a_store(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        sporeprint.open(tmp_path / "typo.duckdb")
    assert not (tmp_path / "typo.duckdb").exists()


def test_search_needs_no_prebuilt_index_and_filters_hold(world):
    with sporeprint.open(world["store"]) as db:
        obs = db.sql("SELECT min(observation_id) AS id FROM observations "
                     "WHERE role = 'val'")["id"][0].as_py()
        hits = db.search(observation=obs).where(role="train", poisonous=True).limit(4).to_arrow()
        assert hits.num_rows == 4
        assert set(hits["role"].to_pylist()) == {"train"}
        assert set(hits["poisonous"].to_pylist()) == {True}
        assert obs not in hits["observation_id"].to_pylist()
        scores = hits["score"].to_numpy()
        assert (np.diff(scores) <= 1e-6).all()
        # a vector query: the observation's own query vector finds the same ranking
        from sporeprint.lookalikes import observation_query

        v = observation_query(db.store, SPACE, obs)[0]
        again = db.search(vector=v).where(role="train", poisonous=True).limit(4).to_arrow()
        assert again["observation_id"].to_pylist() == hits["observation_id"].to_pylist()


@pytest.mark.parametrize("bad", [{"role": "trian"}, {"split": "p3"}, {"date_from": "2020-13-01"},
                                 {"near": (95.0, 0.0), "radius_km": 5.0}, {"colour": "red"}])
def test_invalid_filter_values_raise_instead_of_returning_nothing(world, bad):
    with sporeprint.open(world["store"]) as db:
        with pytest.raises((StoreError, SporeprintError, TypeError, ValueError)):
            db.search(vector=np.ones(16, np.float32)).where(**bad)


def test_model_predict_equals_score_for_the_same_batch(world):
    files = world["files"]
    with sporeprint.open(world["store"]) as db:
        scored = db.sql("SELECT observation_id, class_id, poison_prob, unknown_prob, status "
                        "FROM predictions ORDER BY observation_id").to_pylist()
        meta = db.sql("SELECT i.image_path, o.observation_id, o.substrate, o.meta_substrate, "
                      "o.habitat, o.month, o.day, o.latitude, o.longitude FROM images i "
                      "JOIN observations o USING (observation_id) WHERE o.role = 'new' "
                      "ORDER BY i.image_id")
        emb = pq.read_table(files["embeddings"])
        by_path = dict(zip(emb["image_path"].to_pylist(),
                           emb["embedding"].to_numpy(zero_copy_only=False), strict=True))
        vectors = np.stack([by_path[p] for p in meta["image_path"].to_pylist()])
        out = db.model().predict(vectors, meta.drop(["image_path"]),
                                 observation_ids=meta["observation_id"].to_numpy())
    got = {r["observation_id"]: r for r in out.to_pylist()}
    compared = 0
    for r in scored:
        if r["status"] != "scored":
            continue
        g = got[r["observation_id"]]
        assert g["class_id"] == r["class_id"]
        assert g["poison_prob"] == pytest.approx(r["poison_prob"], abs=1e-6)
        assert g["unknown_prob"] == pytest.approx(r["unknown_prob"], abs=1e-6)
        compared += 1
    assert compared > 20


def test_model_predict_checks_its_input(world):
    with sporeprint.open(world["store"]) as db:
        model = db.model()
        with pytest.raises(SporeprintError, match="shape"):
            model.predict(np.ones((2, 15), np.float32))
        with pytest.raises(SporeprintError, match="NaN"):
            model.predict(np.full((1, 16), np.nan, np.float32))
        # the store's own vector rule, with its words: the rows a store refuses
        from store import InvalidValueError, check_vectors
        for bad in (np.nan, np.inf, 0.0):
            x = np.ones((3, 16), np.float32)
            x[1] = 0.0 if bad == 0.0 else [1.0] * 15 + [bad]
            with pytest.raises(InvalidValueError) as stored:
                check_vectors(x, 16)
            with pytest.raises(SporeprintError) as predicted:
                model.predict(x)
            problem = str(stored.value).split("; ")[0].split(": ", 1)[1]  # rows, count, reason
            assert problem in str(predicted.value) and "nothing was scored" in str(predicted.value)
        with pytest.raises(SporeprintError, match="dimension 15 .* has dimension 16"):
            model.predict(np.ones((2, 15), np.float32))
        one = model.predict(np.ones((1, 16), np.float32))  # no metadata: encoded as missing
        assert one.num_rows == 1


def test_decide_replays_the_stored_decisions_and_stricter_costs_flag_more(world, capsys):
    store = str(world["store"])
    assert main(["decide", "--store", store, "--batch", "test_2024"]) == 0
    out = capsys.readouterr().out
    assert "answers changed from the stored ones: 0" in out  # same costs, same answers

    def poison_answers(text):
        return int(text.split("naming a poisonous species ")[1].split(",")[0])

    def poison_risk(text):
        return int(text.split("poison_risk ")[1].split(",")[0])

    assert main(["decide", "--store", store, "--batch", "test_2024",
                 "--cost-poisonous-as-edible", "1e6"]) == 0
    strict = capsys.readouterr().out
    assert main(["decide", "--store", store, "--batch", "test_2024",
                 "--cost-poisonous-as-edible", "2"]) == 0
    soft = capsys.readouterr().out
    assert poison_answers(strict) >= poison_answers(out) >= poison_answers(soft)
    assert poison_answers(strict) > poison_answers(soft)
    assert poison_risk(strict) >= poison_risk(out) >= poison_risk(soft)
    assert main(["decide", "--store", store, "--batch", "nope"]) == 2
    assert "no predictions for batch 'nope'" in capsys.readouterr().err

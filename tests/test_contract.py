"""One metadata contract: ``model.predict``, the HTTP API and ``sporeprint score`` take
the same columns (the FungiCLEF file as read) and refuse the same bad values in one
line; unseen categories are reported, not silently encoded; search on a store with
several spaces takes the default run's space and says so."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import trained_store_cli
from test_serve import serving

import sporeprint
from sporeprint.cli import main
from sporeprint.errors import SporeprintError
from store import FeatureStore, MetadataError, StoreError

SPACE = "sim"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    store, files = trained_store_cli(root, seed=2, space=SPACE)
    emb = pq.read_table(files["embeddings_test"])
    by_path = dict(zip(emb["image_path"].to_pylist(),
                       emb["embedding"].to_numpy(zero_copy_only=False), strict=True))
    return {"root": root, "store": store, "files": files, "by_path": by_path}


@pytest.fixture(scope="module")
def server(world):
    with serving(world["store"]) as (url, _, _service):
        yield url


def post_json(url: str, obj: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url + "/api/identify", json.dumps(obj).encode(),
                                 {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_fungiclef_file_as_read_gets_exactly_scores_answers(world):
    test = pd.read_csv(world["files"]["test"])  # Habitat, Substrate, Latitude, observation_id
    assert {"Habitat", "Substrate", "MetaSubstrate", "Latitude", "observation_id"} <= set(test)
    vectors = np.stack([world["by_path"][p] for p in test["image_path"]])
    with sporeprint.open(world["store"]) as db:
        scored = db.sql("SELECT observation_id, class_id, poison_prob, unknown_prob FROM "
                        "predictions WHERE status = 'scored' ORDER BY 1").to_pylist()
        model = db.model()
        out = model.predict(vectors, test)  # no observation_ids: the file's own column
        bare = model.predict(vectors, None, observation_ids=test["observation_id"])
        names = {r["class_id"]: r["species"] for r in db.store.species_table().to_pylist()}
        vocab = db.store.encoder().vocab
        argmax = model.predict(vectors[:4], test.iloc[:4], rule="argmax").to_pylist()
    assert all(r["class_id"] >= 0 and r["species"] == names[r["class_id"]] and r["species"]
               for r in argmax)  # the answer's species name
    got = {r["observation_id"]: r for r in out.to_pylist()}
    assert len(scored) > 20 and set(got) >= {r["observation_id"] for r in scored}
    for r in scored:
        g = got[r["observation_id"]]
        assert g["class_id"] == r["class_id"]
        assert g["poison_prob"] == pytest.approx(r["poison_prob"], abs=1e-9)
        assert g["unknown_prob"] == pytest.approx(r["unknown_prob"], abs=1e-9)
        assert g["species"] == (names.get(g["class_id"]) if g["class_id"] >= 0 else None)
        for w in g["warnings"]:  # only values the training metadata never had
            field, value = w.split(" ", 1)[0], w.split("'")[1]
            assert "never seen in training" in w and value not in vocab[field]
    # the metadata matters: without it the poison probabilities differ
    without = dict(zip(bare["observation_id"].to_pylist(), bare["poison_prob"].to_pylist(),
                       strict=True))
    assert any(abs(without[i] - g["poison_prob"]) > 1e-6 for i, g in got.items())


BAD = [
    ({"month": 13}, "month 13 outside 1..12"),
    ({"month": -5}, "month -5 outside 1..12"),
    ({"day": 45}, "day 45 outside 1..31"),
    ({"month": "september"}, "unparseable month 'september'"),
    ({"latitude": 500, "longitude": 10}, "latitude 500 outside -90..90"),
    ({"latitude": 55.7}, "latitude 55.7 given without a longitude"),
    ({"habbitat": "Deciduous woodland"}, "unknown column 'habbitat'; did you mean 'habitat'"),
]


@pytest.mark.parametrize("fields, fragment", BAD)
def test_predict_refuses_each_bad_value_in_one_line(world, fields, fragment):
    v = np.ones((2, 16), np.float32)
    with sporeprint.open(world["store"]) as db:
        model = db.model()
        with pytest.raises(MetadataError) as err:
            model.predict(v, [{"month": 9}, fields])
    msg = str(err.value)
    assert fragment in msg and "\n" not in msg
    assert "give" in msg or "drop the column" in msg  # the fix


@pytest.mark.parametrize("fields, fragment", BAD)
def test_the_http_api_refuses_the_same_bad_values(world, server, fields, fragment):
    status, body = post_json(server, {"vector": [1.0] * 16, **fields})
    assert status == 400 and fragment in body["error"] and "\n" not in body["error"]


def test_an_unseen_habitat_is_accepted_and_reported(world, server):
    with sporeprint.open(world["store"]) as db:
        out = db.model().predict(np.ones((1, 16), np.float32), [{"Habitat": "moon"}])
    assert out.column("warnings").to_pylist() == [
        ["habitat 'moon' was never seen in training; encoded as unseen"]]
    status, body = post_json(server, {"vector": [1.0] * 16, "Habitat": "moon", "Month": "9"})
    assert status == 200
    assert body["warnings"] == ["habitat 'moon' was never seen in training; encoded as unseen"]
    assert body["query"]["metadata"]["month"] == 9  # DF20 spelling, any case


def test_predict_observation_ids_must_agree_with_the_metadata_column(world):
    with sporeprint.open(world["store"]) as db:
        model = db.model()
        out = model.predict(np.ones((2, 16), np.float32),
                            [{"gbifID": 7, "month": 9}, {"gbifID": 7, "month": 9}])
        assert out.column("observation_id").to_pylist() == [7]  # images of one observation
        with pytest.raises(SporeprintError, match="observation_ids\\[1\\] is 9"):
            model.predict(np.ones((2, 16), np.float32), [{"observationID": 7}, {"observationID": 8}],
                          observation_ids=[7, 9])


def test_search_on_a_store_with_two_spaces_uses_the_default_runs_space(world, tmp_path):
    store = tmp_path / "two.duckdb"
    shutil.copy(world["store"], store)
    with FeatureStore(store) as fs:  # a second space: the test vectors under another name
        fs.ingest_embeddings(world["files"]["embeddings_test"], "other")
        obs = fs.sql("SELECT min(observation_id) FROM observations WHERE role = 'val'"
                     ).column(0)[0].as_py()
        run = fs.default_run()
    with sporeprint.open(store) as db:
        assert sorted(db.spaces) == ["other", SPACE] and db.default_space() == SPACE
        search = db.search(observation=obs).where(poisonous="no", role="train").limit(3)
        hits = search.to_list()
        assert len(hits) == 3 and all(h["poisonous"] is False for h in hits)
        assert all(h["genus"] for h in hits)
        assert search.info.to_dict()["space"] == SPACE
        assert search.info.to_dict()["space_why"] == f"the space of the default run {run}"
        assert db.search(observation=obs).where(poisonous="yes").limit(2).to_list()[0][
            "poisonous"] is True


def test_search_cli_explains_the_space_it_took(world, tmp_path, capsys):
    store = tmp_path / "two.duckdb"
    shutil.copy(world["store"], store)
    with FeatureStore(store) as fs:
        fs.ingest_embeddings(world["files"]["embeddings_test"], "other")
        obs = fs.sql("SELECT min(observation_id) FROM observations WHERE role = 'val'"
                     ).column(0)[0].as_py()
    capsys.readouterr()
    assert main(["search", "--store", str(store), "--observation", str(obs), "-k", "2",
                 "--explain", "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)["search"]
    assert info["space"] == SPACE and info["space_why"].startswith("the space of the default run")
    assert main(["search", "--store", str(store), "--observation", str(obs), "-k", "2",
                 "--explain"]) == 0
    assert f"space {SPACE} (the space of the default run" in capsys.readouterr().out


def test_the_read_only_error_names_the_real_argument(world):
    with sporeprint.open(world["store"]) as db:
        with pytest.raises(StoreError, match=r"sporeprint.open\(path, write=True\)"):
            db.sql("DELETE FROM observations")


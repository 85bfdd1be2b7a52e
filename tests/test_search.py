"""Look-alike search on a real DuckDB store built from simulated data: CLI, filters,
staleness, and the neighbours used by the scoring pipeline."""

import json
import shutil

import numpy as np
import pytest
from conftest import make_simulated_store

from retrieval import RetrievalError
from sporeprint.cli import main
from sporeprint.indexing import StaleIndexError, build_index, load_index, memory_index
from sporeprint.lookalikes import TrainingNeighbours, find_lookalikes, observation_query
from store import FeatureStore, SearchFilters, StoreError


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = make_simulated_store(tmp_path_factory.mktemp("search"), dim=32)
    assert main(["index", "build", "--store", str(path), "--space", "sim"]) == 0
    return path


def brute_observations(fs, query, k, allowed_obs=None, exclude=()):
    """Observations ranked by their best image's cosine similarity, in numpy."""
    ids, vectors = fs.fetch_embeddings("sim")
    obs = fs.sql("SELECT image_id, observation_id FROM images ORDER BY 1")
    img_obs = dict(zip(obs.column(0).to_pylist(), obs.column(1).to_pylist(), strict=True))
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = query[0] / np.linalg.norm(query[0])
    best = {}
    for image_id, s in zip(ids, v @ q, strict=True):
        o = img_obs[int(image_id)]
        if o in exclude or (allowed_obs is not None and o not in allowed_obs):
            continue
        best[o] = max(best.get(o, -2.0), float(s))
    return sorted(best, key=lambda o: -best[o])[:k], best


def test_search_by_observation_matches_brute_force(store_path, capsys):
    with FeatureStore(store_path, read_only=True) as fs:
        query_obs = fs.sql("SELECT observation_id FROM observations WHERE role = 'val' "
                           "ORDER BY 1 LIMIT 1").column(0)[0].as_py()
        expect, best = brute_observations(fs, observation_query(fs, "sim", query_obs), 10,
                                          exclude={query_obs})
    assert main(["search", "--store", str(store_path), "--observation", str(query_obs),
                 "-k", "10", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["observation_id"] for r in rows] == expect
    assert query_obs not in [r["observation_id"] for r in rows]
    for r in rows:
        assert r["score"] == pytest.approx(best[r["observation_id"]], abs=1e-5)
        assert {"species", "poisonous", "date", "locality", "latitude"} <= set(r)


@pytest.mark.parametrize("filters, sql", [
    (SearchFilters(poisonous=True), "s.poisonous"),
    (SearchFilters(role="train", date_from="2012-01-01", date_to="2016-12-31"),
     "o.role = 'train' AND try(make_date(o.year, o.month, o.day)) "
     "BETWEEN DATE '2012-01-01' AND DATE '2016-12-31'"),
    (SearchFilters(near=(56.0, 10.0), radius_km=60),
     "2 * 6371.0088 * asin(sqrt(pow(sin(radians(o.latitude - 56.0) / 2), 2)"
     " + cos(radians(56.0)) * cos(radians(o.latitude))"
     " * pow(sin(radians(o.longitude - 10.0) / 2), 2))) <= 60"),
])
def test_filters_equal_brute_force_filtered_answer(store_path, filters, sql):
    with FeatureStore(store_path, read_only=True) as fs:
        index = load_index(fs, "sim")
        allowed = set(fs.sql("SELECT o.observation_id FROM observations o LEFT JOIN species s "
                             f"USING (class_id) WHERE {sql}").column(0).to_pylist())
        assert 10 < len(allowed) < 300  # the filter really narrows the search
        query = fs.fetch_embeddings("sim")[1][:1]
        hits = find_lookalikes(fs, index, query, k=10, filters=filters)[0]
        expect, _ = brute_observations(fs, query, 10, allowed_obs=allowed)
    assert hits.column("observation_id").to_pylist() == expect
    assert hits.num_rows == 10  # filtered before ranking: never fewer than k when k match


def test_filter_values_are_bound_not_sql(store_path, capsys):
    args = ["search", "--store", str(store_path), "--vector-file", "", "--format", "json"]
    with FeatureStore(store_path, read_only=True) as fs:
        np.save(store_path.parent / "q.npy", fs.fetch_embeddings("sim")[1][0])
        genus = fs.sql("SELECT genus FROM observations WHERE role = 'train' GROUP BY genus "
                       "HAVING count(*) >= 3 ORDER BY genus LIMIT 1").column(0)[0].as_py()
    args[4] = str(store_path.parent / "q.npy")
    assert main(args + ["--species", "x' OR '1'='1"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(args + ["--genus", genus, "-k", "3"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3
    with FeatureStore(store_path, read_only=True) as fs:
        got = fs.sql("SELECT DISTINCT genus FROM observations WHERE observation_id IN "
                     "(SELECT unnest(?::BIGINT[]))", [[r["observation_id"] for r in rows]])
    assert got.column(0).to_pylist() == [genus]


def test_stale_index_is_detected(store_path, tmp_path, capsys):
    path = tmp_path / "copy.duckdb"
    shutil.copy(store_path, path)
    with FeatureStore(path) as fs:
        build_index(fs, "sim", kind="exact", where="train")
        load_index(fs, "sim", where="train")  # fresh: loads
        obs = fs.sql("SELECT observation_id FROM observations WHERE role = 'train' LIMIT 1"
                     ).column(0)[0].as_py()
        fs.sql("INSERT INTO images (image_id, observation_id, image_path) VALUES (?, ?, ?)",
               [10**9, obs, "extra-1.JPG"])
        fs.add_embeddings("sim", np.array([10**9]), np.ones((1, 32), np.float32))
        with pytest.raises(StaleIndexError, match="rebuild with: sporeprint index build"):
            load_index(fs, "sim", where="train")
    np.save(tmp_path / "q.npy", np.ones(32, np.float32))
    # search never answers from a stale index: it falls back to an exact in-memory one
    assert main(["search", "--store", str(path), "--where", "train", "--vector-file",
                 str(tmp_path / "q.npy"), "-k", "1", "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("["):])[0]["observation_id"] == obs
    assert main(["index", "build", "--store", str(path), "--space", "sim", "--where", "train"]) == 0
    assert main(["search", "--store", str(path), "--where", "train", "--vector-file",
                 str(tmp_path / "q.npy"), "-k", "1", "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("["):])[0]["observation_id"] == obs  # the new image is found


def test_missing_index_and_space_errors(store_path, capsys):
    with FeatureStore(store_path, read_only=True) as fs:
        with pytest.raises(RetrievalError, match="sporeprint index build"):
            load_index(fs, "sim", kind="hnsw", where="val")
        with pytest.raises(StoreError, match="nope"):
            load_index(fs, "nope")


def test_training_neighbours_give_evidence_and_the_knn_score(store_path):
    with FeatureStore(store_path, read_only=True) as fs:
        val_ids, val_vecs = fs.fetch_embeddings("sim", fs.sql(
            "SELECT image_id FROM images JOIN observations USING (observation_id) "
            "WHERE role = 'val' ORDER BY 1").column(0).to_numpy())
        result = TrainingNeighbours(fs, memory_index(fs, "sim", "train")).search(
            val_vecs[:8], k=5, detector_k=3)
        train = set(fs.sql("SELECT observation_id FROM observations WHERE role = 'train'")
                    .column(0).to_pylist())
        tr_ids, tr_vecs = fs.fetch_embeddings("sim", fs.sql(
            "SELECT image_id FROM images JOIN observations USING (observation_id) "
            "WHERE role = 'train'").column(0).to_numpy())
        for r in range(8):
            expect, _ = brute_observations(fs, val_vecs[r:r + 1], 5, allowed_obs=train)
            assert result.observation_ids[r].tolist() == expect
    v = tr_vecs / np.linalg.norm(tr_vecs, axis=1, keepdims=True)
    q = val_vecs[:8] / np.linalg.norm(val_vecs[:8], axis=1, keepdims=True)
    third = np.sort(q @ v.T, axis=1)[:, -3]
    np.testing.assert_allclose(result.unknown_score, 1 - third, atol=1e-5)

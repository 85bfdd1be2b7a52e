import json

import numpy as np
import pyarrow as pa
import pygeohash
import pytest
from test_store_helpers import make_rows, write_csv

from store import FeatureStore, StoreError
from store.splits import assign_parts


@pytest.fixture
def fs(tmp_path):
    with FeatureStore(tmp_path / "s.duckdb") as store:
        yield store


def test_encoder_values(fs, tmp_path):
    rows = make_rows(4, images_per_obs=1)
    rows[1].update(month="", day="", Latitude="", Longitude="", Habitat="")
    fs.ingest_metadata(write_csv(tmp_path / "m.csv", rows))
    info = fs.fit_encoder()
    assert info.vocab["substrate"] == sorted({"soil", "wood", "leaf or needle litter", "bark"})
    assert fs.encode_observations() == 4
    ids, x, cols = fs.fetch_features()
    assert x.dtype == np.float32 and x.shape == (4, len(cols)) and cols == info.columns
    c = {name: i for i, name in enumerate(cols)}
    month, day = int(rows[0]["month"]), int(rows[0]["day"])
    np.testing.assert_allclose(x[0, c["month_sin"]], np.sin(2 * np.pi * (month - 1) / 12), atol=1e-6)
    np.testing.assert_allclose(x[0, c["month_cos"]], np.cos(2 * np.pi * (month - 1) / 12), atol=1e-6)
    np.testing.assert_allclose(x[0, c["day_sin"]], np.sin(2 * np.pi * (day - 1) / 31), atol=1e-6)
    assert x[0, c["month_missing"]] == 0 and x[0, c["geo_missing"]] == 0
    lat, lon = float(rows[0]["Latitude"]), float(rows[0]["Longitude"])
    np.testing.assert_allclose(x[0, c["geo_z"]], np.sin(np.radians(lat)), rtol=1e-6)
    for level in (3, 4):  # too few training rows for a cell of their own: <other>
        code = pygeohash.encode(lat, lon, precision=level)
        assert x[0, c[f"geohash_{level}=<other>"]] == 1 and f"geohash_{level}={code}" not in c
    # row 1: missing date is not 1 January, missing coordinates are flagged
    assert x[1, c["month_missing"]] == 1 and x[1, c["month_sin"]] == 0 and x[1, c["month_cos"]] == 0
    assert x[1, c["day_missing"]] == 1
    assert x[1, c["geo_missing"]] == 1 and not x[1, [c["geo_x"], c["geohash_3=<other>"]]].any()
    assert x[1, c["habitat=<missing>"]] == 1
    for field in ("substrate", "meta_substrate", "habitat"):  # one-hot per field
        block = [i for n, i in c.items() if n.startswith(field + "=")]
        np.testing.assert_array_equal(x[:, block].sum(axis=1), 1)


def test_vocabulary_is_stable_for_a_new_batch(fs, tmp_path):
    fs.ingest_metadata(write_csv(tmp_path / "train.csv", make_rows(4, images_per_obs=1)))
    info = fs.fit_encoder()
    fs.encode_observations()
    _, before, _ = fs.fetch_features()
    new = make_rows(2, images_per_obs=1, first_id=5000, classes=(-1,))
    new[0].update(Substrate="dung", MetaSubstrate="")
    fs.ingest_metadata(write_csv(tmp_path / "new.csv", new), role="new")
    assert fs.fit_encoder().version == info.version  # new rows are not training rows
    fs.encode_observations(np.array([5000, 5001]))
    ids, x, cols = fs.fetch_features(np.array([5001, 5000]))
    assert cols == info.columns and ids.tolist() == [5001, 5000]
    assert x[1, cols.index("substrate=<unseen>")] == 1
    np.testing.assert_array_equal(fs.fetch_features()[1][:4], before)
    stored = fs.sql("SELECT columns FROM encoders WHERE encoder_version = ?", [info.version])
    assert json.loads(stored.column(0)[0].as_py()) == info.columns


def test_encode_requires_fitted_encoder(fs, tmp_path):
    with pytest.raises(StoreError, match="fit_encoder"):
        fs.encode_observations()
    with pytest.raises(StoreError, match="role=train"):
        fs.fit_encoder()


def test_assign_parts_stratified_and_deterministic():
    rng = np.random.default_rng(3)
    ids = rng.permutation(np.arange(10_000, 10_600))
    strata = rng.integers(-1, 40, size=len(ids))
    parts = assign_parts(ids, strata, seed=7)
    order = np.argsort(ids)
    again = assign_parts(ids[order], strata[order], seed=7)  # input order does not matter
    np.testing.assert_array_equal(parts[order], again)
    assert not np.array_equal(parts, assign_parts(ids, strata, seed=8))
    for s in np.unique(strata):
        sizes = np.bincount(parts[strata == s], minlength=3)
        assert sizes.max() - sizes.min() <= 1  # each species split into thirds
    assert np.bincount(parts).max() - np.bincount(parts).min() <= 20


def test_make_splits_and_folds(fs, tmp_path):
    fs.ingest_metadata(write_csv(tmp_path / "train.csv", make_rows(6, images_per_obs=1)))
    val = make_rows(27, images_per_obs=1, first_id=8000, classes=(0, 1, -1))
    fs.ingest_metadata(write_csv(tmp_path / "val.csv", val), role="val")
    first = fs.make_splits(seed=3)
    second = fs.make_splits(seed=3)
    assert first.equals(second)
    got = fs.sql("SELECT o.class_id, s.part, count(*) AS n FROM splits s JOIN observations o "
                 "USING (observation_id) GROUP BY ALL").to_pylist()
    assert {(r["class_id"], r["part"]): r["n"] for r in got} == {
        (c, p): 3 for c in (0, 1, -1) for p in ("p1", "p2", "test")}
    f1, f2 = fs.fold_observations(1), fs.fold_observations(2)
    assert len(f1["train"]) == 6 + 9 and len(f1["val"]) == 9 and len(f1["test"]) == 9
    np.testing.assert_array_equal(f1["test"], f2["test"])
    assert set(f1["val"]) <= set(f2["train"]) and set(f2["val"]) <= set(f1["train"])
    assert not set(f1["test"]) & (set(f1["train"]) | set(f2["train"]))
    with pytest.raises(StoreError, match="fold 3"):
        fs.fold_observations(3)
    with pytest.raises(StoreError, match="seed 4"):
        fs.fold_observations(1, seed=4)


def test_export_import_roundtrip(tmp_path):
    with FeatureStore(tmp_path / "a.duckdb") as fs:
        fs.ingest_metadata(write_csv(tmp_path / "m.csv", make_rows(4)))
        n = fs.export_parquet("observations", tmp_path / "out", partition_by="class_id")
        assert n == 4 and len(list((tmp_path / "out").rglob("*.parquet"))) == 4
        fs.export_parquet("images", tmp_path / "img")
        expected = fs.sql("SELECT * EXCLUDE (ingested_at) FROM observations ORDER BY 1")
        with pytest.raises(StoreError, match="'nothing'"):
            fs.export_parquet("nothing", tmp_path / "x")
    with FeatureStore(tmp_path / "b.duckdb") as fs:
        assert fs.import_parquet("observations", tmp_path / "out") == 4
        assert fs.import_parquet("observations", tmp_path / "out") == 0  # idempotent
        assert fs.import_parquet("images", tmp_path / "img" / "images.parquet") == 8
        got = fs.sql("SELECT * EXCLUDE (ingested_at) FROM observations ORDER BY 1")
        assert got.to_pylist() == expected.to_pylist()


def test_record_run_and_write_predictions(fs):
    fs.record_run("r1", "train", "tiny", "mlp", 1, {"lr": 1e-4}, {"f1": 0.5}, "/tmp/r1")
    fs.record_run("r1", "train", "tiny", "mlp", 1, {"lr": 1e-3}, {"f1": 0.6}, "/tmp/r1")
    runs = fs.sql("SELECT run_id, config FROM runs").to_pylist()
    assert len(runs) == 1 and json.loads(runs[0]["config"]) == {"lr": 1e-3}
    preds = pa.table({"observation_id": pa.array([1, 2], pa.int64()),
                      "class_id": pa.array([3, -1], pa.int32()),
                      "top5_class_ids": pa.array([[3, 4], [5, 6]], pa.list_(pa.int32()))})
    assert fs.write_predictions("r1", "b1", preds) == 2
    assert fs.write_predictions("r1", "b1", preds.slice(0, 1)) == 1  # replaces that batch
    fs.write_predictions("r1", "b2", preds)
    got = fs.sql("SELECT batch, count(*) AS n FROM predictions GROUP BY 1 ORDER BY 1").to_pylist()
    assert got == [{"batch": "b1", "n": 1}, {"batch": "b2", "n": 2}]
    with pytest.raises(StoreError, match="colour"):
        fs.write_predictions("r1", "b3", preds.append_column("colour", pa.array(["a", "b"])))

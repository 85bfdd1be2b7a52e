"""The store's query interface: ids, selections, look-ups, filters, runs, descriptions."""

import uuid

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from test_store_helpers import make_rows, write_csv

import store
from store import SELECTIONS, EmbeddingSpace, FeatureStore, SearchFilters, StoreError
from store.reference import poisonous_class_ids

POISONOUS = int(poisonous_class_ids()[0])
EDIBLE = next(c for c in range(10) if c not in set(poisonous_class_ids().tolist()))


@pytest.fixture
def path(tmp_path):
    """Train: 6 observations (2 images each) of a poisonous and an edible class; val: 27
    observations (one image) of those two classes and unknown -1; test: 3 unlabelled."""
    p = tmp_path / "s.duckdb"
    with FeatureStore(p) as fs:
        fs.ingest_metadata(write_csv(tmp_path / "train.csv",
                                     make_rows(6, classes=(POISONOUS, EDIBLE))), role="train")
        fs.ingest_metadata(write_csv(tmp_path / "val.csv", make_rows(
            27, images_per_obs=1, first_id=8000, classes=(POISONOUS, EDIBLE, -1))), role="val")
        test = make_rows(3, images_per_obs=1, first_id=9000)
        for r in test:
            r["class_id"] = ""
        fs.ingest_metadata(write_csv(tmp_path / "test.csv", test), role="test")
        ids = fs.sql("SELECT image_id FROM images ORDER BY 1").column(0).to_numpy()
        fs.ensure_space(EmbeddingSpace("tiny", model_id="m", dim=3))
        fs.add_embeddings("tiny", ids, np.random.default_rng(0).normal(size=(len(ids), 3)))
    return p


@pytest.fixture
def fs(path):
    with FeatureStore(path) as s:
        yield s


def test_create_false_refuses_a_missing_store(tmp_path):
    missing = tmp_path / "typo.duckdb"
    with pytest.raises(StoreError) as err:
        FeatureStore(missing, create=False)
    assert str(err.value) == (f"store {str(missing)!r} does not exist; create it with "
                              f"`sporeprint ingest --store {missing} --metadata ... --role ...`")
    assert not missing.exists()
    FeatureStore(missing).close()  # the default still creates
    FeatureStore(missing, create=False).close()


def test_store_id_is_a_stable_uuid(path):
    with FeatureStore(path) as fs:
        first = fs.store_id
    with FeatureStore(path, read_only=True) as ro:
        assert ro.store_id == first
    assert uuid.UUID(first).version == 4
    with FeatureStore(path.with_name("other.duckdb")) as other:
        assert other.store_id != first


def test_one_split_seed_rule(fs):
    assert not fs.has_splits()
    with pytest.raises(StoreError, match="no splits"):
        fs.split_seed()
    with pytest.raises(StoreError, match="no splits"):
        fs.selection_image_ids("tiny", "p1")
    fs.make_splits(5)
    fs.make_splits(0)
    assert fs.has_splits() and fs.split_seed() == 0
    val = fs.fold_observations(1)["val"]
    p1 = np.unique(fs.image_observations(fs.selection_image_ids("tiny", "p1")))
    np.testing.assert_array_equal(val, p1)
    p1_seed5 = np.unique(fs.image_observations(fs.selection_image_ids("tiny", "p1", seed=5)))
    np.testing.assert_array_equal(fs.fold_observations(1, seed=5)["val"], p1_seed5)
    assert not np.array_equal(p1, p1_seed5)
    fold1 = np.unique(fs.image_observations(fs.selection_image_ids("tiny", "fold1")))
    np.testing.assert_array_equal(fold1, fs.fold_observations(1)["train"])
    split_filter = fs.filtered_image_ids(SearchFilters(split="p1"))
    np.testing.assert_array_equal(np.unique(fs.image_observations(split_filter)), val)


def test_selections(fs):
    assert store.SELECTIONS == SELECTIONS == (
        "all", "train", "val", "test", "new", "p1", "p2", "fold1", "fold2")
    everything = fs.selection_image_ids("tiny")
    assert everything.dtype == np.int64 and len(everything) == 12 + 27 + 3
    assert (np.diff(everything) > 0).all()
    assert len(fs.selection_image_ids("tiny", "train")) == 12
    assert len(fs.selection_image_ids("tiny", "new")) == 0
    with pytest.raises(StoreError, match="'trian'.*all, train, val, test, new, p1, p2, fold1"):
        fs.selection_image_ids("tiny", "trian")


def test_spaces(fs):
    assert fs.space_names() == ["tiny"]
    assert fs.require_space("tiny").dim == 3
    with pytest.raises(StoreError, match="'huge' does not exist.*known: tiny"):
        fs.require_space("huge")


def test_runs_record_and_read(fs, tmp_path):
    fs.record_run("a", "train", "tiny", "mlp", 1, {"lr": 0.1}, {"f1": 0.5},
                  tmp_path / "elsewhere" / "a", split_seed=3)
    fs.record_run("b", "ensemble", "tiny", "mlp", None, {}, {}, None)
    fs.record_run("c", "calibration", "tiny", None, None, {}, {}, None)
    run = fs.get_run("a")
    assert set(run) == {"run_id", "kind", "space", "head", "fold", "config", "metrics", "path",
                        "split_seed", "created_at"}
    assert run["config"] == {"lr": 0.1} and run["metrics"] == {"f1": 0.5}
    assert run["split_seed"] == 3 and run["fold"] == 1
    assert fs.get_run("b")["split_seed"] is None and fs.get_run("b")["path"] is None
    assert fs.get_run("nope") is None
    assert set(fs.latest_runs()) == {"a", "b"}
    assert fs.latest_runs(kinds=("calibration",)) == ["c"]
    assert len(fs.latest_runs(limit=1)) == 1


def test_runs_table_of_an_older_store_gains_split_seed(tmp_path):
    path = tmp_path / "old.duckdb"
    with FeatureStore(path) as fs:
        fs.record_run("r", "train", None, None, None, {}, {}, None)
    con = duckdb.connect(str(path))
    con.execute("ALTER TABLE runs DROP COLUMN split_seed")
    con.execute("ALTER TABLE runs DROP COLUMN relative_path")
    con.close()
    with FeatureStore(path, read_only=True) as ro:  # read as it is
        assert ro.get_run("r")["split_seed"] is None
    with FeatureStore(path) as fs:  # migrated on the first writable open
        fs.record_run("s", "train", None, None, None, {}, {}, None, split_seed=7)
        assert fs.get_run("s")["split_seed"] == 7 and fs.get_run("r")["split_seed"] is None


def test_lookups(fs):
    assert fs.poisonous_class_ids().tolist() == poisonous_class_ids().tolist()
    t = fs.observation_images([1000, 8002, 9000])
    assert t.column_names == ["image_id", "observation_id", "class_id"]
    assert t.column("observation_id").to_pylist() == [1000, 1000, 8002]  # 9000 unlabelled
    assert t.column("class_id").to_pylist() == [POISONOUS, POISONOUS, -1]
    every = fs.observation_images([1000, 9000], labelled_only=False)
    assert every.column("class_id").to_pylist() == [POISONOUS, POISONOUS, -1]
    images = fs.observation_image_ids(1001)
    assert images.dtype == np.int64 and len(images) == 2
    with pytest.raises(StoreError, match="observation 4242 is not in the store"):
        fs.observation_image_ids(4242)
    np.testing.assert_array_equal(fs.image_observations(images[::-1]), [1001, 1001])
    with pytest.raises(StoreError, match=r"\[987654\]"):
        fs.image_observations([987654])
    np.testing.assert_array_equal(fs.observation_class_ids([8001, 9000, 1000, 4242]),
                                  [EDIBLE, -1, POISONOUS, -1])
    got = fs.existing_observations([4242, 9001, 1000])
    assert got.to_pylist() == [{"observation_id": 1000, "role": "train"},
                               {"observation_id": 9001, "role": "test"}]
    counts = fs.training_image_counts([EDIBLE, POISONOUS, 1603])
    assert counts.dtype == np.float64 and counts.tolist() == [6.0, 6.0, 0.0]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"role": "trian"}, "role='trian'"),
    ({"split": "p3"}, "split='p3'"),
    ({"date_from": "2020-13-01"}, "date_from='2020-13-01'"),
    ({"date_from": "2021-01-02", "date_to": "2021-01-01"}, "after"),
    ({"near": (91.0, 0.0), "radius_km": 5}, "out of range"),
    ({"near": (50.0, 8.0)}, "go together"),
    ({"poisonous": "yes"}, "poisonous='yes'"),
    ({"genus": ""}, "genus=''"),
])
def test_search_filters_validate_on_construction(kwargs, fragment):
    with pytest.raises(StoreError, match=fragment):
        SearchFilters(**kwargs)
    with pytest.raises(ValueError, match=fragment):
        SearchFilters(**kwargs)


def test_filtered_image_ids(fs):
    assert fs.filtered_image_ids(None) is None
    assert fs.filtered_image_ids(SearchFilters()) is None
    poisonous = fs.image_observations(fs.filtered_image_ids(SearchFilters(poisonous=True)))
    edible = fs.image_observations(fs.filtered_image_ids(SearchFilters(poisonous=False)))
    assert set(fs.observation_class_ids(poisonous)) == {POISONOUS}
    assert set(fs.observation_class_ids(edible)) == {EDIBLE}  # no unknown (-1) or unlabelled
    train = fs.filtered_image_ids(SearchFilters(role="train"), exclude_observations=[1000])
    assert set(fs.image_observations(train)) == {1001, 1002, 1003, 1004, 1005}
    only_excluded = fs.filtered_image_ids(None, exclude_observations=np.array([1000]))
    assert 1000 not in set(fs.image_observations(only_excluded))
    dated = fs.filtered_image_ids(SearchFilters(date_from="2015-01-01", date_to="2015-01-31"))
    assert set(fs.image_observations(dated)) == {1000, 8000, 9000}  # row 0 of each file


def test_describe_hits_and_observations(fs):
    ids = fs.sql("SELECT min(image_id) FROM images GROUP BY observation_id "
                 "HAVING observation_id IN (1000, 8001, 8002, 9000) ORDER BY observation_id"
                 ).column(0).to_numpy()
    hits = pa.table({"rank": pa.array([4, 1, 3, 2], pa.int32()),
                     "observation_id": pa.array([1000, 8001, 8002, 9000], pa.int64()),
                     "score": pa.array([0.1, 0.9, 0.5, 0.7], pa.float32()),
                     "image_id": pa.array(ids, pa.int64())})
    got = fs.describe_hits(hits)
    assert got.column_names == ["rank", "observation_id", "score", "image_id", "image_path",
                                "class_id", "species", "genus", "poisonous", "date", "country_code",
                                "locality", "latitude", "longitude", "role"]
    assert got.column("rank").to_pylist() == [1, 2, 3, 4]
    assert got.column("observation_id").to_pylist() == [8001, 9000, 8002, 1000]
    # edible species; unlabelled and unknown species are NULL, never "not poisonous"
    assert got.column("poisonous").to_pylist() == [False, None, None, True]
    obs = fs.describe_observations([9000, 1000, 4242])
    assert obs.column("observation_id").to_pylist() == [9000, 1000]
    for col in ("class_id", "species", "genus", "poisonous", "date", "place", "role",
                "substrate", "habitat", "n_images"):
        assert col in obs.column_names
    assert obs.column("poisonous").to_pylist() == [None, True]
    assert obs.column("n_images").to_pylist() == [1, 2]
    assert obs.column("place")[1].as_py() == "Forest 0, Gribskov, DK"


def test_ingest_report_names_stored_and_rejected_observations(fs, tmp_path):
    rows = make_rows(3, images_per_obs=1, first_id=7000)
    rows[1]["Latitude"] = "95"  # the only row of 7001: rejected
    again = make_rows(1, images_per_obs=1, first_id=1000)  # a train observation, as "new"
    report = fs.ingest_metadata(write_csv(tmp_path / "new.csv", rows + again), role="new")
    assert report.observation_ids.tolist() == [7000, 7002]
    assert report.rejected_observation_ids.tolist() == [1000, 7001]
    assert report.observation_ids.dtype == np.int64
    repeat = fs.ingest_metadata(write_csv(tmp_path / "new.csv", rows + again), role="new")
    assert repeat.observation_ids.tolist() == [7000, 7002]  # stored before: still this role's


def test_default_run_prefers_ensembles_and_breaks_timestamp_ties_by_run_id(fs):
    assert fs.default_run() is None
    fs.record_run("fold-b", "train", "tiny", "mlp", 1, {}, {}, None)
    fs.record_run("fold-a", "train", "tiny", "mlp", 2, {}, {}, None)
    fs.record_run("cal", "calibration", "tiny", None, None, {}, {}, None)
    fs.sql("UPDATE runs SET created_at = TIMESTAMP '2026-01-01 12:00:00'")
    assert fs.default_run() == "fold-b"  # same time: the larger run id
    # every "newest first" list of the store agrees with it
    assert fs.latest_runs(("train",), 2) == ["fold-b", "fold-a"]
    assert fs.recent_runs(("train",), 2).column("run_id").to_pylist() == ["fold-b", "fold-a"]
    fs.record_run("ens-a", "ensemble", "tiny", None, None, {"members": ["fold-a"]}, {}, None)
    fs.record_run("ens-b", "ensemble", "tiny", None, None, {"members": ["fold-b"]}, {}, None)
    fs.sql("UPDATE runs SET created_at = TIMESTAMP '2020-01-01' WHERE kind = 'ensemble'")
    assert fs.default_run() == "ens-b"  # an ensemble, however old, before any fold run
    fs.sql("UPDATE runs SET created_at = TIMESTAMP '2021-01-01' WHERE run_id = 'ens-a'")
    assert fs.default_run() == "ens-a"  # newer wins over the run id

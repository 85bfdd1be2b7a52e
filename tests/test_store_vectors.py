import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_store_helpers import make_rows, write_csv

from store import EmbeddingSpace, FeatureStore, StoreError


@pytest.fixture
def fs(tmp_path):
    with FeatureStore(tmp_path / "s.duckdb") as store:
        store.ingest_metadata(write_csv(tmp_path / "m.csv", make_rows(5)))  # 10 images
        yield store


def image_ids(fs):
    return fs.sql("SELECT image_id FROM images ORDER BY image_id").column(0).to_numpy()


def test_space_name_and_mismatch_are_checked(fs):
    with pytest.raises(StoreError, match="'Bad-Name'"):
        EmbeddingSpace("Bad-Name", model_id="m", dim=4)
    spec = EmbeddingSpace("tiny", model_id="m", dim=4, preprocessing={"crop": 224})
    assert fs.ensure_space(spec) == spec
    assert fs.get_space("tiny") == spec
    assert fs.ensure_space(EmbeddingSpace("tiny", model_id="m", dim=4,
                                          preprocessing={"crop": 224})) == spec
    with pytest.raises(StoreError, match="dim: stored 4, given 8"):
        fs.ensure_space(EmbeddingSpace("tiny", model_id="m", dim=8))
    assert fs.get_space("other") is None


def test_add_fetch_roundtrip_and_skip_existing(fs):
    fs.ensure_space(EmbeddingSpace("tiny", model_id="m", dim=3))
    ids = image_ids(fs)
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(len(ids), 3)).astype(np.float32)
    assert fs.add_embeddings("tiny", ids[:6], vecs[:6]) == 6
    assert fs.add_embeddings("tiny", ids, vecs + 1) == 4  # first six skipped, not overwritten
    got_ids, got = fs.fetch_embeddings("tiny")
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(got[:6], vecs[:6])
    np.testing.assert_array_equal(got[6:], vecs[6:] + 1)
    assert got.dtype == np.float32 and got.shape == (10, 3)
    sub_ids, sub = fs.fetch_embeddings("tiny", ids[[7, 2]])
    np.testing.assert_array_equal(sub_ids, ids[[7, 2]])
    np.testing.assert_array_equal(sub, np.stack([vecs[7] + 1, vecs[2]]))
    # given order kept, ids without a vector (or not stored at all) dropped
    wanted = np.array([ids[9], 999_999, ids[0], ids[4], ids[9] + 10_000, ids[3]])
    sub_ids, sub = fs.fetch_embeddings("tiny", wanted)
    np.testing.assert_array_equal(sub_ids, ids[[9, 0, 4, 3]])
    np.testing.assert_array_equal(sub, np.stack([vecs[9] + 1, vecs[0], vecs[4], vecs[3]]))


def test_add_embeddings_rejects_bad_input_and_changes_nothing(fs):
    fs.ensure_space(EmbeddingSpace("tiny", model_id="m", dim=3))
    ids = image_ids(fs)
    with pytest.raises(StoreError, match="dimension 4"):
        fs.add_embeddings("tiny", ids[:2], np.zeros((2, 4)))
    with pytest.raises(StoreError, match=r"\[999999\]"):
        fs.add_embeddings("tiny", np.array([ids[0], 999999]), np.ones((2, 3)))
    with pytest.raises(StoreError, match="NaN"):
        fs.add_embeddings("tiny", ids[:1], np.full((1, 3), np.nan))
    with pytest.raises(StoreError, match="'nope' does not exist"):
        fs.add_embeddings("nope", ids[:1], np.zeros((1, 3)))
    assert len(fs.fetch_embeddings("tiny")[0]) == 0


def test_pending_images_skip_embedded_and_failed(fs):
    fs.ensure_space(EmbeddingSpace("tiny", model_id="m", dim=2))
    ids = image_ids(fs)
    fs.add_embeddings("tiny", ids[:3], np.ones((3, 2)))
    fs.record_embedding_failures("tiny", ids[3:5], ["unreadable JPEG", "file missing"])
    pending = fs.pending_images("tiny")
    assert pending.column_names == ["image_id", "file_path"]
    np.testing.assert_array_equal(pending.column("image_id").to_numpy(), ids[5:])
    reasons = fs.sql("SELECT reason FROM embedding_failures ORDER BY image_id").column(0)
    assert reasons.to_pylist() == ["unreadable JPEG", "file missing"]


@pytest.mark.parametrize("fixed", [True, False])
def test_ingest_embeddings_parquet(fs, tmp_path, fixed):
    paths = fs.sql("SELECT image_path FROM images ORDER BY image_id DESC").column(0)
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(len(paths), 4)).astype(np.float32)
    emb = (pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), 4) if fixed
           else pa.array(list(vecs), pa.list_(pa.float32())))
    pq.write_table(pa.table({"image_path": paths, "embedding": emb}), tmp_path / "e.parquet")
    report = fs.ingest_embeddings(tmp_path / "e.parquet", "pre", model_id="dinov2-l")
    assert (report.read, report.stored, report.duplicate) == (10, 10, 0)
    assert fs.get_space("pre").dim == 4 and fs.get_space("pre").model_id == "dinov2-l"
    again = fs.ingest_embeddings(tmp_path / "e.parquet", "pre")
    assert (again.stored, again.duplicate) == (0, 10)
    ids, got = fs.fetch_embeddings("pre")
    np.testing.assert_array_equal(got, vecs[::-1])  # file was in descending id order


def test_ingest_embeddings_errors_change_nothing(fs, tmp_path):
    paths = fs.sql("SELECT image_path FROM images ORDER BY image_id").column(0).to_pylist()
    good = pa.table({"image_path": paths[:2],
                     "embedding": pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float32()))})
    pq.write_table(good, tmp_path / "good.parquet")
    fs.ingest_embeddings(tmp_path / "good.parquet", "pre")
    unknown = pa.table({"image_path": [paths[2], "nobody-1.JPG"],
                        "embedding": pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float32()))})
    pq.write_table(unknown, tmp_path / "unknown.parquet")
    with pytest.raises(StoreError, match="nobody-1.JPG"):
        fs.ingest_embeddings(tmp_path / "unknown.parquet", "pre")
    wide = pa.table({"image_path": paths[3:4],
                     "embedding": pa.array([[1.0, 2.0, 3.0]], pa.list_(pa.float32()))})
    pq.write_table(wide, tmp_path / "wide.parquet")
    with pytest.raises(StoreError, match="3-d vectors but space 'pre' has dimension 2"):
        fs.ingest_embeddings(tmp_path / "wide.parquet", "pre")
    ragged = pa.table({"image_path": paths[3:5],
                       "embedding": pa.array([[1.0], [1.0, 2.0]], pa.list_(pa.float32()))})
    pq.write_table(ragged, tmp_path / "ragged.parquet")
    with pytest.raises(StoreError, match="lengths 1..2"):
        fs.ingest_embeddings(tmp_path / "ragged.parquet", "other")
    assert fs.get_space("other") is None
    assert len(fs.fetch_embeddings("pre")[0]) == 2


BROKEN = {  # how one row is broken -> the words every path uses for it
    "nan": (lambda v: v.__setitem__((1, 0), np.nan), "contain NaN or inf"),
    "inf": (lambda v: v.__setitem__((1, 2), np.inf), "contain NaN or inf"),
    "zero": (lambda v: v.__setitem__(1, 0.0), "are all zero"),
}


@pytest.mark.parametrize("bad", list(BROKEN))
@pytest.mark.parametrize("safe_sql", [False, True])  # DuckDB's Parquet reader / Arrow stream
def test_one_vector_rule_for_numpy_adds_files_and_check_vectors(tmp_path, bad, safe_sql):
    from store import InvalidValueError, check_vectors

    path = tmp_path / "s.duckdb"
    with FeatureStore(path) as s:
        s.ingest_metadata(write_csv(tmp_path / "m.csv", make_rows(2)))
        s.ensure_space(EmbeddingSpace("tiny", model_id="m", dim=3))
    change, words = BROKEN[bad]
    vectors = np.ones((4, 3), np.float32)
    change(vectors)
    with FeatureStore(path, safe_sql=safe_sql) as fs:
        ids = image_ids(fs)
        paths = fs.sql("SELECT image_path FROM images ORDER BY image_id").column(0).to_pylist()
        with pytest.raises(InvalidValueError) as pure:
            check_vectors(vectors, 3, names=ids, what="space 'tiny'")
        with pytest.raises(StoreError) as added:
            fs.add_embeddings("tiny", ids, vectors)
        pq.write_table(pa.table({"image_path": paths,
                                 "embedding": pa.array(list(vectors), pa.list_(pa.float32()))}),
                       tmp_path / "e.parquet")
        with pytest.raises(StoreError) as ingested:
            fs.ingest_embeddings(tmp_path / "e.parquet", "tiny")
        assert str(added.value) == str(pure.value)  # the very same check
        expected = f"vectors of images [{paths[1]!r}] (1 in all) {words}"
        assert expected in str(ingested.value)
        assert str(ingested.value).split(": ", 1)[1] == str(pure.value).split(": ", 1)[1] \
            .replace(f"[{ids[1]}]", f"[{paths[1]!r}]")  # same words, file keys for names
        for bad_dim in (np.ones((4, 4), np.float32), np.ones(3, np.float32)):
            with pytest.raises(InvalidValueError, match="but the space has dimension 3"):
                check_vectors(bad_dim, 3)
            with pytest.raises(StoreError, match="but the space has dimension 3"):
                fs.add_embeddings("tiny", ids if bad_dim.ndim == 2 else ids[:3], bad_dim)
        assert len(fs.fetch_embeddings("tiny")[0]) == 0


def test_vector_rule_counts_bad_rows_of_the_whole_file_in_both_engines(tmp_path, monkeypatch):
    import store.embedding_file

    monkeypatch.setattr(store.embedding_file, "BATCH_BYTES", 1)  # 1024-row batches
    path = tmp_path / "s.duckdb"
    with FeatureStore(path) as s:
        s.ingest_metadata(write_csv(tmp_path / "m.csv", make_rows(1500, images_per_obs=1)))
    paths = [f"{1000 + k}-0.JPG" for k in range(1500)]
    vectors = np.ones((1500, 3), np.float32)
    vectors[[3, 1400]] = np.nan  # one in the first batch, one in the second
    pq.write_table(pa.table({"image_path": paths,
                             "embedding": pa.array(list(vectors), pa.list_(pa.float32()))}),
                   tmp_path / "e.parquet")
    messages = set()
    for safe_sql in (False, True):
        with FeatureStore(path, safe_sql=safe_sql) as fs:
            with pytest.raises(StoreError) as err:
                fs.ingest_embeddings(tmp_path / "e.parquet", "tiny")
            messages.add(str(err.value))
            assert fs.get_space("tiny") is None
    assert len(messages) == 1
    assert "['1003-0.JPG', '2400-0.JPG'] (2 in all) contain NaN or inf" in messages.pop()

"""Ingesting an embedding Parquet file, through both paths: DuckDB's own Parquet reader (any
store that may read files) and the Arrow stream (a store opened with safe_sql). A bad file
changes nothing and says what is wrong; a second ingest is idempotent; a different vector
for a stored image is reported, never written."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_store_helpers import make_rows, write_csv

import store.embedding_file
from store import FeatureStore, StoreError


@pytest.fixture(params=["duckdb", "arrow"])
def fs(request, tmp_path, monkeypatch):
    """A store with 6 images (3 observations); checks that the requested path ran."""
    path = tmp_path / "s.duckdb"
    with FeatureStore(path) as s:
        s.ingest_metadata(write_csv(tmp_path / "m.csv", make_rows(3)))
    calls = []
    real = {name: getattr(store.embedding_file, name) for name in ("_ingest_sql", "_ingest_file")}
    for name, fn in real.items():
        monkeypatch.setattr(store.embedding_file, name,
                            lambda *a, _fn=fn, _name=name: calls.append(_name) or _fn(*a))
    with FeatureStore(path, safe_sql=request.param == "arrow") as s:
        yield s
    if calls:
        expected = "_ingest_sql" if request.param == "duckdb" else "_ingest_file"
        assert set(calls) == {expected}


PATHS = [f"{1000 + k}-{j}.JPG" for k in range(3) for j in range(2)]


def _file(path, keys, vectors, kind="list", key="image_path", dtype=np.float32):
    vectors = np.asarray(vectors, dtype)
    if kind == "fixed":
        col = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    else:
        col = pa.array(list(vectors), pa.list_(pa.from_numpy_dtype(dtype)))
    pq.write_table(pa.table({key: keys, "embedding": col}), path, row_group_size=2)
    return path


def _stored(fs):
    return fs.fetch_embeddings("e") if fs.get_space("e") else (np.zeros(0), None)


def _memory_limit(fs):
    return fs.con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]


@pytest.mark.parametrize("kind", ["list", "fixed"])
def test_good_file_then_the_same_file_again(fs, tmp_path, kind):
    limit = _memory_limit(fs)
    vectors = np.random.default_rng(0).normal(size=(6, 5))
    path = _file(tmp_path / "e.parquet", PATHS[::-1], vectors, kind)
    report = fs.ingest_embeddings(path, "e")
    assert (report.read, report.stored, report.duplicate, report.conflicts) == (6, 6, 0, 0)
    ids, got = fs.fetch_embeddings("e")
    np.testing.assert_array_equal(got, vectors[::-1].astype(np.float32))
    again = fs.ingest_embeddings(path, "e")
    assert (again.read, again.stored, again.duplicate, again.conflicts) == (6, 0, 6, 0)
    np.testing.assert_array_equal(fs.fetch_embeddings("e")[1], got)
    assert _memory_limit(fs) == limit  # the ingest's memory cap is lifted afterwards


def test_image_id_keys_and_float64_vectors(fs, tmp_path):
    ids = fs.sql("SELECT image_id FROM images ORDER BY image_id").column(0).to_numpy()
    vectors = np.random.default_rng(1).normal(size=(6, 3))
    report = fs.ingest_embeddings(_file(tmp_path / "e.parquet", ids, vectors, key="image_id",
                                        dtype=np.float64), "e")
    assert report.stored == 6
    got_ids, got = fs.fetch_embeddings("e")
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(got, vectors.astype(np.float32))
    with pytest.raises(StoreError, match=r"image ids \[999999\] .* not in the store"):
        fs.ingest_embeddings(_file(tmp_path / "u.parquet", [int(ids[0]), 999999],
                                   vectors[:2], key="image_id"), "e")


def test_a_different_vector_for_a_stored_image_is_a_conflict_not_an_overwrite(fs, tmp_path):
    vectors = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)
    fs.ingest_embeddings(_file(tmp_path / "e.parquet", PATHS[:4], vectors[:4]), "e")
    changed = vectors.copy()
    changed[1, 2] += 1.0  # stored image, other vector
    changed[3] = changed[3, ::-1]  # the same numbers in another order
    report = fs.ingest_embeddings(_file(tmp_path / "f.parquet", PATHS, changed), "e")
    assert (report.read, report.stored, report.duplicate, report.conflicts) == (6, 2, 2, 2)
    assert report.conflict_examples == [PATHS[1], PATHS[3]]
    assert "2 conflicting" in str(report)
    _, got = fs.fetch_embeddings("e")
    np.testing.assert_array_equal(got[:4], vectors[:4])  # kept, not overwritten
    np.testing.assert_array_equal(got[4:], changed[4:])


def test_an_image_twice_needs_one_vector(fs, tmp_path):
    vectors = np.random.default_rng(3).normal(size=(7, 4))
    keys = PATHS + [PATHS[2]]
    with pytest.raises(StoreError, match=r"image '1001-0.JPG' appears more than once with "
                                         "different vectors; nothing was stored"):
        fs.ingest_embeddings(_file(tmp_path / "e.parquet", keys, vectors), "e")
    assert fs.get_space("e") is None
    vectors[6] = vectors[2]
    report = fs.ingest_embeddings(_file(tmp_path / "e.parquet", keys, vectors), "e")
    assert (report.read, report.stored, report.duplicate) == (7, 6, 1)
    # a repeated image that is stored already: the file's two vectors must still agree
    vectors[6, 0] += 1
    with pytest.raises(StoreError, match="'1001-0.JPG' appears more than once"):
        fs.ingest_embeddings(_file(tmp_path / "e.parquet", keys, vectors), "e")


BAD = {  # how row 4 is broken, and what the error says after the list of images
    "nan": (lambda v: v.__setitem__((4, 1), np.nan), "contain NaN or inf; nothing was stored. "
            "Drop them, or record them as failures"),
    "inf": (lambda v: v.__setitem__((4, 0), -np.inf), "contain NaN or inf"),
    "zero": (lambda v: v.__setitem__(4, 0.0), "are all zero"),
    "huge": (lambda v: v.__setitem__((4, 0), 1e20), "have a squared length that float32 cannot "
             "hold .* Rescale them"),
    "tiny": (lambda v: v.__setitem__(4, 1e-30), "have a squared length"),
}


@pytest.mark.parametrize("kind", ["list", "fixed"])
@pytest.mark.parametrize("bad", list(BAD))
def test_a_bad_vector_changes_nothing_and_is_named(fs, tmp_path, kind, bad):
    vectors = np.ones((6, 4), np.float32)
    fs.ingest_embeddings(_file(tmp_path / "g.parquet", PATHS[:1], vectors[:1]), "e")
    change, message = BAD[bad]
    change(vectors)
    vectors[5] = vectors[4]  # a second bad row: counted, and named after the first
    with pytest.raises(StoreError, match=r"\['1002-0.JPG', '1002-1.JPG'\] \(2 in all\) "
                                         + message):
        fs.ingest_embeddings(_file(tmp_path / "e.parquet", PATHS, vectors, kind), "e")
    assert len(_stored(fs)[0]) == 1
    limit = _memory_limit(fs)
    assert fs.ingest_embeddings(_file(tmp_path / "e.parquet", PATHS[1:3], np.ones((2, 4))),
                                "e").stored == 2  # the store is usable after the failure
    assert _memory_limit(fs) == limit


def test_malformed_files_change_nothing(fs, tmp_path):
    ones = np.ones((6, 3))
    fs.ingest_embeddings(_file(tmp_path / "g.parquet", PATHS[:1], ones[:1]), "e")
    cases = [
        (pa.array([[1.0, 2.0, 3.0]] * 5 + [[1.0, 2.0]], pa.list_(pa.float32())),
         r"lengths 2..3.*same dimension"),
        (pa.array([[1.0, 2.0, 3.0]] * 5 + [None], pa.list_(pa.float32())), "null embedding"),
        (pa.array([[1.0, 2.0, 3.0]] * 5 + [[1.0, None, 3.0]], pa.list_(pa.float32())),
         "null elements"),
    ]
    for column, message in cases:
        pq.write_table(pa.table({"image_path": PATHS, "embedding": column}),
                       tmp_path / "bad.parquet", row_group_size=2)
        with pytest.raises(StoreError, match=message):
            fs.ingest_embeddings(tmp_path / "bad.parquet", "e")
    with pytest.raises(StoreError, match="5-d vectors but space 'e' has dimension 3"):
        fs.ingest_embeddings(_file(tmp_path / "w.parquet", PATHS, np.ones((6, 5))), "e")
    with pytest.raises(StoreError, match=r"image paths \['nobody-1.JPG'\] .* not in the store"):
        fs.ingest_embeddings(_file(tmp_path / "u.parquet", PATHS[1:3] + ["nobody-1.JPG"],
                                   ones[:3]), "e")
    pq.write_table(pa.table({"image_path": pa.array([], pa.string()),
                             "embedding": pa.array([], pa.list_(pa.float32()))}),
                   tmp_path / "empty.parquet")
    with pytest.raises(StoreError, match="holds no rows; nothing to ingest"):
        fs.ingest_embeddings(tmp_path / "empty.parquet", "e")
    assert len(_stored(fs)[0]) == 1


def test_memory_cap_covers_row_groups_per_thread(tmp_path):
    path = _file(tmp_path / "e.parquet", PATHS, np.ones((6, 1000)), "fixed")
    with FeatureStore(tmp_path / "s.duckdb") as s:
        threads = int(s.con.execute("SELECT current_setting('threads')").fetchall()[0][0])
        want = max(store.embedding_file.MIN_INGEST_MEMORY,
                   store.embedding_file.ROW_GROUPS_PER_THREAD * threads * 122_880 * 4 * 1000)
        assert store.embedding_file._ingest_memory_bytes(s.con, path) == want
        before = s.con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        with store.embedding_file.ingest_memory_cap(s.con, path):
            during = s.con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        assert store.embedding_file._size_bytes(during) <= max(want, 2**20 + want)
        assert s.con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == before

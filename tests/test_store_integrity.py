"""No silent wrong state: changed rows, conflicting or broken vectors, paths outside the images
folder."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_store_helpers import make_rows, write_csv

import store.embedding_file
from store import EmbeddingSpace, FeatureStore, StoreError


@pytest.fixture
def fs(tmp_path):
    with FeatureStore(tmp_path / "s.duckdb") as s:
        yield s


def count(fs, table):
    return fs.sql(f"SELECT count(*) FROM {table}").column(0)[0].as_py()


def test_stored_image_row_with_a_changed_field_is_a_conflict(fs, tmp_path):
    rows = make_rows(2, images_per_obs=1)
    fs.ingest_metadata(write_csv(tmp_path / "a.csv", rows))
    changed = [dict(rows[0], rightsHolder="Someone else"), dict(rows[1])]
    report = fs.ingest_metadata(write_csv(tmp_path / "b.csv", changed))
    assert (report.stored, report.duplicate, report.conflicts, report.rejected) == (0, 1, 1, 1)
    reason = fs.sql("SELECT reason FROM rejects").column(0).to_pylist()
    assert reason == ["conflict: image_path 1000-0.JPG is already stored with different "
                      "rights_holder"]
    holder = fs.sql("SELECT rights_holder FROM images WHERE image_path = '1000-0.JPG'")
    assert holder.column(0)[0].as_py() == "Someone"  # the stored value is kept
    # exactly as within one file
    in_file = fs.ingest_metadata(write_csv(tmp_path / "c.csv", [
        dict(rows[0], image_path="new.JPG"), dict(rows[0], image_path="new.JPG",
                                                   rightsHolder="Someone else")]))
    assert (in_file.stored, in_file.conflicts) == (1, 1)


def _space(fs, dim=3):
    fs.ensure_space(EmbeddingSpace("tiny", model_id="m", dim=dim))


def _ids(fs):
    return fs.sql("SELECT image_id FROM images ORDER BY 1").column(0).to_numpy()


@pytest.mark.parametrize("bad, fragment", [
    (np.nan, "NaN or inf"), (np.inf, "NaN or inf"), (-np.inf, "NaN or inf"), (0.0, "all zero")])
def test_add_embeddings_refuses_broken_vectors(fs, tmp_path, bad, fragment):
    fs.ingest_metadata(write_csv(tmp_path / "m.csv", make_rows(2)))
    _space(fs)
    ids = _ids(fs)
    vecs = np.ones((4, 3), np.float32)
    vecs[2] = bad if bad == 0.0 else [1.0, bad, 1.0]
    with pytest.raises(StoreError, match=rf"\[{ids[2]}\].*{fragment}"):
        fs.add_embeddings("tiny", ids, vecs)
    with pytest.raises(StoreError, match="dimension 4"):
        fs.add_embeddings("tiny", ids, np.ones((4, 4)))
    assert count(fs, "emb_tiny") == 0


def test_add_embeddings_refuses_one_image_with_two_vectors(fs, tmp_path):
    fs.ingest_metadata(write_csv(tmp_path / "m.csv", make_rows(2)))
    _space(fs)
    ids = _ids(fs)
    with pytest.raises(StoreError, match=f"image {ids[0]} appears 2 times"):
        fs.add_embeddings("tiny", ids[[0, 1, 0]], np.array([[1, 1, 1], [2, 2, 2], [3, 3, 3]]))
    assert fs.add_embeddings("tiny", ids[[0, 1, 0]], np.array([[1, 1, 1], [2, 2, 2],
                                                               [1, 1, 1]])) == 2
    assert count(fs, "emb_tiny") == 2


def _file(path, paths, vectors, fixed=False):
    vectors = np.asarray(vectors, np.float32)
    col = (pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
           if fixed else pa.array(list(vectors), pa.list_(pa.float32())))
    pq.write_table(pa.table({"image_path": paths, "embedding": col}), path, row_group_size=2)
    return path


@pytest.mark.parametrize("small_batches", [False, True])
def test_embedding_file_with_two_vectors_for_one_image_is_rejected(fs, tmp_path, monkeypatch,
                                                                   small_batches):
    if small_batches:  # the two rows land in different batches
        monkeypatch.setattr(store.embedding_file, "BATCH_BYTES", 1)
    fs.ingest_metadata(write_csv(tmp_path / "m.csv", make_rows(1500, images_per_obs=1)))
    paths = [f"{1000 + k}-0.JPG" for k in range(1500)] + ["1000-0.JPG"]
    vectors = np.random.default_rng(0).normal(size=(1501, 3))
    with pytest.raises(StoreError, match="image '1000-0.JPG' appears .*different vectors"):
        fs.ingest_embeddings(_file(tmp_path / "e.parquet", paths, vectors), "tiny")
    assert fs.get_space("tiny") is None  # nothing stored, not even the space
    vectors[-1] = vectors[0]  # the same vector twice is fine
    report = fs.ingest_embeddings(_file(tmp_path / "e.parquet", paths, vectors), "tiny")
    assert (report.read, report.stored, report.duplicate) == (1501, 1500, 1)


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("bad, fragment", [(np.nan, "NaN or inf"), (np.inf, "NaN or inf"),
                                           (0.0, "all zero")])
def test_embedding_file_with_broken_vectors_stores_nothing(fs, tmp_path, fixed, bad, fragment):
    fs.ingest_metadata(write_csv(tmp_path / "m.csv", make_rows(3)))
    paths = [f"{1000 + k}-{j}.JPG" for k in range(3) for j in range(2)]
    vectors = np.ones((6, 4))
    vectors[4] = bad if bad == 0.0 else [1, 1, bad, 1]
    with pytest.raises(StoreError, match=rf"\['1002-0.JPG'\].*{fragment}"):
        fs.ingest_embeddings(_file(tmp_path / "e.parquet", paths, vectors, fixed), "tiny")
    assert fs.get_space("tiny") is None
    _space(fs, dim=3)
    with pytest.raises(StoreError, match="4-d vectors but space 'tiny' has dimension 3"):
        fs.ingest_embeddings(_file(tmp_path / "e.parquet", paths, np.ones((6, 4)), fixed),
                             "tiny")
    ragged = pa.array([[1.0, 2.0, 3.0]] * 5 + [[1.0, 2.0]], pa.list_(pa.float32()))
    pq.write_table(pa.table({"image_path": paths, "embedding": ragged}), tmp_path / "r.parquet")
    with pytest.raises(StoreError, match="same dimension"):
        fs.ingest_embeddings(tmp_path / "r.parquet", "tiny")
    assert count(fs, "emb_tiny") == 0


def test_image_paths_outside_the_images_folder_get_no_file(fs, tmp_path):
    images = tmp_path / "img"
    (images / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.jpg").write_bytes(b"secret")
    os.symlink(tmp_path / "outside", images / "link")  # a folder link pointing out
    os.symlink(tmp_path / "outside" / "x.jpg", images / "sub" / "y.jpg")  # a file link out
    (images / "ok.jpg").write_bytes(b"x")
    rows = make_rows(5, images_per_obs=1)
    for row, path in zip(rows, ["ok.jpg", "../outside/x.jpg", "link/x.jpg", "sub/y.jpg",
                                str(tmp_path / "outside" / "x.jpg")], strict=True):
        row["image_path"] = path
    report = fs.ingest_metadata(write_csv(tmp_path / "m.csv", rows), images_dir=images)
    # the absolute path is a publisher's path: reduced to its file name, looked up inside
    assert report.stored == 5 and report.rejected == 0 and report.outside_images_dir == 3
    assert report.image_paths_reduced == 1
    got = fs.sql("SELECT image_path, file_path FROM images ORDER BY observation_id").to_pylist()
    assert got[0]["file_path"] == str(images.resolve() / "ok.jpg")
    assert [g["file_path"] for g in got[1:4]] == [None] * 3
    assert got[4] == {"image_path": "x.jpg", "file_path": str(images.resolve() / "x.jpg")}
    assert count(fs, "observations") == 5  # the observations' other data is kept
    reasons = fs.sql("SELECT row_number, reason FROM rejects ORDER BY 1").to_pylist()
    assert [r["row_number"] for r in reasons] == [2, 3, 4]
    assert all("outside the images folder" in r["reason"] for r in reasons)
    again = fs.ingest_metadata(write_csv(tmp_path / "m.csv", rows), images_dir=images)
    assert again.duplicate == 5 and count(fs, "rejects") == 3  # not recorded twice

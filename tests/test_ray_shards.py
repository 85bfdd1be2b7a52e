"""The parts of the Ray pipelines that run without Ray: a vector shard goes into the
store in one transaction, and a scoring block keeps each observation's image rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_store_helpers import make_rows, write_csv

from sporeprint.distributed.embedding import ingest_shard
from sporeprint.distributed.scoring import observation_table, table_rows
from sporeprint.rows import Rows
from store import EmbeddingSpace, FeatureStore, StoreError


@pytest.fixture
def fs(tmp_path):
    with FeatureStore(tmp_path / "s.duckdb") as store:
        store.ingest_metadata(write_csv(tmp_path / "m.csv", make_rows(5)))  # 10 images
        store.ensure_space(EmbeddingSpace("tiny", model_id="m", dim=3))
        yield store


def _shard(path, ids, vectors, reasons):
    pq.write_table(pa.table({
        "image_id": pa.array(ids, pa.int64()),
        "vector": pa.FixedSizeListArray.from_arrays(
            pa.array(np.asarray(vectors, np.float32).ravel(), pa.float32()), 3),
        "reason": pa.array(reasons, pa.string()),
    }), path)
    return path


def test_a_shard_adds_vectors_and_failures_and_a_rerun_adds_nothing(fs, tmp_path):
    ids = fs.sql("SELECT image_id FROM images ORDER BY image_id").column(0).to_numpy()[:4]
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    shard = _shard(tmp_path / "part-0.parquet", ids, vectors,
                   [None, "missing file", None, None])
    assert ingest_shard(fs, "tiny", shard) == (3, 0, 1)
    got_ids, got = fs.fetch_embeddings("tiny")
    np.testing.assert_array_equal(got_ids, ids[[0, 2, 3]])
    np.testing.assert_array_equal(got, vectors[[0, 2, 3]])
    assert fs.embedding_failure_reasons("tiny")[0]["reason"] == "missing file"
    assert len(fs.pending_images("tiny")) == 10 - 4
    assert ingest_shard(fs, "tiny", shard)[0] == 0  # already stored: skipped, not doubled


def test_a_bad_shard_changes_nothing(fs, tmp_path):
    ids = fs.sql("SELECT image_id FROM images ORDER BY image_id").column(0).to_numpy()[:2]
    shard = _shard(tmp_path / "bad.parquet", [ids[0], ids[1], 999_999_999],
                   np.ones((3, 3)), [None, "truncated file", None])
    with pytest.raises(StoreError, match="999999999"):
        ingest_shard(fs, "tiny", shard)
    assert len(fs.fetch_embeddings("tiny")[0]) == 0
    assert fs.embedding_failure_reasons("tiny") == []  # the failure rolled back too


def test_observation_blocks_keep_every_image_row_of_an_observation():
    rng = np.random.default_rng(0)
    obs = np.array([7, 3, 7, 9, 3, 7], np.int64)
    rows = Rows(np.arange(6, dtype=np.int64), obs, np.full(6, -1, np.int64),
                rng.normal(size=(6, 4)).astype(np.float32),
                np.repeat(rng.normal(size=(1, 2)), 6, axis=0).astype(np.float32))
    rows.metadata[obs == 3] = 5.0  # metadata is per observation
    table = observation_table(rows)
    assert table.column("observation_id").to_pylist() == [3, 7, 9]
    assert table.column("n_images").to_pylist() == [2, 3, 1]
    back = table_rows(table.slice(1, 2), dim=4)  # a block holding observations 7 and 9
    np.testing.assert_array_equal(back.observation_ids, [7, 7, 7, 9])
    np.testing.assert_array_equal(back.embeddings, rows.embeddings[[0, 2, 5, 3]])
    np.testing.assert_array_equal(back.metadata, rows.metadata[[0, 2, 5, 3]])

"""The whole store as Parquet: export, read back without sporeprint, import, compare."""

import json

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from test_store_helpers import bad_rows, make_rows, write_csv

from store import EmbeddingSpace, FeatureStore, StoreError


def _tables(fs):
    names = fs.sql("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
                   "ORDER BY 1").column(0).to_pylist()
    return names


def _rows(fs, table):
    cols = fs.sql("SELECT column_name FROM duckdb_columns() WHERE table_name = ? "
                  "ORDER BY column_index", [table]).column(0).to_pylist()
    order = ", ".join(f'"{c}"' for c in cols)
    return fs.sql(f'SELECT * FROM "{table}" ORDER BY {order}').to_pylist()


@pytest.fixture
def source(tmp_path):
    """A store with something in every table, opened read-only."""
    path = tmp_path / "src.duckdb"
    with FeatureStore(path) as fs:
        train = make_rows(6, classes=(0, 1, 2))
        fs.ingest_metadata(write_csv(tmp_path / "train.csv", train + [bad_rows(train[0])[0][0]]),
                           role="train")
        fs.ingest_metadata(write_csv(tmp_path / "val.csv", make_rows(
            9, images_per_obs=1, first_id=8000, classes=(0, 1, -1))), role="val")
        ids = fs.sql("SELECT image_id FROM images ORDER BY 1").column(0).to_numpy()
        for name, dim in (("tiny", 3), ("wide", 5)):
            fs.ensure_space(EmbeddingSpace(name, model_id=f"m-{name}", dim=dim,
                                           preprocessing={"crop": 224}))
            rng = np.random.default_rng(dim)
            fs.add_embeddings(name, ids[:-1], rng.normal(size=(len(ids) - 1, dim)))
            fs.record_embedding_failures(name, ids[-1:], "cannot decode")
        fs.fit_encoder()
        fs.encode_observations()
        fs.make_splits(4)
        fs.record_run("r1", "train", "tiny", "mlp", 1, {"lr": 0.1}, {"f1": 0.5},
                      tmp_path / "src.duckdb.runs" / "r1", split_seed=4)
        preds = pa.table({"observation_id": pa.array([8000, 8001], pa.int64()),
                          "class_id": pa.array([0, -1], pa.int32()),
                          "top5_class_ids": pa.array([[0, 1], [1, 2]], pa.list_(pa.int32()))})
        fs.write_predictions("r1", "batch-a", preds)
        fs.write_predictions("r1", "007", preds.slice(0, 1))
    with FeatureStore(path, read_only=True) as ro:
        yield ro


def test_export_all_reads_without_sporeprint_and_round_trips(source, tmp_path):
    out = tmp_path / "export"
    files = source.export_all(out)  # works on a read-only (sandboxed) store
    expected = {"meta", "species", "observations", "images", "embedding_spaces",
                "embedding_failures", "rejects", "encoders", "features", "splits", "runs",
                "predictions", "emb_tiny", "emb_wide"}
    assert set(files) == expected
    assert {p.split("/")[-2] for p in files["predictions"]} == {"batch=batch-a", "batch=007"}
    spec = json.loads((out / "emb_wide.json").read_text())
    assert spec == {"name": "wide", "model_id": "m-wide", "revision": None, "dim": 5,
                    "pooling": "cls", "dtype": "float32", "preprocessing": {"crop": 224}}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["store_id"] == source.store_id
    assert manifest["tables"]["observations"]["rows"] == 15

    # plain pyarrow
    for table in expected - {"predictions"}:
        got = pq.read_table(out / f"{table}.parquet")
        assert got.num_rows == source.sql(f"SELECT count(*) FROM {table}").column(0)[0].as_py()
    vectors = pq.read_table(out / "emb_wide.parquet")
    ids, matrix = source.fetch_embeddings("wide")
    order = np.argsort(vectors.column("image_id").to_numpy())
    flat = np.stack(vectors.column("vector").to_pylist())[order]
    np.testing.assert_array_equal(flat, matrix)
    preds = ds.dataset(out / "predictions", format="parquet", partitioning="hive").to_table()
    assert preds.num_rows == 3

    # a fresh DuckDB connection, no sporeprint
    con = duckdb.connect()
    n = con.execute("SELECT count(*) FROM read_parquet(?)",
                    [str(out / "observations.parquet")]).fetchall()[0][0]
    assert n == 15
    by_batch = con.execute(
        "SELECT batch, count(*) FROM read_parquet(?, hive_partitioning = true, "
        "hive_types_autocast = false) GROUP BY 1 ORDER BY 1",
        [str(out / "predictions" / "**" / "*.parquet")]).fetchall()
    assert by_batch == [("007", 1), ("batch-a", 2)]
    dims = con.execute("SELECT DISTINCT len(vector) FROM read_parquet(?)",
                       [str(out / "emb_tiny.parquet")]).fetchall()
    assert dims == [(3,)]
    con.close()

    # back into a new store: every table equal
    with FeatureStore(tmp_path / "copy.duckdb") as copy:
        added = copy.import_all(out)
        assert added["emb_wide"] == len(ids)
        assert _tables(copy) == _tables(source)
        for table in _tables(source):
            assert _rows(copy, table) == _rows(source, table), table
        assert copy.store_id == source.store_id and copy.split_seed() == 4
        assert copy.get_run("r1")["path"] == source.get_run("r1")["path"]
        with pytest.raises(StoreError, match="new, empty store"):
            copy.import_all(out)


def test_import_all_needs_an_export(tmp_path):
    with FeatureStore(tmp_path / "s.duckdb") as fs, pytest.raises(StoreError, match="manifest"):
        fs.import_all(tmp_path)


def test_import_all_refuses_a_changed_poison_list(source, tmp_path):
    out = tmp_path / "export"
    source.export_all(out)
    species = pq.read_table(out / "species.parquet")
    flags = species.column("poisonous").to_pylist()
    first = flags.index(True)
    flags[first] = False  # a poisonous species made edible
    species = species.set_column(species.column_names.index("poisonous"), "poisonous",
                                 pa.array(flags))
    pq.write_table(species, out / "species.parquet")
    with FeatureStore(tmp_path / "copy.duckdb") as copy:
        with pytest.raises(StoreError, match="official poisonous list"):
            copy.import_all(out)
        assert copy.sql("SELECT count(*) FROM observations").column(0)[0].as_py() == 0
        assert copy.poisonous_class_ids().size == 49  # the seeded list is untouched

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from test_store_helpers import bad_rows, make_rows, write_csv

from sporeprint.cli import main


def test_ingest_sql_export_import(tmp_path, capsys):
    store = str(tmp_path / "s.duckdb")
    rows = make_rows(3) + [bad_rows(make_rows(1)[0])[0][0]]
    csv_path = str(write_csv(tmp_path / "m.csv", rows))
    assert main(["ingest", "--store", store, "--metadata", csv_path, "--role", "train"]) == 0
    out = capsys.readouterr().out
    assert "read 7  stored 6  rejected 1 (conflicts 0)  duplicate 0" in out
    assert "latitude 91.5 outside -90..90" in out

    paths = [r["image_path"] for r in rows[:6]]
    emb = pa.array(list(np.eye(6, 4, dtype=np.float32) + 0.5), pa.list_(pa.float32()))
    pq.write_table(pa.table({"image_path": paths, "embedding": emb}), tmp_path / "e.parquet")
    assert main(["ingest", "--store", store, "--embeddings", str(tmp_path / "e.parquet"),
                 "--space", "pre"]) == 0
    assert "stored 6" in capsys.readouterr().out

    assert main(["sql", "--store", store, "--format", "json",
                 "SELECT role, count(*) AS n FROM observations GROUP BY role"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"role": "train", "n": 3}]
    assert main(["sql", "--store", store, "SELECT class_id, poisonous FROM species "
                 "ORDER BY class_id LIMIT 2"]) == 0
    assert "(2 rows)" in capsys.readouterr().out

    assert main(["sql", "--store", store, "DELETE FROM observations"]) == 2
    assert "--write" in capsys.readouterr().err
    assert main(["sql", "--store", store, "--write", "DELETE FROM rejects"]) == 0

    assert main(["export", "--store", store, "--table", "observations", "--out",
                 str(tmp_path / "exp"), "--partition-by", "class_id"]) == 0
    other = str(tmp_path / "t.duckdb")
    assert main(["import", "--store", other, "--table", "observations", "--path",
                 str(tmp_path / "exp")]) == 0
    assert "imported 3 new rows" in capsys.readouterr().out.splitlines()[-1]


def test_ingest_of_a_non_metadata_file_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "photo.csv"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not csv")
    assert main(["ingest", "--store", str(tmp_path / "s.duckdb"), "--metadata", str(bad),
                 "--role", "train"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "photo.csv" in err


def test_export_everything_and_import_it_into_a_new_store(tmp_path, capsys):
    from conftest import make_simulated_store

    from store import FeatureStore

    store = make_simulated_store(tmp_path / "a", dim=8)
    assert main(["export", "--store", str(store), "--out", str(tmp_path / "exp")]) == 0
    assert "observations" in capsys.readouterr().out
    other = tmp_path / "b.duckdb"
    assert main(["import", "--store", str(other), "--path", str(tmp_path / "exp")]) == 0
    with FeatureStore(store, read_only=True) as a, FeatureStore(other, read_only=True) as b:
        assert a.store_id == b.store_id
        for table in ("observations", "images", "emb_sim"):
            q = f"SELECT * FROM {table} ORDER BY 1"
            assert a.sql(q).equals(b.sql(q)), table

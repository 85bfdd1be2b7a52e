"""Import is as strict as ingest, can never empty the poison list, and leaves the store's
bytes as they were when it refuses; a saved index is verified against what it claims."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_store_helpers import make_rows, write_csv

from retrieval import RetrievalError, VectorIndex
from sporeprint.cli import main
from sporeprint.indexing import StaleIndexError, build_index, index_dir, load_index
from store import EmbeddingSpace, FeatureStore, StoreError


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A small store with something in every table, and its export."""
    root = tmp_path_factory.mktemp("import_trust")
    path = root / "src.duckdb"
    with FeatureStore(path) as fs:
        fs.ingest_metadata(write_csv(root / "train.csv", make_rows(8, classes=(0, 1, 2))),
                           role="train")
        fs.ingest_metadata(write_csv(root / "val.csv", make_rows(
            9, images_per_obs=1, first_id=8000, classes=(0, 1, -1))), role="val")
        ids = fs.sql("SELECT image_id FROM images ORDER BY 1").column(0).to_numpy()
        fs.ensure_space(EmbeddingSpace("tiny", model_id="m", dim=3))
        fs.add_embeddings("tiny", ids, np.random.default_rng(0).normal(size=(len(ids), 3)))
        fs.fit_encoder()
        fs.encode_observations()
        fs.make_splits(4)
        fs.record_run("r1", "train", "tiny", "mlp", 1, {"lr": 0.1}, {"f1": 0.5},
                      root / "runs" / "r1", split_seed=4)
        fs.write_predictions("r1", "b1", pa.table({
            "observation_id": pa.array([8000, 8001], pa.int64()),
            "class_id": pa.array([0, -1], pa.int32()),
            "poison_prob": pa.array([0.1, 0.2])}))
        fs.export_all(root / "export")
    return {"root": root, "store": path, "dir": root / "export"}


def _copy(export, tmp_path, name="exp"):
    dst = tmp_path / name
    shutil.copytree(export["dir"], dst)
    return dst


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _set(folder, table, column, value, row=0):
    """Write ``value`` into one cell of an exported table (keeping its type when it fits)."""
    path = folder / f"{table}.parquet"
    data = pq.read_table(path)
    cells = data.column(column).to_pylist()
    cells[row] = value
    kind = data.schema.field(column).type
    try:
        array = pa.array(cells, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        array = pa.array([None if c is None else str(c) for c in cells])
    pq.write_table(data.set_column(data.column_names.index(column), column, array), path)


def _refused(folder, tmp_path, *fragments, table=None):
    """Import must refuse with one line naming each fragment, through the API (the target's
    bytes unchanged) and the CLI (rc 2, `error: ...`, no store left behind)."""
    target = tmp_path / "target.duckdb"
    FeatureStore(target).close()
    before = _digest(target)
    with FeatureStore(target) as fs, pytest.raises(StoreError) as info:
        fs.import_parquet(table, folder) if table else fs.import_all(folder)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg
    assert _digest(target) == before
    return msg


def _cli_refuses(args, capsys):
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# -- 1. the poison list can never be emptied -------------------------------------------

@pytest.mark.parametrize("damage", ["no species file", "empty folder"])
def test_an_export_without_species_is_refused_and_leaves_no_store(export, tmp_path, capsys,
                                                                  damage):
    folder = _copy(export, tmp_path)
    if damage == "no species file":
        (folder / "species.parquet").unlink()
    else:
        for f in folder.rglob("*.parquet"):
            f.unlink()
    msg = _refused(folder, tmp_path, "species.parquet" if damage == "no species file"
                   else "meta.parquet", "missing", "nothing was imported")
    assert "manifest.json" in msg
    new = tmp_path / "new.duckdb"
    _cli_refuses(["import", "--store", str(new), "--path", str(folder)], capsys)
    assert not new.exists() and not (tmp_path / "new.duckdb.wal").exists()


def test_an_intact_export_restores_the_official_list(export, tmp_path, capsys):
    new = tmp_path / "new.duckdb"
    assert main(["import", "--store", str(new), "--path", str(export["dir"])]) == 0
    with FeatureStore(new, read_only=True) as fs:
        assert fs.poisonous_class_ids().size == 49
        assert fs.sql("SELECT count(*) FROM species").column(0)[0].as_py() == 1604


@pytest.mark.parametrize("tamper", [
    "DELETE FROM species WHERE poisonous",
    "UPDATE species SET poisonous = false WHERE class_id IN (SELECT class_id FROM species "
    "WHERE poisonous LIMIT 3)",
    "INSERT INTO species (class_id, poisonous) VALUES (7777, false)",
])
def test_a_store_whose_species_disagree_with_the_official_list_refuses_to_open(
        export, tmp_path, capsys, tamper):
    store = tmp_path / "s.duckdb"
    shutil.copy(export["store"], store)
    with FeatureStore(store) as fs:
        fs.sql(tamper)
    for read_only in (True, False):
        with pytest.raises(StoreError, match="--official-species") as info:
            FeatureStore(store, read_only=read_only)
        assert "\n" not in str(info.value) and "official" in str(info.value)
    err = _cli_refuses(["decide", "--store", str(store), "--batch", "b1"], capsys)
    assert "--official-species" in err
    assert main(["import", "--store", str(store), "--official-species"]) == 0
    with FeatureStore(store, read_only=True) as fs:
        assert fs.poisonous_class_ids().size == 49
        assert fs.sql("SELECT count(*) FROM species").column(0)[0].as_py() == 1604


# -- 3. import applies ingest's rules ----------------------------------------------------

CELLS = [
    ("observations", "role", "admin", ["role", "admin"]),
    ("observations", "class_id", 5000, ["class id 5000"]),
    ("observations", "latitude", 999.0, ["latitude 999", "-90..90"]),
    ("observations", "latitude", float("nan"), ["latitude", "finite"]),
    ("observations", "month", 13, ["month 13", "1..12"]),
    ("observations", "observation_id", "x", ["observation_id", "type string"]),
    ("images", "observation_id", 424242, ["observation_id", "424242", "observations"]),
    ("emb_tiny", "vector", [float("nan"), 0.0, 1.0], ["emb_tiny", "NaN"]),
    ("emb_tiny", "vector", [float("inf"), 0.0, 1.0], ["emb_tiny", "NaN or inf"]),
    ("emb_tiny", "vector", [0.0, 0.0, 0.0], ["emb_tiny", "all zero"]),
    ("emb_tiny", "image_id", 999999, ["image_id", "999999", "images"]),
    ("features", "vector", [1.0, 2.0], ["features", "encoder version"]),
    ("splits", "part", "zzz", ["part", "zzz"]),
    ("runs", "fold", 7, ["fold", "7"]),
    ("runs", "config", "{not json", ["config", "not JSON"]),
    ("embedding_spaces", "dim", -3, ["embedding_spaces", "-3"]),
    ("embedding_spaces", "table_name", "emb_other", ["table_name", "emb_other"]),
    ("species", "class_id", 7777, ["species", "7777"]),
]


@pytest.mark.parametrize("table, column, value, fragments", CELLS,
                         ids=[f"{t}.{c}={v!r}" for t, c, v, _ in CELLS])
def test_import_refuses_values_ingest_would_refuse(export, tmp_path, table, column, value,
                                                   fragments):
    folder = _copy(export, tmp_path)
    _set(folder, table, column, value)
    _refused(folder, tmp_path, *fragments)


def test_import_refuses_a_split_seed_that_is_not_an_integer(export, tmp_path):
    folder = _copy(export, tmp_path)
    meta = pq.read_table(folder / "meta.parquet").to_pylist()
    row = next(i for i, r in enumerate(meta) if r["key"] == "split_seed")
    _set(folder, "meta", "value", "abc", row=row)
    _refused(folder, tmp_path, "split_seed", "abc")


def test_import_refuses_two_rows_for_one_key(export, tmp_path):
    folder = _copy(export, tmp_path)
    data = pq.read_table(folder / "observations.parquet")
    twin = data.slice(0, 1).to_pylist()
    twin[0]["locality"] = "elsewhere"
    pq.write_table(pa.concat_tables([data, pa.Table.from_pylist(twin, schema=data.schema)]),
                   folder / "observations.parquet")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["tables"]["observations"]["rows"] += 1
    (folder / "manifest.json").write_text(json.dumps(manifest))
    _refused(folder, tmp_path, "observation_id", "2 rows", "one row per key")


@pytest.mark.parametrize("text, fragment", [
    ('{"tables": [1, 2]}', "manifest"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("{not json", "not a sporeprint export manifest"),
    ('{"format": "sporeprint-store-parquet", "tables": [1, 2]}', "tables"),
    ('{"format": "sporeprint-store-parquet", "tables": {"meta": {"rows": 1}}}', "lists no"),
])
def test_import_refuses_a_bad_manifest(export, tmp_path, capsys, text, fragment):
    folder = _copy(export, tmp_path)
    (folder / "manifest.json").write_text(text)
    _refused(folder, tmp_path, fragment)
    _cli_refuses(["import", "--store", str(tmp_path / "n.duckdb"), "--path", str(folder)],
                 capsys)


def test_import_refuses_a_row_count_the_manifest_does_not_claim(export, tmp_path):
    folder = _copy(export, tmp_path)
    data = pq.read_table(folder / "images.parquet")
    pq.write_table(data.slice(0, data.num_rows - 1), folder / "images.parquet")
    _refused(folder, tmp_path, "images.parquet", "counts")


def test_one_table_import_is_checked_too(export, tmp_path):
    sp = tmp_path / "species.parquet"
    data = pq.read_table(export["dir"] / "species.parquet").slice(0, 2).to_pylist()
    data[0]["class_id"] = 7777
    pq.write_table(pa.Table.from_pylist(data), sp)
    store = tmp_path / "s.duckdb"
    shutil.copy(export["store"], store)
    before = _digest(store)
    with FeatureStore(store) as fs:
        with pytest.raises(StoreError, match="7777 is not a DF20 class"):
            fs.import_parquet("species", sp)
        obs = tmp_path / "obs.parquet"
        rows = pq.read_table(export["dir"] / "observations.parquet").slice(0, 1).to_pylist()
        rows[0]["month"] = 5 if rows[0]["month"] != 5 else 6
        pq.write_table(pa.Table.from_pylist(rows), obs)
        with pytest.raises(StoreError, match="already stored with a different month"):
            fs.import_parquet("observations", obs)
        assert fs.import_parquet("observations", export["dir"] / "observations.parquet") == 0
    assert _digest(store) == before


# -- 4. seeded fuzzing ---------------------------------------------------------------

BAD_VALUES = {
    "observations": [("role", "admin"), ("class_id", -7), ("day", 32), ("longitude", -181.0),
                     ("coord_uncert", float("inf")), ("month", "May")],
    "images": [("observation_id", 1), ("image_path", None)],
    "emb_tiny": [("vector", [0.0, 0.0, 0.0]), ("vector", [1.0, float("nan"), 0.0]),
                 ("vector", [1.0, 2.0]), ("image_id", -5)],
    "features": [("vector", [float("nan")] * 3), ("encoder_version", 99)],
    "encoders": [("columns", "{"), ("vocab", "not json")],
    "splits": [("part", "p9"), ("seed", "abc")],
    "runs": [("fold", 3), ("metrics", "[")],
    "meta": [("value", "abc")],
    "predictions/batch=b1/part-0": [("poison_prob", 2.0), ("poison_prob", float("nan")),
                                    ("class_id", 9999)],
    "species": [("poisonous", None), ("class_id", 1604)],
    "embedding_spaces": [("space", "Bad Name"), ("dim", 0)],
}


def _mutate(folder, rng):
    """One seeded damage to an export folder."""
    files = sorted(p for p in folder.rglob("*.parquet"))
    kind = rng.choice(["drop", "truncate", "value", "duplicate", "manifest"])
    if kind == "drop":
        rng.choice(files).unlink()
    elif kind == "truncate":
        path = rng.choice(files)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * rng.uniform(0, 0.95))])
    elif kind == "value":
        table = rng.choice(sorted(BAD_VALUES))
        column, value = BAD_VALUES[table][rng.integers(len(BAD_VALUES[table]))]
        path = folder / f"{table}.parquet"
        if table == "meta":  # the split seed
            row = [r["key"] for r in pq.read_table(path).to_pylist()].index("split_seed")
        else:
            row = int(rng.integers(pq.read_metadata(path).num_rows))
        _set(path.parent, path.stem, column, value, row=row)
    elif kind == "duplicate":
        path = rng.choice([f for f in files if pq.read_metadata(f).num_rows and
                           f.stem not in ("rejects", "embedding_failures", "part-0")])
        data = pq.read_table(path)
        pq.write_table(pa.concat_tables([data, data.slice(int(rng.integers(data.num_rows)), 1)]),
                       path)
    else:
        manifest = (folder / "manifest.json").read_text()
        damage = rng.integers(5)
        if damage == 0:
            manifest = manifest[: int(rng.integers(len(manifest)))]
        elif damage == 1:
            manifest = "[" * int(rng.integers(1_000, 200_000))
        elif damage == 2:
            data = json.loads(manifest)
            table = rng.choice(sorted(data["tables"]))
            data["tables"][table]["rows"] += int(rng.integers(1, 5))
            manifest = json.dumps(data)
        elif damage == 3:
            data = json.loads(manifest)
            del data["tables"][rng.choice(sorted(data["tables"]))]
            manifest = json.dumps(data)
        else:
            manifest = json.dumps({"tables": [1, 2], "format": rng.choice(["x", None])})
        (folder / "manifest.json").write_text(manifest)
    return kind


def test_fuzzed_exports_are_refused_with_one_line_and_change_nothing(export, tmp_path, capsys):
    rng = np.random.default_rng(20260)
    target = tmp_path / "target.duckdb"
    FeatureStore(target).close()
    before = _digest(target)
    kinds = {}
    with FeatureStore(target) as fs:
        for n in range(200):
            folder = tmp_path / f"m{n}"
            shutil.copytree(export["dir"], folder)
            kind = _mutate(folder, rng)
            kinds[kind] = kinds.get(kind, 0) + 1
            with pytest.raises(StoreError) as info:
                fs.import_all(folder)
            assert "\n" not in str(info.value), (kind, str(info.value))
            if n % 20 == 0:
                new = tmp_path / f"new{n}.duckdb"
                _cli_refuses(["import", "--store", str(new), "--path", str(folder)], capsys)
                assert not new.exists()
            shutil.rmtree(folder)
        assert fs.sql("SELECT count(*) FROM observations").column(0)[0].as_py() == 0
    assert _digest(target) == before
    assert min(kinds.values()) > 15 and len(kinds) == 5


# -- 2. a loaded index is what it claims ------------------------------------------------

@pytest.fixture
def indexed(export, tmp_path):
    store = tmp_path / "s.duckdb"
    shutil.copy(export["store"], store)
    with FeatureStore(store, read_only=True) as fs:
        build_index(fs, "tiny", "exact", "train")
    return store, index_dir(store, "tiny", "exact", "train")


def test_a_reordered_ids_file_is_refused_and_scoring_searches_a_memory_index(indexed):
    from sporeprint.scoring.model import training_index

    store, directory = indexed
    ids = np.load(directory / "ids.npy")
    np.save(directory / "ids.npy", ids[::-1])  # same set: the checksum still matches
    with pytest.raises(RetrievalError, match="ids.npy.*sporeprint index build"):
        VectorIndex.load(directory)
    with FeatureStore(store, read_only=True) as fs:
        with pytest.raises(RetrievalError, match="sporeprint index build"):
            load_index(fs, "tiny", "exact", "train")
        index = training_index(fs, "tiny")
        assert index.manifest == {}  # built in memory
        found, vectors = fs.fetch_embeddings("tiny", ids)
        assert index.search(vectors, 1)[1][:, 0].tolist() == found.tolist()


def test_a_consistently_rewritten_index_is_refused_by_the_store_sample(indexed):
    store, directory = indexed
    ids = np.load(directory / "ids.npy")
    np.save(directory / "ids.npy", ids[::-1])
    manifest = json.loads((directory / "manifest.json").read_text())
    from retrieval.manifest import ids_digest

    manifest["ids_digest"] = ids_digest(ids[::-1])  # the digest rewritten to match
    (directory / "manifest.json").write_text(json.dumps(manifest))
    VectorIndex.load(directory)  # the files agree with each other now
    with FeatureStore(store, read_only=True) as fs:
        with pytest.raises(StaleIndexError, match="does not hold the store's vectors"):
            load_index(fs, "tiny", "exact", "train")


def test_a_changed_faiss_file_is_refused(indexed):
    _, directory = indexed
    other = VectorIndex(3, "exact")
    ids = np.load(directory / "ids.npy")
    other.add(ids, np.random.default_rng(9).normal(size=(ids.size, 3)).astype(np.float32))
    other.save(directory.parent / "other")
    shutil.copy(directory.parent / "other" / "index.faiss", directory / "index.faiss")
    with pytest.raises(RetrievalError, match="index.faiss is not the file"):
        VectorIndex.load(directory)


@pytest.mark.parametrize("kind, params", [("hnsw", {}), ("ivf_flat", {"nlist": 2}),
                                          ("ivf_pq", {"nlist": 2, "m": 1, "nbits": 2,
                                                      "refine_factor": 0})])
def test_every_kind_passes_the_store_sample_when_intact(indexed, kind, params):
    store, _ = indexed
    with FeatureStore(store, read_only=True) as fs:
        build_index(fs, "tiny", kind, "all", **params)
        assert len(load_index(fs, "tiny", kind, "all")) == fs.selection_image_ids("tiny").size

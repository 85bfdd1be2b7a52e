"""Simulated files through the real tools: `sporeprint ingest` into a DuckDB store, JPEGs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sporeprint.cli import main
from sporeprint.simulator.simulate import SimConfig, simulate


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    assert main(["simulate", "--out", str(out), "--classes", "80", "--dim", "16", "--seed", "3",
                 "--images", "--image-size", "48"]) == 0
    return out


def test_cli_writes_all_files(written):
    for name in ("df20_train.csv", "df21_val.csv", "test_2024.csv", "test_2024_truth.csv",
                 "embeddings.parquet", "embeddings_train.parquet", "embeddings_val.parquet",
                 "embeddings_test.parquet", "images"):
        assert (written / name).exists(), name


def test_files_ingest_with_zero_rejects(written, tmp_path):
    store = pytest.importorskip("store")
    db = tmp_path / "s.duckdb"
    for name, role in (("df20_train.csv", "train"), ("df21_val.csv", "val"),
                       ("test_2024.csv", "test")):
        assert main(["ingest", "--store", str(db), "--metadata", str(written / name),
                     "--role", role, "--images", str(written / "images")]) == 0
    assert main(["ingest", "--store", str(db), "--embeddings", str(written / "embeddings.parquet"),
                 "--space", "sim", "--model-id", "simulator"]) == 0
    sim = simulate(SimConfig(classes=80, dim=16, seed=3))
    with store.FeatureStore(db, read_only=True) as fs:
        assert fs.sql("SELECT count(*) AS n FROM rejects")["n"][0].as_py() == 0
        n_obs = fs.sql("SELECT role, count(*) AS n FROM observations GROUP BY role ORDER BY role")
        counts = dict(zip(n_obs["role"].to_pylist(), n_obs["n"].to_pylist(), strict=True))
        summary = sim.summary()
        assert counts == {r: summary[r]["observations"] for r in ("test", "train", "val")}
        ids, vectors = fs.fetch_embeddings("sim")
        assert vectors.shape == (len(sim.image_paths), 16)
        # The stored vector of an image is the simulated one.
        paths = fs.sql("SELECT image_id, image_path FROM images")
        by_id = dict(zip(paths["image_id"].to_pylist(), paths["image_path"].to_pylist(),
                         strict=True))
        row = {p: i for i, p in enumerate(sim.image_paths)}
        assert np.allclose(vectors[0], sim.vectors[row[by_id[int(ids[0])]]], atol=1e-6)
        unknown = fs.sql("SELECT count(*) AS n FROM observations WHERE role = 'val' "
                         "AND class_id = -1")["n"][0].as_py()
        assert unknown > 0


def test_jpegs_decode_and_depend_on_species(written):
    sim = simulate(SimConfig(classes=80, dim=16, seed=3))
    images = written / "images"
    assert len(list(images.iterdir())) == len(sim.image_paths)

    def load(rows):
        out = []
        for i in rows:
            with Image.open(images / sim.image_paths[i]) as im:
                assert im.format == "JPEG" and im.size == (48, 48)
                out.append(np.asarray(im.convert("RGB").resize((12, 12)), np.float32).ravel())
        x = np.stack(out)
        return x - x.mean(1, keepdims=True)

    # 1-NN on downsampled pixels of training images recognises validation species far
    # above chance: the pictures carry species signal.
    rng = np.random.default_rng(0)
    train = rng.choice(np.flatnonzero(sim.image_roles == "train"), size=400, replace=False)
    val = np.flatnonzero((sim.image_roles == "val") & (sim.image_class_ids >= 0))[:150]
    xt, xv = load(train), load(val)
    d = (xv**2).sum(1)[:, None] - 2 * xv @ xt.T + (xt**2).sum(1)[None, :]
    pred = sim.image_species[train][d.argmin(1)]
    accuracy = np.mean(pred == sim.image_species[val])
    chance = 1 / len(np.unique(sim.image_species[train]))
    assert accuracy > 5 * chance, (accuracy, chance)

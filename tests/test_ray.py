"""`embed --engine ray` and `score --engine ray` on a local Ray instance (2 CPUs) give
the single-process answers: the same vectors, the same predictions table row for row,
failures recorded, reruns resumable. Skipped where Ray Data is not installed
(`make test-ray` installs it)."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

pytest.importorskip("ray", reason="Ray Data is not installed: `pip install -e .[ray]` or "
                                  "`make test-ray` runs these tests")
pytest.importorskip("ray.data", reason="Ray Data is not installed: `pip install -e .[ray]`")

from sporeprint.cli import main  # noqa: E402
from sporeprint.demo import build_tiny_dinov2  # noqa: E402
from sporeprint.simulate import SimConfig, simulate, write_simulation  # noqa: E402
from store import FeatureStore  # noqa: E402

SPACE = "tiny"
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray():
    import ray

    from sporeprint.distributed.cluster import RayOptions, connect

    started = not ray.is_initialized()
    connect(RayOptions(local_cpus=2))
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def world(tmp_path_factory, local_ray):
    """Simulated photos, a tiny DINOv2, a store holding train/val photos (not embedded)
    and a batch cut from the held-out test file."""
    root = tmp_path_factory.mktemp("ray")
    sim = simulate(SimConfig(scale="small", classes=70, seed=0, dim=16, count_scale=0.02))
    files = write_simulation(sim, root / "sim", images=True, image_size=64)
    model = build_tiny_dinov2(root / "dinov2-tiny")
    store = root / "fresh.duckdb"
    for role in ("train", "val"):
        assert main(["ingest", "--store", str(store), "--metadata", str(files[role]),
                     "--role", role, "--images", str(files["images"])]) == 0
    test = pacsv.read_csv(files["test"])
    obs = np.unique(test["observation_id"].to_numpy())
    batch = root / "batch.csv"
    pacsv.write_csv(test.filter(pa.array(np.isin(test["observation_id"].to_numpy(),
                                                 obs[: len(obs) // 3]))), batch)
    return {"root": root, "fresh": store, "model": model, "images": files["images"],
            "batch": batch}


def _vectors(path):
    with FeatureStore(path, read_only=True) as fs:
        return fs.fetch_embeddings(SPACE)


def _embed(store, model, *extra):
    return main(["embed", "--store", str(store), "--model", str(model), "--space", SPACE,
                 "--batch-size", "32", *extra])


def test_ray_vectors_equal_single_process_and_failures_are_recorded(world, capsys):
    local, distributed = world["root"] / "local.duckdb", world["root"] / "ray.duckdb"
    shutil.copy(world["fresh"], local)
    shutil.copy(world["fresh"], distributed)
    # One missing and one truncated photo: recorded with a reason on both paths.
    with FeatureStore(distributed) as fs:
        paths = fs.sql("SELECT image_id, file_path FROM images ORDER BY image_id").to_pylist()
    missing, broken = paths[0], paths[1]
    for store in (local, distributed):
        with FeatureStore(store) as fs:
            fs.sql("UPDATE images SET file_path = ? WHERE image_id = ?",
                   [missing["file_path"] + ".gone", missing["image_id"]])
            bad = world["root"] / "broken.jpg"
            bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
            fs.sql("UPDATE images SET file_path = ? WHERE image_id = ?",
                   [str(bad), broken["image_id"]])

    assert _embed(local, world["model"], "--workers", "0") == 0
    assert _embed(distributed, world["model"], "--engine", "ray") == 0
    assert "(Ray): embedded" in capsys.readouterr().out

    ids_l, vec_l = _vectors(local)
    ids_r, vec_r = _vectors(distributed)
    assert len(ids_l) == len(paths) - 2
    np.testing.assert_array_equal(ids_l, ids_r)
    assert np.abs(vec_l - vec_r).max() <= 1e-5
    for store in (local, distributed):
        with FeatureStore(store, read_only=True) as fs:
            failed = fs.sql("SELECT image_id, reason FROM embedding_failures ORDER BY image_id"
                            ).to_pylist()
        assert [f["image_id"] for f in failed] == [missing["image_id"], broken["image_id"]]
        assert failed[0]["reason"].startswith("missing file")
    with FeatureStore(distributed, read_only=True) as fs:  # same space spec either way
        assert fs.require_space(SPACE) == FeatureStore(local, read_only=True).require_space(SPACE)
    assert not list((world["root"] / ".sporeprint-ray").glob("*"))  # shards cleaned up

    # A rerun embeds only what is still pending: nothing.
    assert _embed(distributed, world["model"], "--engine", "ray") == 0
    assert "embedded 0, failed 0" in capsys.readouterr().out


def test_rerun_after_partial_ingest_embeds_only_the_rest(world, capsys):
    store = world["root"] / "partial.duckdb"
    shutil.copy(world["fresh"], store)
    assert _embed(store, world["model"], "--workers", "0") == 0
    with FeatureStore(store) as fs:  # as if the run died after some shards were ingested
        table = fs.require_space(SPACE).table_name
        fs.sql(f"DELETE FROM {table} WHERE image_id % 3 = 0")
        left = len(fs.pending_images(SPACE))
    capsys.readouterr()
    assert _embed(store, world["model"], "--engine", "ray", "--ray-work-dir",
                  str(world["root"] / "shards")) == 0
    assert f"embedded {left}, failed 0" in capsys.readouterr().out
    assert list((world["root"] / "shards").rglob("*.parquet"))  # kept: the user named the folder
    ids, _ = _vectors(store)
    with FeatureStore(store, read_only=True) as fs:
        assert len(ids) == fs.sql("SELECT count(*) FROM images").column(0)[0].as_py()


def test_ray_predictions_equal_single_process_row_for_row(world, capsys):
    trained = world["root"] / "trained.duckdb"
    shutil.copy(world["fresh"], trained)
    assert _embed(trained, world["model"], "--workers", "0") == 0
    assert main(["train", "--store", str(trained), "--space", SPACE, "--head", "mlp",
                 "--hidden", "32", "--epochs", "2", "--lr", "3e-3", "--fold", "all"]) == 0
    with FeatureStore(trained) as fs:
        run = fs.latest_runs(("ensemble",), limit=1)[0]
    results = {}
    for engine in ("local", "ray"):
        store = world["root"] / f"score-{engine}.duckdb"
        shutil.copy(trained, store)
        out = world["root"] / engine / "pred.csv"
        assert main(["score", "--store", str(store), "--metadata", str(world["batch"]),
                     "--images", str(world["images"]), "--run", run, "--out", str(out),
                     "--workers", "0", "--engine", engine, "--ray-batch-size", "7"]) == 0
        with FeatureStore(store, read_only=True) as fs:
            results[engine] = fs.sql("SELECT * EXCLUDE (created_at) FROM predictions "
                                     "ORDER BY observation_id").to_pylist()
        results[engine + "_csv"] = out.read_text()
    local, distributed = results["local"], results["ray"]
    assert len(local) == len(distributed) > 0
    assert {r["status"] for r in local} == {"scored"}
    for a, b in zip(local, distributed, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], float):
                assert b[key] == pytest.approx(a[key], abs=1e-6), key
            elif key == "top5_probs":
                assert b[key] == pytest.approx(a[key], abs=1e-6)
            else:
                assert a[key] == b[key], (key, a["observation_id"])
    assert results["local_csv"] == results["ray_csv"]  # the submission file

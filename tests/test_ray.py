"""`embed --engine ray` and `score --engine ray` on a local Ray instance (2 CPUs) give
the single-process answers: the same vectors (within 1e-5), the same predictions
table row for row (decisions, reasons and evidence exact; probabilities within 1e-6),
failures recorded, reruns resumable. Skipped where Ray Data is not installed
(`make test-ray` installs it)."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from conftest import make_photo_store

pytest.importorskip("ray", reason="Ray Data is not installed: `pip install -e .[ray]` or "
                                  "`make test-ray` runs these tests")
pytest.importorskip("ray.data", reason="Ray Data is not installed: `pip install -e .[ray]`")

from sporeprint.cli import main  # noqa: E402
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
    """Simulated photos, a tiny DINOv2, a store whose train/val photos are embedded by the
    single-process path with a trained two-fold ensemble, and a batch cut from the
    held-out test file."""
    root = tmp_path_factory.mktemp("ray")
    store, files, model = make_photo_store(root, SPACE, "trained.duckdb")
    test = pacsv.read_csv(files["test"])
    obs = np.unique(test["observation_id"].to_numpy())
    test = test.filter(pa.array(np.isin(test["observation_id"].to_numpy(), obs[: len(obs) // 3])))
    # one observation without a readable photo, one whose only rows are rejected
    rows = test.to_pylist()
    for r in rows:
        if r["observation_id"] == obs[0]:
            r["image_path"] = "no-such-photo.jpg"
        if r["observation_id"] == obs[1]:
            r["Latitude"] = 123.0
    batch = root / "batch.csv"
    pacsv.write_csv(pa.Table.from_pylist(rows, schema=test.schema), batch)
    return {"root": root, "trained": store, "model": model, "images": files["images"],
            "batch": batch}


def _vectors(path):
    with FeatureStore(path, read_only=True) as fs:
        return fs.fetch_embeddings(SPACE)


def _embed(store, model, *extra):
    return main(["embed", "--store", str(store), "--model", str(model), "--space", SPACE,
                 "--batch-size", "32", *extra])


def test_ray_embeds_the_pending_images_like_the_single_process_path(world, capsys):
    ids_local, vec_local = _vectors(world["trained"])
    store = world["root"] / "embed-ray.duckdb"
    shutil.copy(world["trained"], store)
    with FeatureStore(store) as fs:  # as if a run had stopped after some chunks
        table = fs.require_space(SPACE).table_name
        fs.sql(f"DELETE FROM {table} WHERE image_id % 5 = 0")
        pending = fs.pending_images(SPACE).column("image_id").to_numpy()
        # one missing and one corrupt photo: recorded with a reason, not fatal
        missing, broken = int(pending[0]), int(pending[1])
        bad = world["root"] / "broken.jpg"
        bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        fs.sql("UPDATE images SET file_path = file_path || '.gone' WHERE image_id = ?", [missing])
        fs.sql("UPDATE images SET file_path = ? WHERE image_id = ?", [str(bad), broken])
    capsys.readouterr()
    shards = world["root"] / "shards"
    assert _embed(store, world["model"], "--engine", "ray", "--ray-work-dir", str(shards)) == 0
    assert f"(Ray): embedded {len(pending) - 2}, failed 2" in capsys.readouterr().out

    ids, vectors = _vectors(store)
    np.testing.assert_array_equal(ids, np.setdiff1d(ids_local, [missing, broken]))
    expected = vec_local[np.searchsorted(ids_local, ids)]
    assert np.abs(vectors - expected).max() <= 1e-5
    with FeatureStore(store, read_only=True) as fs:
        failed = fs.sql("SELECT image_id, reason FROM embedding_failures ORDER BY image_id"
                        ).to_pylist()
    assert [f["image_id"] for f in failed] == sorted([missing, broken])
    reasons = {f["image_id"]: f["reason"] for f in failed}
    assert reasons[missing].startswith("missing file")
    assert reasons[broken].startswith(("unreadable file", "not an image", "truncated"))
    assert list(shards.rglob("*.parquet"))  # kept: the user named the folder

    # A rerun embeds only what is still pending: nothing.
    assert _embed(store, world["model"], "--engine", "ray") == 0
    assert "embedded 0, failed 0" in capsys.readouterr().out


def test_ray_predictions_equal_single_process_row_for_row(world, capsys):
    # The batch's photos embedded once, so both engines score the same vectors (the
    # vectors' own agreement is the test above).
    trained = world["root"] / "with-batch.duckdb"
    shutil.copy(world["trained"], trained)
    assert main(["ingest", "--store", str(trained), "--metadata", str(world["batch"]),
                 "--role", "new", "--images", str(world["images"])]) == 0
    assert _embed(trained, world["model"], "--workers", "0") == 0
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
    assert {r["status"] for r in local} == {"scored", "no_usable_image", "rejected"}
    for a, b in zip(local, distributed, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], float) or (key in ("top5_probs", "ranked_probs")
                                             and a[key] is not None):
                # float32 head and kNN arithmetic over other batch shapes: float32 noise,
                # a few units of 1e-6 after the unknown score's fusion (1.4e-6 measured)
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-5), key
            else:  # the decision, its reason, the top-5 classes and the evidence: exact
                assert a[key] == b[key], (key, a["observation_id"])
    assert results["local_csv"] == results["ray_csv"]  # the submission file

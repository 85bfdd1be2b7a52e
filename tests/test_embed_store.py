"""embed_store and `sporeprint embed` against a real DuckDB store: counts, failures,
worker processes, resume after a SIGKILL, and space mismatches."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_embed import SMALL_PROCESSOR, make_model_dir, photo, write_image_zoo

from embedder import ImageEmbedder
from sporeprint.cli import main
from sporeprint.embedding import embed_store, embedder_for_space
from store import FeatureStore, StoreError

ROOT = Path(__file__).resolve().parents[1]


def make_store(folder: Path, files: list[Path]) -> Path:
    """A store whose images table points at ``files`` (all in one directory)."""
    meta = folder / "meta.csv"
    with open(meta, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["observationID", "image_path", "class_id"])
        for i, f in enumerate(files):
            writer.writerow([1000 + i, f.name, i % 3])
    path = folder / "fungi.duckdb"
    with FeatureStore(path) as fs:
        fs.ingest_metadata(meta, role="train", images_dir=files[0].parent)
    return path


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("dino_small"), processor=SMALL_PROCESSOR)


def test_embed_store_counts_vectors_and_failures(tmp_path, small_model):
    good, bad = write_image_zoo(tmp_path / "img")
    files = list(good.values()) + list(bad.values())
    store = make_store(tmp_path, files)
    emb = ImageEmbedder(small_model, device="cpu")
    with FeatureStore(store) as fs:
        report = embed_store(fs, emb, "tiny", batch_size=4, workers=2, chunk_size=5,
                             progress=False)
        assert (report.embedded, report.failed, report.skipped) == (len(good), len(bad), 0)
        ids, vecs = fs.fetch_embeddings("tiny")
        paths = {r["image_id"]: r["file_path"]
                 for r in fs.sql("SELECT image_id, file_path FROM images").to_pylist()}
        want = emb.embed_images([paths[i] for i in ids])
        assert np.abs(vecs - want).max() < 1e-5
        failures = fs.sql("SELECT i.image_path, f.reason FROM embedding_failures f "
                          "JOIN images i USING (image_id) WHERE space = 'tiny'").to_pylist()
        reasons = {Path(r["image_path"]).stem: r["reason"] for r in failures}
        assert set(reasons) == set(bad)
        assert reasons["missing"] == "missing file" and reasons["huge"].startswith("image too large")
        again = embed_store(fs, emb, "tiny", workers=0, progress=False)
        assert (again.embedded, again.failed) == (0, 0)
        assert fs.sql("SELECT count(*) AS n FROM emb_tiny").column("n")[0].as_py() == len(good)


def test_space_mismatch_is_an_error_naming_both(tmp_path, small_model, capsys):
    store = make_store(tmp_path, [_write(tmp_path / "img", i) for i in range(3)])
    args = ["embed", "--store", str(store), "--model", str(small_model), "--space", "s",
            "--workers", "0", "--device", "cpu"]
    assert main(args) == 0
    assert "embedded 3, failed 0" in capsys.readouterr().out
    assert main(args + ["--pooling", "cls+mean"]) == 2
    err = capsys.readouterr().err
    assert "pooling: stored 'cls', given 'cls+mean'" in err
    with FeatureStore(store, read_only=True) as fs:
        assert fs.get_space("s").pooling == "cls"
    emb = ImageEmbedder(small_model, pooling="cls+mean", device="cpu")
    with FeatureStore(store) as fs, pytest.raises(StoreError, match="already exists"):
        embed_store(fs, emb, "s", progress=False)


def _write(folder: Path, i: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{1000 + i}-1.JPG"
    photo(i, (64, 48)).save(path, quality=90)
    return path


def test_resume_after_sigkill_stores_each_image_once(tmp_path, small_model):
    n = 48
    files = [_write(tmp_path / "img", i) for i in range(n)]
    (tmp_path / "img" / files[7].name).write_bytes(b"")  # one failure among them
    store = make_store(tmp_path, files)
    cmd = [sys.executable, "-m", "sporeprint", "embed", "--store", str(store), "--model",
           str(small_model), "--space", "tiny", "--batch-size", "2", "--chunk-size", "4",
           "--workers", "0", "--device", "cpu"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    commits = 0
    for line in child.stderr:  # wait until two chunks are committed, then kill -9
        commits += "committed chunk" in line
        if commits == 2:
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    with FeatureStore(store, read_only=True) as fs:
        stored = fs.sql("SELECT count(*) AS n FROM emb_tiny").column("n")[0].as_py()
    assert 0 < stored < n - 1  # killed mid-run

    with FeatureStore(store) as fs:
        report = embed_store(fs, ImageEmbedder(small_model, device="cpu"), "tiny",
                             batch_size=8, workers=0, chunk_size=32, progress=False)
        counts = fs.sql("SELECT count(*) AS n, count(DISTINCT image_id) AS d "
                        "FROM emb_tiny").to_pylist()[0]
        failed = fs.sql("SELECT count(*) AS n FROM embedding_failures").column("n")[0].as_py()
    assert counts == {"n": n - 1, "d": n - 1}
    assert failed == 1
    assert report.embedded == n - 1 - stored


def test_embedder_for_space_adds_vectors_of_the_same_kind(tmp_path, small_model):
    store = make_store(tmp_path, [_write(tmp_path / "img", i) for i in range(3)])
    emb = ImageEmbedder(small_model, pooling="cls+mean", device="cpu")
    with FeatureStore(store) as fs:
        embed_store(fs, emb, "s", workers=0, progress=False)
        again = embedder_for_space(fs.get_space("s"), device="cpu")
        assert (again.pooling, again.dim, again.model_id) == ("cls+mean", 64, emb.model_id)
        assert embed_store(fs, again, "s", workers=0, progress=False).embedded == 0

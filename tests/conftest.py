"""Shared fixtures: a small simulated store with every role's metadata and vectors, and
two session-wide trained stores built once for every suite that needs one (a photo store
embedded with a tiny DINOv2, and a demo run). Those two are shared: a test that writes to
one must work on a copy (:func:`copy_folder`)."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import pytest

from sporeprint.simulator.simulate import SimConfig, ingest_simulation, simulate, write_simulation
from store import FeatureStore


def make_simulated_store(root: Path, dim: int, space: str = "sim") -> Path:
    """A DuckDB store holding a 70-class simulation (train, val and test roles) and its
    ``dim``-d vectors in ``space``."""
    sim = simulate(SimConfig(scale="small", classes=70, seed=0, dim=dim, count_scale=0.02))
    files = write_simulation(sim, root / "sim")
    path = root / "fungi.duckdb"
    with FeatureStore(path) as fs:
        for role in ("train", "val", "test"):
            fs.ingest_metadata(files[role], role=role)
        fs.ingest_embeddings(files["embeddings"], space)
    return path


def split_store(root: Path, seed: int, dim: int, space: str = "sim",
                count_scale: float = 0.05) -> FeatureStore:
    """An open, writable store of a 70-class simulation (``seed``, ``dim``-d, count scale
    0.05 unless given): train and val roles with their vectors, metadata encoded, splits
    made with ``seed``. The caller closes it."""
    sim = simulate(SimConfig(scale="small", classes=70, seed=seed, dim=dim,
                             count_scale=count_scale))
    files = write_simulation(sim, root / "sim")
    fs = FeatureStore(root / "s.duckdb")
    ingest_simulation(fs, files, space, seed)
    return fs


def ingest_simulation_cli(root: Path, seed: int = 0, space: str = "sim") -> tuple[Path, dict]:
    """``(store, files)``: a 70-class, 16-d simulation written under ``root/sim`` and its
    train and val roles ingested through ``sporeprint ingest``, as a user would."""
    from sporeprint.cli import main

    sim = simulate(SimConfig(scale="small", classes=70, seed=seed, dim=16, count_scale=0.02))
    files = write_simulation(sim, root / "sim")
    store = root / "fungi.duckdb"
    for role in ("train", "val"):
        assert main(["ingest", "--store", str(store), "--role", role,
                     "--metadata", str(files[role])]) == 0
        assert main(["ingest", "--store", str(store), "--embeddings",
                     str(files[f"embeddings_{role}"]), "--space", space]) == 0
    return store, files


def trained_store_cli(root: Path, seed: int = 0, space: str = "sim", score: bool = True
                      ) -> tuple[Path, dict]:
    """``(store, files)``: :func:`ingest_simulation_cli`, then a small two-fold MLP ensemble
    trained (and calibrated) through ``sporeprint train``, and with ``score`` the test batch
    scored into ``root/p.csv`` (batch ``test_2024``)."""
    from sporeprint.cli import main

    store, files = ingest_simulation_cli(root, seed=seed, space=space)
    assert main(["train", "--store", str(store), "--space", space, "--hidden", "32",
                 "--epochs", "2", "--lr", "3e-3"]) == 0
    if score:
        assert main(["score", "--store", str(store), "--metadata", str(files["test"]),
                     "--embeddings", str(files["embeddings_test"]),
                     "--out", str(root / "p.csv")]) == 0
    return store, files


def make_photo_store(root: Path, space: str, store_name: str = "fungi.duckdb"
                     ) -> tuple[Path, dict, Path]:
    """``(store, files, model_dir)``: a 70-class simulation with 64-px photos, its train
    and val photos embedded by a tiny DINOv2 (built here, loaded by path like a hub
    checkpoint) into ``space``, and a two-fold MLP ensemble trained on them — all
    through the CLI."""
    from sporeprint.cli import main
    from sporeprint.demo import build_tiny_dinov2

    sim = simulate(SimConfig(scale="small", classes=70, seed=0, dim=16, count_scale=0.02))
    files = write_simulation(sim, root / "sim", images=True, image_size=64)
    model = build_tiny_dinov2(root / "dinov2-tiny")
    store = root / store_name
    for role in ("train", "val"):
        assert main(["ingest", "--store", str(store), "--metadata", str(files[role]),
                     "--role", role, "--images", str(files["images"])]) == 0
    assert main(["embed", "--store", str(store), "--model", str(model), "--space", space,
                 "--workers", "0", "--batch-size", "32"]) == 0
    assert main(["train", "--store", str(store), "--space", space, "--head", "mlp",
                 "--hidden", "32", "--epochs", "2", "--lr", "3e-3", "--fold", "all"]) == 0
    return store, files, model


PHOTO_SPACE = "tiny"


def copy_folder(src: Path, dst: Path) -> Path:
    """A private copy of a shared store's folder (store file, runs, indexes, photos): run
    paths are stored relative to the store, so the copy works on its own."""
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="session")
def photo_world(tmp_path_factory) -> dict:
    """:func:`make_photo_store` in space ``tiny``, built once per session: ``root`` (the
    folder), ``store``, ``files`` and ``model``. Read it; copy ``root`` to write."""
    root = tmp_path_factory.mktemp("photo-world")
    store, files, model = make_photo_store(root, PHOTO_SPACE)
    return {"root": root, "store": store, "files": files, "model": model}


def photo_world_copy(world: dict, dst: Path) -> tuple[Path, dict, Path]:
    """``(store, files, model)`` like :func:`make_photo_store`, in a private copy under ``dst``."""
    root = copy_folder(world["root"], dst)
    files = {k: root / Path(v).relative_to(world["root"]) for k, v in world["files"].items()}
    return (root / world["store"].relative_to(world["root"]), files,
            root / world["model"].relative_to(world["root"]))


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory) -> dict:
    """``sporeprint demo`` (one epoch, 8 photos) run once per session: ``dir`` (the demo
    folder) and ``stdout`` (what it printed). Read it; copy ``dir`` to write."""
    from sporeprint.cli import main

    root = tmp_path_factory.mktemp("demo-world")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["demo", "--dir", str(root / "demo"), "--epochs", "1", "--photos", "8"]) == 0
    return {"dir": root / "demo", "stdout": out.getvalue()}

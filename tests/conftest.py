"""Shared fixtures: a small simulated store with every role's metadata and vectors."""

from __future__ import annotations

from pathlib import Path

from sporeprint.simulator.simulate import SimConfig, simulate, write_simulation
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

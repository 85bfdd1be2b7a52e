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

"""The look-alike search path stays light: no torch, transformers, scikit-learn,
matplotlib or fastapi is imported by `sporeprint search` (each costs 0.3-2.5 s of
start-up), nor when the search ends in a user error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from store import FeatureStore
from tests.conftest import make_simulated_store

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "transformers", "sklearn", "scipy", "matplotlib", "fastapi", "uvicorn"}


def _imported(args: list[str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "sporeprint", *args],
                          capture_output=True, text=True, env=env, timeout=120)
    modules = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:")}
    return proc, {m.split(".")[0] for m in modules}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, int]:
    path = make_simulated_store(tmp_path_factory.mktemp("startup"), dim=16)
    with FeatureStore(path, read_only=True) as fs:
        obs = int(fs.image_observations(fs.selection_image_ids("sim", "all")[:1])[0])
    return path, obs


def test_search_imports_no_heavy_module(store):
    path, obs = store
    proc, top = _imported(["search", "--store", str(path), "--observation", str(obs), "-k", "3"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "faiss" in top and "duckdb" in top  # the search did run
    assert top & HEAVY == set(), f"imported on the search path: {sorted(top & HEAVY)}"


def test_search_user_error_imports_no_heavy_module(store):
    path, _ = store
    proc, top = _imported(["search", "--store", str(path), "--observation", "1", "-k", "3"])
    assert proc.returncode == 2
    assert "error:" in proc.stderr
    assert top & HEAVY == set(), f"imported on the error path: {sorted(top & HEAVY)}"


def test_help_imports_no_heavy_module():
    proc, top = _imported(["search", "--help"])
    assert proc.returncode == 0
    assert top & (HEAVY | {"faiss", "duckdb", "pyarrow"}) == set(), sorted(top)

"""The libraries' top-level names (store, heads, retrieval, embedder) are generic: a
package of that name in the folder Python starts from would be imported instead of
sporeprint's own. `import sporeprint` then fails at once, in one line naming that
folder, instead of later inside some command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_in(folder: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["store", "heads", "retrieval", "embedder"])
def test_a_shadowing_package_in_the_start_folder_is_named(tmp_path, name):
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("")
    got = python_in(tmp_path, "import sporeprint")
    assert got.returncode != 0
    last = got.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:") and str(tmp_path / name) in last
    assert "run Python from another folder" in last


def test_a_plain_folder_named_store_beside_the_data_is_fine(tmp_path):
    """An empty ``store/`` folder (a namespace package) loses to the installed package:
    nothing to refuse, and the store opens."""
    (tmp_path / "store").mkdir()
    got = python_in(tmp_path, "import sporeprint, store; print(store.FeatureStore.__name__)")
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "FeatureStore"

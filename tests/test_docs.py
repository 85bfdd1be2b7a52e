"""The README's tour, pasted as written, and the documented Python API (README block and
docs/api.md doctests) on the store the tour leaves behind."""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # the README tour trains and scores as a user would: minutes


def _block(text: str, heading: str, lang: str) -> str:
    section = text[text.index(heading):]
    match = re.search(rf"```{lang}\n(.*?)```", section, re.S)
    assert match, f"no ```{lang} block under {heading!r}"
    return match.group(1)


@pytest.fixture(scope="module")
def toured(tmp_path_factory):
    """Runs the README tour in a fresh folder whose .venv is this interpreter's."""
    folder = tmp_path_factory.mktemp("tour")
    (folder / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    script = _block((ROOT / "README.md").read_text(), "## A tour", "bash")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder, done.stdout


def test_readme_tour_runs_as_written(toured):
    folder, out = toured
    assert (folder / "fungi.duckdb").is_file() and (folder / "pred.csv").is_file()
    assert "Track 3" in out  # evaluate printed the official scores
    assert re.search(r"returned \d+ of 5 requested", out)  # search --explain
    # photos in, answers out: the demo's default run scores the held-out photos
    assert re.search(r"batch 'test_2024' scored with dinov2_tiny-mlp-fold1", out)
    assert re.search(r"scored from images [1-9]\d*", out)
    assert (folder / "photo-pred.full.csv").is_file()


def test_readme_python_block_runs(toured, monkeypatch):
    folder, _ = toured
    monkeypatch.chdir(folder)
    code = _block((ROOT / "README.md").read_text(), "## From Python", "python")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the documented example
    assert scope["out"].num_rows == 3


def test_api_doc_examples(toured, monkeypatch):
    folder, _ = toured
    monkeypatch.chdir(folder)
    result = doctest.testfile(str(ROOT / "docs" / "api.md"), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10 and result.failed == 0

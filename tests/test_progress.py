"""Progress bars are drawn on a terminal only: through a pipe (a log file, CI) a command
writes no carriage-return redraws, just one summary line per bar."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ingest_simulation_cli

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "sporeprint", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_simulate_images_log_one_line_through_a_pipe(tmp_path):
    proc = _run("simulate", "--out", str(tmp_path / "sim"), "--scale", "small", "--classes",
                "70", "--images", "--image-size", "16", "--dim", "8")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\r" not in proc.stderr
    n = len(list((tmp_path / "sim" / "images").iterdir()))
    assert [line for line in proc.stderr.splitlines() if "images in" in line] == [
        next(line for line in proc.stderr.splitlines() if f"wrote {n} images in" in line)]


def test_training_logs_no_bar_through_a_pipe(tmp_path):
    store, _ = ingest_simulation_cli(tmp_path)
    proc = _run("train", "--store", str(store), "--space", "sim", "--head", "linear",
                "--epochs", "2", "--fold", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\r" not in proc.stderr
    assert "batch/s" not in proc.stderr  # tqdm's rate, drawn only by a bar
    assert "train linear: 2 epochs in" in proc.stderr

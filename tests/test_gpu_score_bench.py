"""The GPU scoring check and the script that runs every GPU check work end to end on
the CPU at tiny sizes (before any GPU time): without the store or FAISS, with the
torch kNN agreeing with numpy's exact answer."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # whole benchmark scripts; make test-all runs them


def test_gpu_score_script_runs_tiny_on_cpu():
    out = subprocess.run([sys.executable, "benchmarks/gpu_score.py", "--tiny"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "device: CPU" in out.stdout
    for step in ("heads", "means", "kNN", "decide"):
        assert re.search(rf"^  {step} +\d+\.\d+ s", out.stdout, re.M), step
    assert re.search(r"top-10 vs numpy exact on 200 queries: 1\.0000 agreement", out.stdout)


def test_gpu_score_script_needs_neither_duckdb_nor_faiss():
    """What a GPU machine without the store's or the index's packages can run."""
    code = ("import sys, runpy; sys.modules['duckdb'] = None; sys.modules['faiss'] = None; "
            "sys.argv = ['gpu_score.py', '--tiny']; "
            "runpy.run_path('benchmarks/gpu_score.py', run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "agreement" in out.stdout


def test_gpu_check_runs_its_steps_and_writes_their_outputs(tmp_path):
    out = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--tiny", "--only", "score",
                          "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "== environment: ok" in out.stdout and "== score: ok" in out.stdout
    assert "2 of 2 steps finished" in out.stdout
    assert "torch" in (tmp_path / "environment.txt").read_text()
    assert "agreement" in (tmp_path / "score.txt").read_text()

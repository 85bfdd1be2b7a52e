"""The GPU throughput script runs end to end on CPU with a tiny model (before GPU time)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a whole benchmark script per test; make test-all runs them


@pytest.mark.parametrize("mode", [[], ["--fast-preprocess"]])
def test_gpu_embed_script_runs_tiny_on_cpu(mode):
    out = subprocess.run(
        [sys.executable, "benchmarks/gpu_embed.py", "--tiny", "--images", "24", "--repeats", "1",
         "--workers", "1", *mode],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "device:" in out.stdout and "ratio (b)/(a):" in out.stdout
    assert "dim 32" in out.stdout
    assert ("device-side" in out.stdout) == bool(mode)

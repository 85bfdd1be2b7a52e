"""benchmarks/bench_sets.py runs end to end on one small seed and prints its tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_sets_small_one_seed_prints_coverage_and_poison_tables():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_sets.py"), "--small",
                          "--seeds", "0", "--levels", "0.8", "0.9"], capture_output=True,
                         text=True, timeout=900, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "| 80% | s0 " in text and "| 90% | s0 " in text
    # both evaluations: the exchangeable test part and the shifted test draw
    assert "=== evaluated on the splits' held-out test part" in text
    assert "=== evaluated on the independent test draw" in text
    assert text.count("| 80% | s0 ") == 2
    for rule in ("calibrated argmax", "Track 3 rule", "set rule (Track 3 + poison check of the "
                 "sets), 90%"):
        assert f"| {rule} |" in text

"""Every GPU measurement in one run, for a session that is lent a GPU machine for a
few minutes: what the machine has, then scoring, embedding and head training, each
with its own time limit so that one slow step cannot cost the others.

    python benchmarks/gpu_check.py            # on the GPU machine: about 6 minutes, 8 at most
    python benchmarks/gpu_check.py --tiny     # every step at tiny sizes (CPU is fine)

Writes each step's output to ``--out`` (default ``$OUT`` when set, else
``gpu_check/``) and a summary line per step to stdout. Steps:
  environment   GPU name, torch/CUDA versions, whether FAISS imports and sees a GPU
  score         benchmarks/gpu_score.py   (target <= 10 s for 40,216 observations)
  embed         benchmarks/gpu_embed.py   (target >= 2,300 img/s end to end)
  embed-device  benchmarks/gpu_embed.py --fast-preprocess (opt-in resize on the GPU)
  train         benchmarks/gpu_train.py   (training loop vs a bare PyTorch loop)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STEPS = [  # name, script arguments, seconds allowed
    ("score", ["benchmarks/gpu_score.py"], 120),
    ("embed", ["benchmarks/gpu_embed.py"], 200),
    ("embed-device", ["benchmarks/gpu_embed.py", "--fast-preprocess", "--repeats", "2"], 100),
    ("train", ["benchmarks/gpu_train.py"], 150),
]

ENVIRONMENT = """
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0))
try:
    import faiss
    print("faiss", faiss.__version__, "GPUs seen by FAISS:", faiss.get_num_gpus())
except Exception as exc:  # noqa: BLE001 - a missing or broken FAISS is what we report
    print("faiss not usable:", type(exc).__name__, str(exc).splitlines()[0][:200])
try:
    import duckdb
    print("duckdb", duckdb.__version__)
except ImportError:
    print("duckdb not installed")
"""


def run(name: str, argv: list[str], limit: float, out: Path) -> bool:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                              timeout=limit, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        stdout, stderr, ok = proc.stdout, proc.stderr, proc.returncode == 0
        status = "ok" if ok else f"exit code {proc.returncode}"
    except subprocess.TimeoutExpired as exc:
        stdout, stderr = (b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
                          for b in (exc.stdout, exc.stderr))
        ok, status = False, f"stopped after {limit:.0f} s"
    (out / f"{name}.txt").write_text(stdout + "\n--- stderr ---\n" + stderr)
    # the results on success; on failure, where it stopped
    shown = stdout if ok else stdout + stderr
    tail = [line for line in shown.splitlines() if line.strip()][-6:]
    print(f"== {name}: {status} in {time.perf_counter() - t0:.0f} s", flush=True)
    for line in tail:
        print(f"   {line}", flush=True)
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes: check that every step runs")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_check")))
    ap.add_argument("--only", default="", help="comma-separated step names (default: all)")
    ap.add_argument("--budget", type=float, default=480,
                    help="seconds for all steps together; a step that would outrun it gets "
                         "what is left, or is skipped under 30 s (default 480)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    wanted = {s for s in args.only.split(",") if s}
    start = time.perf_counter()
    results = [run("environment", ["-c", ENVIRONMENT], 60, args.out)]
    for name, argv, limit in STEPS:
        if wanted and name not in wanted:
            continue
        left = args.budget - (time.perf_counter() - start)
        if left < 30:
            print(f"== {name}: skipped, {max(left, 0):.0f} s of the budget left", flush=True)
            results.append(False)
            continue
        if args.tiny:
            argv = [*argv, "--tiny"]
        results.append(run(name, argv, min(limit, left), args.out))
    print(f"{sum(results)} of {len(results)} steps finished; outputs in {args.out}/")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

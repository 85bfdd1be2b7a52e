"""Start-up of one look-alike query from the command line.

Times ``sporeprint search --store S --observation ID -k 5`` as a fresh process
(median of ``--repeats`` runs) against a baseline timed in the same run: a fresh
process that only imports what the search needs at its core (``duckdb``,
``faiss``, ``numpy``, ``pyarrow``). The ratio is the price of everything else:
the CLI, the store and index set-up and the search itself. Prints the ten
slowest imports of the search process (``python -X importtime``) and flags any
of torch, transformers, sklearn, matplotlib or fastapi that it loaded.

    python benchmarks/bench_cli_startup.py                       # a simulated store (medium)
    python benchmarks/bench_cli_startup.py --small               # a small simulated store
    python benchmarks/bench_cli_startup.py --store demo-run/fungi.duckdb
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEAVY = ("torch", "transformers", "sklearn", "matplotlib", "fastapi")
BASELINE = "import duckdb, faiss, numpy, pyarrow"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=_env())
    return time.perf_counter() - t0


def build_store(root: Path, small: bool) -> Path:
    """A simulated store with train, val and test metadata and vectors in space ``sim``."""
    from sporeprint.simulator.simulate import SimConfig, simulate, write_simulation
    from store import FeatureStore

    cfg = (SimConfig(scale="small", classes=70, seed=0, dim=64, count_scale=0.05) if small
           else SimConfig(scale="small", seed=0, dim=384))
    files = write_simulation(simulate(cfg), root / "sim")
    path = root / "fungi.duckdb"
    with FeatureStore(path) as fs:
        for role in ("train", "val", "test"):
            fs.ingest_metadata(files[role], role=role)
        fs.ingest_embeddings(files["embeddings"], "sim")
    return path


def first_observation(store: Path, space: str | None) -> tuple[int, str]:
    """An observation with a vector in ``space`` (default: ``sim`` if stored, else the first)."""
    from store import FeatureStore

    with FeatureStore(store, read_only=True) as fs:
        names = fs.space_names()
        space = space or ("sim" if "sim" in names else names[0])
        image = fs.selection_image_ids(space, "all")[:1]
        obs = fs.image_observations(image)[0]
    return int(obs), space


def import_breakdown(cmd: list[str], top: int = 10) -> tuple[list[tuple[float, str]], list[str]]:
    """The ``top`` slowest top-level imports (cumulative seconds) and the heavy modules seen."""
    err = subprocess.run([sys.executable, "-X", "importtime", *cmd], check=True,
                         capture_output=True, text=True, env=_env()).stderr
    rows, heavy = [], set()
    for line in err.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if not cumulative.strip().isdigit():
            continue  # the header line
        module = name.strip()
        if module.split(".")[0] in HEAVY:
            heavy.add(module.split(".")[0])
        if not name.startswith("  "):  # imported by sporeprint itself, not by a dependency
            rows.append((int(cumulative) / 1e6, module))
    return sorted(rows, reverse=True)[:top], sorted(heavy)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="a small store and 3 repeats")
    ap.add_argument("--store", type=Path, help="search this store instead of building one")
    ap.add_argument("--space", help="embedding space to search (default: sim, else the first)")
    ap.add_argument("--repeats", type=int, default=None, help="runs per timing (default 5, 3 small)")
    args = ap.parse_args()
    repeats = args.repeats or (3 if args.small else 5)

    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or build_store(Path(tmp), args.small)
        obs, space = first_observation(store, args.space)
        search = ["-m", "sporeprint", "search", "--store", str(store), "--space", space,
                  "--observation", str(obs), "-k", "5"]
        base, cli = [], []
        for _ in range(repeats):  # interleaved, so a busy moment hits both
            base.append(_timed([sys.executable, "-c", BASELINE]))
            cli.append(_timed([sys.executable, *search]))
        rows, heavy = import_breakdown(search)

    b, c = statistics.median(base), statistics.median(cli)
    print(f"store {store} (space {space}), {repeats} runs each, load average "
          f"{os.getloadavg()[0]:.2f}")
    print(f"baseline `python -c \"{BASELINE}\"`: {b:.2f} s")
    print(f"sporeprint search -k 5:                       {c:.2f} s  ({c / b:.2f}x the baseline)")
    print("slowest imports (cumulative):")
    for seconds, module in rows:
        print(f"  {seconds:6.3f} s  {module}")
    print("heavy modules imported: " + (", ".join(heavy) if heavy else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

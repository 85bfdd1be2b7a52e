"""Realism of the simulator: its figures side by side with the same figures on real data.

The real column is the DF20-Mini test metadata (Danish Fungi 2020, Picek et al., WACV
2022; records of the Danish Mycological Society's fungal atlas): 3,640 images of 182
species. The simulated column is the mean over simulator seeds, with the smallest and
largest value; every figure comes from ``sporeprint.simulator.realism`` (the training
table, the DF20 analogue, for habits and the metadata-only regression; val + test for
the later period's poison and unknown shares). The last column says whether the
simulated mean lies in the target band; rows without a band are context.

    python benchmarks/bench_realism.py                          # small, seeds 0 1 2
    python benchmarks/bench_realism.py --scale medium --seeds 0
    python benchmarks/bench_realism.py --small                  # one seed (make bench)
    python benchmarks/bench_realism.py --real path/to/df20_mini_test_metadata.csv

The regression runs single-threaded (``OMP_NUM_THREADS=1`` unless set): its matrices
are small and a shared machine's thread pool only slows it down.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from sporeprint.simulator.realism import (  # noqa: E402
    NO_POISON_NOTE,
    read_metadata_csv,
    realism_figures,
    simulation_figures,
)
from sporeprint.simulator.simulate import SimConfig, simulate  # noqa: E402

# The published DF20-Mini test metadata; --real names it elsewhere (absent: simulated only).
DEFAULT_REAL = Path(__file__).resolve().parents[2] / "shared/data/df20_mini_test_metadata.csv"
SOURCE = ("Danish Fungi 2020 (Picek et al., WACV 2022), DF20-Mini test metadata: records of "
          "the Danish Mycological Society's fungal atlas")
# Published DF20/DF21 figures the real file cannot give: shown next to "n/a".
PUBLISHED = {"training_poisonous_image_share": "~0.044 of DF20 images",
             "val_test_poisonous_observation_share": "~0.023 of DF21 observations"}
# (key, label, target band (lo, hi) or None, real-file key or None when the same key)
ROWS = [
    ("lr_top1_all", "metadata-only LR top-1, all fields", (0.05, 0.25), None),
    ("lr_top5_all", "metadata-only LR top-5, all fields", None, None),
    ("lr_top1_habitat", "LR top-1, habitat alone", (0.0, 0.12), None),
    ("lr_top1_substrate", "LR top-1, substrate alone", None, None),
    ("lr_top1_month", "LR top-1, month alone", None, None),
    ("lr_top1_place", "LR top-1, place alone", None, None),
    ("prior", "prior (most common species)", None, None),
    ("lr_species", "species in the LR (>= 5 observations)", None, None),
    ("aug_oct_share", "observations in Aug-Oct", (0.55, 1.0), None),
    ("top_substrate_share", "most common substrate, share", None, None),
    ("top_habitat_share", "most common habitat, share", None, None),
    ("training_poisonous_image_share", "poisonous images, training", (0.02, 0.08),
     "poisonous_image_share"),
    ("val_test_poisonous_observation_share", "poisonous observations, val + test",
     (0.01, 0.04), "poisonous_observation_share"),
    ("val_test_unknown_share", "unknown-species observations, val + test", (0.20, 0.45),
     "unknown_share"),
    ("images_per_observation", "images per observation", None, None),
    ("species", "species", None, None),
    ("class_ratio", "largest / smallest species (images)", None, None),
]


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, (int, np.integer)) or float(v) >= 10:
        return f"{float(v):.0f}"
    return f"{float(v):.3f}"


def table(real: dict | None, sims: list[dict]) -> list[list[str]]:
    """Rows: figure, real, simulated mean [min, max], target, in band."""
    out = []
    for key, label, band, real_key in ROWS:
        vals = [s[key] for s in sims if s.get(key) is not None]
        if vals:
            mean = float(np.mean(vals))
            sim = _fmt(mean) if len(vals) == 1 else \
                f"{_fmt(mean)} [{_fmt(min(vals))}, {_fmt(max(vals))}]"
        else:
            mean, sim = None, "n/a"
        if real is None:
            r = "(no real file)"
        else:
            rv = real.get(real_key or key)
            if rv is None and key in PUBLISHED:
                r = f"{NO_POISON_NOTE}; published {PUBLISHED[key]}"
            elif key == "val_test_unknown_share":
                r = f"{_fmt(rv)} (DF20-Mini test: known species only)"
            else:
                r = _fmt(rv)
        if band is None:
            target, verdict = "", ""
        else:
            target = f"<= {band[1]:g}" if band[0] == 0 else \
                f">= {band[0]:g}" if band[1] == 1.0 else f"{band[0]:g}-{band[1]:g}"
            verdict = "n/a" if mean is None else \
                ("yes" if band[0] <= mean <= band[1] else "NO")
        out.append([label, r, sim, target, verdict])
    return out


def print_markdown(rows: list[list[str]], sim_header: str) -> None:
    head = ["figure", "real DF20-Mini test", sim_header, "target", "in band"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", choices=["small", "medium", "full"], default="small")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--real", type=Path, default=DEFAULT_REAL,
                    help=f"real DF20-format metadata CSV (default {DEFAULT_REAL})")
    ap.add_argument("--split-seed", type=int, default=0, help="seed of the held-out quarter")
    ap.add_argument("--small", action="store_true",
                    help="one seed at small scale; without the real file, simulated figures only")
    args = ap.parse_args(argv)
    if args.small:
        args.scale, args.seeds = "small", args.seeds[:1]

    t0 = time.perf_counter()
    real = None
    if args.real.is_file():
        real = realism_figures(read_metadata_csv(args.real), seed=args.split_seed)
        print(f"real: {args.real} ({SOURCE}); {time.perf_counter() - t0:.1f} s")
    elif args.small and args.real == DEFAULT_REAL:
        print(f"real file {args.real} not found: simulated figures only")
    else:
        sys.exit(f"real metadata file {args.real} does not exist; pass --real with the path "
                 "of the DF20-Mini test metadata CSV")
    sims = []
    for seed in args.seeds:
        t1 = time.perf_counter()
        # The vectors do not touch the metadata (separate random streams): draw them 8-d.
        sim = simulate(SimConfig(scale=args.scale, seed=seed, dim=8))
        sims.append(simulation_figures(sim, seed=args.split_seed))
        print(f"sim {args.scale} seed {seed}: {sim.train.num_rows} training images, "
              f"{time.perf_counter() - t1:.1f} s")
    seeds = " ".join(map(str, args.seeds))
    header = f"simulator {args.scale}, seed {seeds}" if len(args.seeds) == 1 else \
        f"simulator {args.scale}, seeds {seeds}: mean [min, max]"
    print()
    print_markdown(table(real, sims), header)
    if real is not None:
        months = " ".join(f"{m}:{c}" for m, c in enumerate(real["month_counts"], 1))
        print(f"\nreal observations per month  {months}")
    for seed, s in zip(args.seeds, sims, strict=True):
        months = " ".join(f"{m}:{c}" for m, c in enumerate(s["month_counts"], 1))
        print(f"sim seed {seed} training, per month  {months}  (top substrate "
              f"{s['top_substrate']!r}, top habitat {s['top_habitat']!r})")
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()

"""How hard the simulator is: simple baselines against the trained heads, over seeds.

For each scale and simulator seed: simulate, ingest the train and val metadata
into a DuckDB store, fit the metadata encoder, encode every observation and
make the seeded splits (the app's own path, so metadata features are exactly
what the heads see). Then, on the held-out known-species observations of the
``test`` part, observation-level top-1 of

- 1-NN: the label of the most similar (cosine) training image over an observation's images;
- nearest class mean: cosine to the normalised mean training image of each class;
- LDA (scikit-learn, default SVD solver) and LDA with Ledoit-Wolf shrinkage (lsqr);
- logistic regression (scikit-learn, lbfgs) on embeddings, and on embeddings + metadata;
- the two-fold MLP ensemble (``heads.Classifier``, fold k trains on role train + the
  other part and stops early on its own part), with and without metadata.

The baselines are fitted on role train + both parts (everything but ``test``), so they
see at least as much data as each head. Image scores are averaged per observation.

    python benchmarks/difficulty.py                       # small, seeds 0 1 2
    python benchmarks/difficulty.py --scales small medium --seeds 0 1 2
    python benchmarks/difficulty.py --no-mlp              # baselines only (fast)
    python benchmarks/difficulty.py --quick --skip lda lr lr_meta --seeds 0 1 \
        --set latent_dim=192 --sim niche_weight=0.7       # exploring a change (~1 min/seed)

``--quick`` also scores the simulation's own test role (labels kept in memory), about
3.5x more held-out observations than part ``test`` alone, for comparing settings; the
acceptance figures are the runs without it.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sporeprint.simulator.baselines import measure  # noqa: E402
from sporeprint.simulator.embeddings import EmbeddingParams  # noqa: E402
from sporeprint.simulator.simulate import SimConfig, simulate  # noqa: E402

# Heads settings: the demo's (MLP hidden 1024, AdamW lr 1e-3, seesaw, batch 256, early
# stopping on the fold's own part); epochs per scale as in the demo.
EPOCHS = {"tiny": 12, "small": 12, "medium": 15, "full": 20}
ROWS = [("1nn", "1-NN (cosine)"), ("ncm", "nearest class mean"), ("lda", "LDA"),
        ("lda_shrink", "LDA, shrinkage"), ("lr", "logistic regression, embeddings"),
        ("lr_meta", "logistic regression, emb + metadata"),
        ("mlp", "2-fold MLP ensemble, embeddings"), ("mlp_meta", "2-fold MLP ensemble, emb + metadata")]


def run_one(scale: str, seed: int, args) -> dict[str, float]:
    emb = EmbeddingParams(**{k: type(getattr(EmbeddingParams, k))(v) for k, v in args.set})
    sim_kw = {k: float(v) for k, v in args.sim}
    cfg = SimConfig(**{"scale": "small" if scale == "tiny" else scale, "seed": seed,
                       "dim": args.dim, "classes": 120 if scale == "tiny" else None,
                       "count_scale": 0.05 if scale == "tiny" else None, "embedding": emb,
                       **sim_kw})
    t0 = time.perf_counter()
    sim = simulate(cfg)
    timing = {"simulate": time.perf_counter() - t0}
    res = measure(sim, seed, epochs=args.epochs or EPOCHS[scale], lr_c=args.lr_c,
                  skip=args.skip, mlp=not args.no_mlp, timing=timing, extra_test=args.quick)
    n_img, n_obs = timing.pop("n_train_images"), timing.pop("n_test_observations")
    print(f"  {scale} seed {seed}: {n_img:,} training images, {n_obs} known test observations; "
          + ", ".join(f"{k} {v:.0f}s" for k, v in timing.items()), flush=True)
    print("    " + "  ".join(f"{k} {100 * v:.1f}" for k, v in res.items()), flush=True)
    return res


def targets(m: dict[str, float]) -> list[tuple[str, bool | None]]:
    """The four acceptance targets on mean top-1 (fractions); None when not measured."""
    def ok(cond, *keys):
        return cond() if all(k in m for k in keys) else None

    lda = max(m.get("lda", -1), m.get("lda_shrink", -1))
    return [
        ("nearest class mean and LDA >= 8 points below the ensemble with metadata",
         ok(lambda: max(m["ncm"], lda) <= m["mlp_meta"] - 0.08, "ncm", "lda", "mlp_meta")),
        ("logistic regression (embeddings) >= 3 points below the ensemble with metadata",
         ok(lambda: m["lr"] <= m["mlp_meta"] - 0.03, "lr", "mlp_meta")),
        ("1-NN top-1 on known species within 40-65%", ok(lambda: 0.40 <= m["1nn"] <= 0.65, "1nn")),
        ("ensemble with metadata >= 2 points above the ensemble without",
         ok(lambda: m["mlp_meta"] >= m["mlp"] + 0.02, "mlp", "mlp_meta")),
    ]


def report(scale: str, results: list[dict[str, float]]) -> None:
    print(f"\nscale {scale}: observation-level top-1 on known test species, mean ± sd over "
          f"{len(results)} seeds")
    mean = {}
    for key, label in ROWS:
        vals = [r[key] for r in results if key in r]
        if not vals:
            continue
        mean[key] = float(np.mean(vals))
        sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
        print(f"  {label:<40} {100 * mean[key]:5.1f} ± {100 * sd:4.1f}   "
              + " ".join(f"{100 * v:5.1f}" for v in vals))
    for text, passed in targets(mean):
        print(f"  [{'n/a ' if passed is None else 'PASS' if passed else 'FAIL'}] {text}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", nargs="+", default=["small"],
                    choices=["tiny", "small", "medium", "full"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=None, help="default: the demo's per scale")
    ap.add_argument("--lr-c", type=float, default=1.0, help="logistic regression C")
    ap.add_argument("--no-mlp", action="store_true", help="baselines only")
    ap.add_argument("--skip", nargs="*", default=[], help="baselines to leave out (lda, lr, ...)")
    ap.add_argument("--set", nargs="*", default=[], type=lambda s: tuple(s.split("=", 1)),
                    metavar="KNOB=VALUE", help="override EmbeddingParams knobs (exploring)")
    ap.add_argument("--sim", nargs="*", default=[], type=lambda s: tuple(s.split("=", 1)),
                    metavar="KNOB=VALUE", help="override numeric SimConfig knobs (exploring)")
    ap.add_argument("--quick", action="store_true",
                    help="exploring: also score the simulation's own test role (about 3x "
                         "more held-out observations; not the acceptance measurement)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)  # sklearn: one-sample classes
    import torch

    torch.set_num_threads(args.threads)
    print(f"difficulty: scales {args.scales}, seeds {args.seeds}; MLP hidden 1024, lr 1e-3, "
          f"seesaw, epochs {args.epochs or 'per scale ' + str(EPOCHS)}; LR C={args.lr_c}")
    for scale in args.scales:
        results = [run_one(scale, s, args) for s in args.seeds]
        report(scale, results)


if __name__ == "__main__":
    main()

"""How hard the simulator is: simple and strong baselines against the trained heads, over seeds.

For each scale and simulator seed: simulate, ingest the train and val metadata
(and the unlabelled 2024-style test file) into a DuckDB store, fit the metadata
encoder, encode every observation and make the seeded splits (the app's own path,
so metadata features are exactly what the heads see). Then, on the known-species
observations of the simulation's independent test draw (the test role; its labels
stay in memory), observation-level top-1 of

- 1-NN: the label of the most similar (cosine) training image over an observation's images;
- nearest class mean: cosine to the normalised mean training image of each class;
- LDA (scikit-learn, default SVD solver) and LDA with Ledoit-Wolf shrinkage (lsqr);
- logistic regression (scikit-learn, lbfgs, C = ``--lr-c``) on embeddings, and on
  embeddings + metadata;
- the strong baselines (``sporeprint.simulator.baselines.strong_baselines``), each with
  its class prior corrected to the evaluation period's (``--prior``: by default the
  class frequencies of the validation parts p1 + p2, pseudo-count 0.5; ``em``:
  Saerens EM on the test observations; ``none``): logistic regression on standardised
  embeddings with C tuned on p1 over ``--c-grid``; on the metadata alone; the late
  fusion ``log P(y|image) + w (log P(y|metadata) - log P(y))`` of those two with ``w``
  tuned on p1; and on standardised embeddings + metadata with C tuned. They are tuned
  with fold 1's data (fitted on role train + p2, chosen on p1) and refitted with the
  chosen settings on role train + p1 + p2;
- the two-fold MLP ensemble (``heads.Classifier``, fold k trains on role train + the
  other part and stops early on its own part), with and without metadata.

The training-free baselines are fitted on role train + both parts, so they see at least
as much data as each head. Image scores are averaged per observation.

Per seed the figures are printed; per scale, mean ± sd over seeds and, for each
ensemble, its difference against every baseline with a 95% paired-bootstrap interval
(``benchmarks/stats.py``: test observations resampled per seed, paired, per-seed
differences averaged over seeds). The ensemble on embeddings alone is compared with
the embeddings-only baselines, the ensemble with metadata with all of them. A recipe
effect counts only when its interval against every baseline excludes zero; the
strongest baseline (highest mean) is named.

    python benchmarks/difficulty.py                       # small, seeds 0 1 2
    python benchmarks/difficulty.py --scales small medium --seeds 0 1 2
    python benchmarks/difficulty.py --no-mlp              # baselines only (fast)
    python benchmarks/difficulty.py --eval part           # the old part-`test` evaluation
    python benchmarks/difficulty.py --quick --skip lda lr lr_meta --seeds 0 1 \
        --set latent_dim=192 --sim niche_weight=0.7       # exploring a change (~1 min/seed)

``--eval``: ``role`` (default) the independent test draw, ``part`` the held-out part
``test`` of the splits (stratified with the validation parts, smaller), ``both`` the two
together. ``--quick`` is ``--eval both`` (kept for old command lines).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stats import fmt_interval, paired_interval  # noqa: E402

from sporeprint.simulator.baselines import (  # noqa: E402
    C_GRID,
    EMBEDDING_ONLY,
    EVALUATIONS,
    PRIOR_CORRECTIONS,
    ROWS,
    measure,
)
from sporeprint.simulator.embeddings import EmbeddingParams  # noqa: E402
from sporeprint.simulator.simulate import SimConfig, simulate  # noqa: E402

# Heads settings: the demo's (MLP hidden 1024, AdamW lr 1e-3, seesaw, batch 256, early
# stopping on the fold's own part); epochs per scale as in the demo.
EPOCHS = {"tiny": 12, "small": 12, "medium": 15, "full": 20}
HEADS = ("mlp", "mlp_meta")


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
    preds: dict = {}
    res = measure(sim, seed, epochs=args.epochs or EPOCHS[scale], lr_c=args.lr_c,
                  skip=args.skip, mlp=not args.no_mlp, timing=timing, evaluate=args.eval,
                  strong=not args.no_strong, prior=args.prior, c_grid=args.c_grid, preds=preds,
                  patience=args.patience, last_epoch=args.last_epoch)
    n_img, n_obs = timing.pop("n_train_images"), timing.pop("n_test_observations")
    settings = timing.pop("strong_settings", None)
    print(f"  {scale} seed {seed}: {n_img:,} training images, {n_obs} known test observations "
          f"({args.eval}); " + ", ".join(f"{k} {v:.0f}s" for k, v in timing.items()), flush=True)
    if settings:
        print(f"    strong baselines chosen on p1: {settings}", flush=True)
    print("    " + "  ".join(f"{k} {100 * v:.1f}" for k, v in res.items()), flush=True)
    return res, preds


def targets(m: dict[str, float]) -> list[tuple[str, bool | None]]:
    """The acceptance targets on mean top-1 (fractions); None when not measured. The
    ordering is on embeddings alone; the metadata gains are of the ensemble and of
    logistic regression."""
    def ok(cond, *keys):
        return cond() if all(k in m for k in keys) else None

    lda = max(m.get("lda", -1), m.get("lda_shrink", -1))
    lr = max(m.get("lr", -1), m.get("lr_c", -1))
    lr_meta = max(m.get("lr_meta", -1), m.get("lr_meta_c", -1))
    return [
        ("ensemble on embeddings >= nearest class mean and LDA + 5 points",
         ok(lambda: max(m["ncm"], lda) <= m["mlp"] - 0.05, "ncm", "lda", "mlp")),
        ("ensemble on embeddings >= logistic regression on embeddings + 2 points",
         ok(lambda: lr <= m["mlp"] - 0.02, "lr", "mlp")),
        ("1-NN top-1 on known species within 40-65%", ok(lambda: 0.40 <= m["1nn"] <= 0.65, "1nn")),
        ("metadata adds +1 to +6 points to the ensemble",
         ok(lambda: 0.01 <= m["mlp_meta"] - m["mlp"] <= 0.06, "mlp", "mlp_meta")),
        ("metadata adds +1 to +10 points to logistic regression",
         ok(lambda: 0.01 <= lr_meta - lr <= 0.10, "lr", "lr_meta")),
    ]


def strongest(mean: dict[str, float], keys) -> str | None:
    """The baseline of ``keys`` with the highest mean top-1 (None when none was measured)."""
    got = [k for k in keys if k in mean]
    return max(got, key=lambda k: mean[k]) if got else None


def report(scale: str, results: list[tuple[dict, dict]], reps: int = 1000) -> None:
    scores = [r for r, _ in results]
    print(f"\nscale {scale}: observation-level top-1 on known test species, mean ± sd over "
          f"{len(results)} seeds, then each seed")
    mean = {}
    for key, label in ROWS:
        vals = [r[key] for r in scores if key in r]
        if not vals:
            continue
        mean[key] = float(np.mean(vals))
        sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
        print(f"  {label:<50} {100 * mean[key]:5.1f} ± {100 * sd:4.1f}   "
              + " ".join(f"{100 * v:5.1f}" for v in vals))
    labels = dict(ROWS)
    baselines = [k for k, _ in ROWS if k not in HEADS]
    for head, pool in (("mlp", EMBEDDING_ONLY), ("mlp_meta", baselines)):
        if head not in mean:
            continue
        best = strongest(mean, pool)
        print(f"  {labels[head]} against each baseline (Δ top-1 points [95% paired-bootstrap "
              f"CI], per seed); strongest baseline: {labels.get(best, 'none')}")
        clears = []
        for key in pool:
            if key not in mean:
                continue
            pairs = [(p["truth"], p[head], p[key]) for _, p in results]
            diff = paired_interval(pairs, "accuracy", reps=reps)
            clears.append(diff[1] > 0)
            per_seed = " ".join(f"{100 * (r[head] - r[key]):+5.1f}" for r in scores)
            mark = "  <- strongest" if key == best else ""
            print(f"    vs {labels[key]:<50} {fmt_interval(diff, 100.0)}   {per_seed}{mark}")
        print(f"    [{'PASS' if clears and all(clears) else 'FAIL'}] the interval against every "
              "baseline is above zero")
    for text, passed in targets(mean):
        print(f"  [{'n/a ' if passed is None else 'PASS' if passed else 'FAIL'}] {text}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", nargs="+", default=["small"],
                    choices=["tiny", "small", "medium", "full"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=None, help="default: the demo's per scale")
    ap.add_argument("--patience", type=int, default=None,
                    help="the heads' early-stopping patience (0 = off; default: TrainConfig's)")
    ap.add_argument("--last-epoch", action="store_true",
                    help="keep each head's last epoch instead of the checkpoint with the best "
                         "loss on its own validation part (no early stopping either)")
    ap.add_argument("--lr-c", type=float, default=1.0,
                    help="C of the untuned logistic-regression rows (lr, lr_meta)")
    ap.add_argument("--c-grid", type=float, nargs="+", default=list(C_GRID),
                    help="C values the strong logistic-regression baselines are tuned over on p1")
    ap.add_argument("--prior", default="val", choices=PRIOR_CORRECTIONS,
                    help="the strong baselines' prior correction: val (class frequencies of "
                         "p1 + p2), em (Saerens EM on the test observations), none")
    ap.add_argument("--no-strong", action="store_true", help="leave out the strong baselines")
    ap.add_argument("--eval", default="role", choices=EVALUATIONS,
                    help="held-out observations scored: role (the independent test draw), "
                         "part (part test of the splits), both")
    ap.add_argument("--reps", type=int, default=1000, help="bootstrap replicates")
    ap.add_argument("--no-mlp", action="store_true", help="baselines only")
    ap.add_argument("--skip", nargs="*", default=[], help="baselines to leave out (lda, lr, ...)")
    ap.add_argument("--set", nargs="*", default=[], type=lambda s: tuple(s.split("=", 1)),
                    metavar="KNOB=VALUE", help="override EmbeddingParams knobs (exploring)")
    ap.add_argument("--sim", nargs="*", default=[], type=lambda s: tuple(s.split("=", 1)),
                    metavar="KNOB=VALUE", help="override numeric SimConfig knobs (exploring)")
    ap.add_argument("--quick", action="store_true",
                    help="the same as --eval both: part test and the test role together")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args()
    if args.quick:
        args.eval = "both"
    warnings.filterwarnings("ignore", category=UserWarning)  # sklearn: one-sample classes
    import torch

    torch.set_num_threads(args.threads)
    print(f"difficulty: scales {args.scales}, seeds {args.seeds}; MLP hidden 1024, lr 1e-3, "
          f"seesaw, epochs {args.epochs or 'per scale ' + str(EPOCHS)}; LR C={args.lr_c}; strong "
          f"baselines {'off' if args.no_strong else f'C grid {args.c_grid}, prior {args.prior}'}; "
          f"evaluated on {args.eval}")
    for scale in args.scales:
        results = [run_one(scale, s, args) for s in args.seeds]
        report(scale, results, args.reps)


if __name__ == "__main__":
    main()

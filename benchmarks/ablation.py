"""Ablation of the head recipe on simulated FungiCLEF-like data (like the paper's Table 3).

Builds a DuckDB store from a seeded simulation, trains each variant on fold 1
(training = role train + part p2, validation = part p1) and scores it on the
held-out ``test`` part, per observation: accuracy, macro F1, Track 1/2/3. The
last row averages the fold-1 and fold-2 heads of the full MLP recipe.

    python benchmarks/ablation.py [--small] [--epochs 5] [--hidden 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from heads.classifier import Classifier, Ensemble, EvalSet  # noqa: E402
from heads.train import TrainConfig  # noqa: E402
from sporeprint.simulator.simulate import SimConfig, simulate, write_simulation  # noqa: E402
from sporeprint.training import fold_rows, poisonous_ids, scores_of  # noqa: E402
from store import FeatureStore  # noqa: E402

# name, head, metadata?, loss, sampler, poison weight
VARIANTS = [
    ("baseline CE (image only)", "mlp", False, "ce", "shuffle", 0.0),
    ("+ inverse-frequency class weights", "mlp", False, "weighted_ce", "shuffle", 0.0),
    ("+ validation-matched sampler", "mlp", False, "ce", "val_matched", 0.0),
    ("+ metadata", "mlp", True, "ce", "val_matched", 0.0),
    ("+ seesaw", "mlp", True, "seesaw", "val_matched", 0.0),
    ("+ poison term (a=0.1)  [full MLP]", "mlp", True, "seesaw", "val_matched", 0.1),
    ("fusion head (full recipe)", "fusion", True, "seesaw", "val_matched", 0.1),
]


def build_store(root: Path, args) -> Path:
    sim = simulate(SimConfig(scale="small", classes=args.classes, seed=args.seed, dim=args.dim,
                             count_scale=args.count_scale))
    files = write_simulation(sim, root / "sim")
    path = root / "ablation.duckdb"
    with FeatureStore(path) as fs:
        for role in ("train", "val", "test"):  # the 2024-style test file is unlabelled
            fs.ingest_metadata(files[role], role=role)
        fs.ingest_embeddings(files["embeddings"], "sim")
        fs.fit_encoder()
        fs.encode_observations()
        fs.make_splits(args.seed)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="tiny data, 2 epochs: a smoke run")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--classes", type=int, default=150)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--count-scale", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.small:
        args.epochs, args.count_scale, args.hidden = 2, 0.1, 128

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, FeatureStore(build_store(Path(tmp), args)) as fs:
        poison = poisonous_ids(fs)
        folds = {f: fold_rows(fs, "sim", f) for f in (1, 2)}
        train, val, test, names = folds[1]
        print(f"simulation: {args.classes} classes, {args.dim}-d, train images {len(train)}, "
              f"val images {len(val)}, test observations {len(set(test.observation_ids))}; "
              f"MLP hidden {args.hidden}, fusion width {args.dim}, {args.epochs} epochs, "
              f"AdamW lr 1e-3, batch 128, seed {args.seed}")

        def fit(head, meta, loss, sampler, alpha, fold=1):
            tr, va, _, nm = folds[fold]
            params = {"hidden": args.hidden} if head == "mlp" else {"heads": 8, "width": args.dim}
            cfg = TrainConfig(epochs=args.epochs, batch_size=128, lr=1e-3, loss=loss,
                              sampler=sampler, poison_weight=alpha, patience=0, monitor="loss",
                              seed=args.seed, progress=False)
            clf = Classifier(head, params, cfg, space="sim", feature_names=nm if meta else None)
            return clf.fit(tr.embeddings, tr.class_ids, tr.metadata if meta else None,
                           observation_ids=tr.observation_ids, poisonous_classes=poison,
                           val=EvalSet(va.embeddings, va.class_ids, va.metadata if meta else None,
                                       va.observation_ids))

        def score(model, meta):
            rows = test if meta else _no_meta(test)
            return scores_of(model, rows, poison)

        header = f"{'variant':38s} {'acc %':>6s} {'F1':>6s} {'T1':>6s} {'T2':>6s} {'T3':>6s}"
        print(header)
        print("-" * len(header))
        full = None
        for name, head, meta, loss, sampler, alpha in VARIANTS:
            clf = fit(head, meta, loss, sampler, alpha)
            if name.endswith("[full MLP]"):
                full = clf
            _row(name, score(clf, meta))
        ens = Ensemble([full, fit("mlp", True, "seesaw", "val_matched", 0.1, fold=2)])
        _row("ensemble of folds 1+2 (full MLP)", score(ens, True))
    print(f"({time.perf_counter() - t0:.0f} s; scores on the held-out test part, per observation; "
          "T1 error, T2 poison cost, T3 = T1 + T2; unknown test species count as errors)")


def _no_meta(rows):
    from dataclasses import replace
    return replace(rows, metadata=None)


def _row(name: str, s: dict) -> None:
    print(f"{name:38s} {100 * s['accuracy']:6.1f} {s['macro_f1']:6.1f} {s['track1']:6.3f} "
          f"{s['track2']:6.3f} {s['track3']:6.3f}", flush=True)


if __name__ == "__main__":
    main()

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
"""

from __future__ import annotations

import argparse
import warnings
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sporeprint.simulator.embeddings import EmbeddingParams  # noqa: E402
from sporeprint.simulator.simulate import SimConfig, simulate, write_simulation  # noqa: E402
from store import FeatureStore  # noqa: E402

# Heads settings: the demo's (MLP hidden 1024, AdamW lr 1e-3, seesaw, batch 256, early
# stopping on the fold's own part); epochs per scale as in the demo.
EPOCHS = {"tiny": 12, "small": 12, "medium": 15, "full": 20}
HIDDEN = 1024
LR = 1e-3

ROWS = [("1nn", "1-NN (cosine)"), ("ncm", "nearest class mean"), ("lda", "LDA"),
        ("lda_shrink", "LDA, shrinkage"), ("lr", "logistic regression, embeddings"),
        ("lr_meta", "logistic regression, emb + metadata"),
        ("mlp", "2-fold MLP ensemble, embeddings"), ("mlp_meta", "2-fold MLP ensemble, emb + metadata")]


class Data:
    """Image rows of one selection: vectors, metadata features, labels, observation ids."""

    def __init__(self, x, meta, y, obs):
        self.x, self.meta, self.y, self.obs = x, meta, y, obs

    def __len__(self) -> int:
        return len(self.y)


def build(sim, root: Path, split_seed: int):
    """Store with the train and val metadata; returns ``(selections, feature names)`` where
    selections maps train/p1/p2/test to :class:`Data`."""
    files = write_simulation(sim, root / "sim", images=False)
    roles = np.asarray(sim.image_roles)
    keep = roles != "test"
    obs_all = sim.image_observation_ids[keep]
    x_all, y_all = sim.vectors[keep], sim.image_class_ids[keep]
    with FeatureStore(root / "fungi.duckdb") as fs:
        fs.ingest_metadata(files["train"], role="train")
        fs.ingest_metadata(files["val"], role="val")
        fs.fit_encoder()
        fs.encode_observations()
        fs.make_splits(split_seed)
        f1, f2 = fs.fold_observations(1), fs.fold_observations(2)
        ids, feats, names = fs.fetch_features(np.unique(obs_all))
    parts = {"p1": f1["val"], "p2": f2["val"], "test": f1["test"],
             "train": np.setdiff1d(f1["train"], f2["val"])}
    order = np.argsort(ids)
    meta_all = feats[order][np.searchsorted(ids[order], obs_all)]
    out = {}
    for name, obs_ids in parts.items():
        m = np.isin(obs_all, obs_ids)
        out[name] = Data(x_all[m], meta_all[m], y_all[m], obs_all[m])
    return out, names


def cat(*parts: Data) -> Data:
    return Data(*(np.concatenate([getattr(p, a) for p in parts]) for a in ("x", "meta", "y", "obs")))


def observation_top1(scores: np.ndarray, classes: np.ndarray, test: Data,
                     reduce: str = "mean") -> float:
    """Top-1 per observation from image-level ``scores`` (n, C) over ``classes``."""
    uniq, inv = np.unique(test.obs, return_inverse=True)
    agg = np.full((len(uniq), scores.shape[1]), -np.inf if reduce == "max" else 0.0)
    if reduce == "max":
        np.maximum.at(agg, inv, scores)
    else:
        np.add.at(agg, inv, scores)
    truth = np.zeros(len(uniq), np.int64)
    truth[inv] = test.y
    return float(np.mean(classes[agg.argmax(1)] == truth))


def species_proba(model, x, meta) -> np.ndarray:
    """Species probabilities, whether ``predict_proba`` returns them alone or with the
    poison probability."""
    out = model.predict_proba(x, meta)
    return out[0] if isinstance(out, tuple) else out


def baselines(train: Data, test: Data, lr_c: float, skip: set[str]) -> dict[str, float]:
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression

    classes, y = np.unique(train.y, return_inverse=True)
    res, t = {}, {}
    t0 = time.perf_counter()
    nn, nn_sim = np.empty(len(test), np.int64), np.empty(len(test), np.float32)
    for s in range(0, len(test), 1024):  # vectors are unit-norm: dot = cosine
        sims = test.x[s:s + 1024] @ train.x.T
        nn[s:s + 1024] = sims.argmax(1)
        nn_sim[s:s + 1024] = sims[np.arange(len(sims)), nn[s:s + 1024]]
    onehot = np.full((len(test), len(classes)), -np.inf, np.float32)
    onehot[np.arange(len(test)), y[nn]] = nn_sim  # the observation's best match wins
    res["1nn"] = observation_top1(onehot, classes, test, reduce="max")
    means = np.zeros((len(classes), train.x.shape[1]))
    np.add.at(means, y, train.x)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    res["ncm"] = observation_top1(test.x @ means.T, classes, test)
    t["1nn+ncm"] = time.perf_counter() - t0
    for key, kw in (("lda", {}), ("lda_shrink", {"solver": "lsqr", "shrinkage": "auto"})):
        if key in skip:
            continue
        t0 = time.perf_counter()
        lda = LinearDiscriminantAnalysis(**kw).fit(train.x, y)
        res[key] = observation_top1(lda.predict_proba(test.x), classes, test)
        t[key] = time.perf_counter() - t0
    for key, use_meta in (("lr", False), ("lr_meta", True)):
        if key in skip:
            continue
        t0 = time.perf_counter()
        # Unit vectors times sqrt(dim): coordinates of unit scale, like the 0/1 metadata.
        k = np.sqrt(train.x.shape[1])
        xtr = np.hstack([k * train.x, train.meta]) if use_meta else k * train.x
        xte = np.hstack([k * test.x, test.meta]) if use_meta else k * test.x
        lr = LogisticRegression(C=lr_c, max_iter=300).fit(xtr, y)
        res[key] = observation_top1(lr.predict_proba(xte), classes, test)
        t[key] = time.perf_counter() - t0
    return res, t


def ensemble(folds: list[tuple[Data, Data]], test: Data, use_meta: bool, epochs: int,
             seed: int, names: list[str]) -> float:
    from heads.classifier import Classifier, EvalSet
    from heads.train import TrainConfig

    members = []
    for tr, va in folds:
        clf = Classifier("mlp", {"hidden": HIDDEN},
                         TrainConfig(epochs=epochs, lr=LR, seed=seed, progress=False),
                         feature_names=names if use_meta else None)
        clf.fit(tr.x, tr.y, tr.meta if use_meta else None, observation_ids=tr.obs,
                val=EvalSet(va.x, va.y, va.meta if use_meta else None, va.obs))
        members.append(clf)
    classes = np.unique(np.concatenate([m.classes_ for m in members]))
    probs = np.zeros((len(test), len(classes)))
    for m in members:
        probs[:, np.searchsorted(classes, m.classes_)] += species_proba(
            m, test.x, test.meta if use_meta else None)
    return observation_top1(probs, classes, test)


def run_one(scale: str, seed: int, args) -> dict[str, float]:
    emb = EmbeddingParams(**{k: type(getattr(EmbeddingParams, k))(v) for k, v in args.set})
    cfg = SimConfig(scale="small" if scale == "tiny" else scale, seed=seed, dim=args.dim,
                    classes=120 if scale == "tiny" else None,
                    count_scale=0.05 if scale == "tiny" else None, embedding=emb)
    t0 = time.perf_counter()
    sim = simulate(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        sel, names = build(sim, Path(tmp), seed)
    t_build = time.perf_counter() - t0
    known = sel["test"].y >= 0
    test = Data(*(getattr(sel["test"], a)[known] for a in ("x", "meta", "y", "obs")))
    train_all = cat(sel["train"], sel["p1"], sel["p2"])
    train_all = Data(*(getattr(train_all, a)[train_all.y >= 0] for a in ("x", "meta", "y", "obs")))
    test = Data(*(getattr(test, a)[np.isin(test.y, train_all.y)] for a in ("x", "meta", "y", "obs")))
    res, timing = baselines(train_all, test, args.lr_c, set(args.skip))
    if not args.no_mlp:
        folds = [(cat(sel["train"], sel["p2"]), sel["p1"]), (cat(sel["train"], sel["p1"]), sel["p2"])]
        epochs = args.epochs or EPOCHS[scale]
        for key, use_meta in (("mlp", False), ("mlp_meta", True)):
            t1 = time.perf_counter()
            res[key] = ensemble(folds, test, use_meta, epochs, seed, names)
            timing[key] = time.perf_counter() - t1
    n_obs = len(np.unique(test.obs))
    print(f"  {scale} seed {seed}: {len(train_all):,} training images, {n_obs} known test "
          f"observations; build {t_build:.0f}s, "
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
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)  # sklearn: one-sample classes
    import torch

    torch.set_num_threads(args.threads)
    print(f"difficulty: scales {args.scales}, seeds {args.seeds}; MLP hidden {HIDDEN}, lr {LR}, "
          f"seesaw, epochs {args.epochs or 'per scale ' + str(EPOCHS)}; LR C={args.lr_c}")
    for scale in args.scales:
        results = [run_one(scale, s, args) for s in args.seeds]
        report(scale, results)


if __name__ == "__main__":
    main()

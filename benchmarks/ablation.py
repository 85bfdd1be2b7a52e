"""Ablation of the head recipe over seeds, with training-free baselines beside it.

Per seed ``s`` (the simulator seed, the split seed and the training seed are all
``s``): a store is built from ``simulate(SimConfig(scale, seed=s))``; each variant
trains on fold 1 (training = role train + part p2, validation = part p1) and is
scored on the simulation's independent test draw (the 2024-style test role,
ingested without labels, its labels kept in memory; ``--eval part`` scores the
held-out part ``test`` of the splits instead, ``--eval both`` the two), one answer
per observation (image probabilities averaged). Unknown test species count as
errors: no open-set step runs here (see decision_analysis.py for that). The last
recipe row averages the fold-1 and fold-2 heads of the full MLP recipe.

Baselines fit on the same fold-1 training images and classify each test
observation's mean embedding: nearest class mean (cosine), 1-NN (cosine), LDA
and logistic regression (scikit-learn; standardised inputs), the latter on
embeddings alone and on embeddings + the encoded metadata. The strong baselines
(``sporeprint.simulator.baselines.strong_baselines``) fit on the same rows, choose
their C (``--c-grid``) and the fusion weight on p1 and correct their class prior to
the evaluation period's (``--prior``, default p1's class frequencies): logistic
regression on standardised embeddings, on metadata alone, the late fusion of those
two, and on embeddings + metadata. After the table, each recipe row is compared
with every baseline: a recipe effect counts only when its interval against all of
them excludes zero.

Each row: mean ± sd over seeds, and the difference against a reference row with a
95% paired-bootstrap interval (``benchmarks/stats.py``: test observations
resampled per seed, paired across the two variants, per-seed differences
averaged over seeds); ``*`` marks an interval that excludes zero.

    python benchmarks/ablation.py [--seeds 0 1 2 3 4] [--scale small] [--epochs 5]
    python benchmarks/ablation.py --sweep      # sporeprint train's hidden/lr defaults
    python benchmarks/ablation.py --quick      # a smoke run: 2 seeds, tiny data
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stats import fmt_interval, fmt_mean_sd, metric, paired_interval  # noqa: E402

from heads.classifier import Classifier, Ensemble, EvalSet  # noqa: E402
from heads.inference import aggregate_by_observation  # noqa: E402
from heads.train import TrainConfig  # noqa: E402
from sporeprint.rows import Rows, load_rows  # noqa: E402
from sporeprint.simulator import baselines as strong  # noqa: E402
from sporeprint.simulator.simulate import (  # noqa: E402
    SimConfig,
    ingest_simulation,
    simulate,
    write_simulation,
)
from sporeprint.training import fold_rows, poisonous_ids  # noqa: E402
from store import FeatureStore  # noqa: E402

SPACE = "sim"
PLACE_PREFIXES = ("geohash_", "geo_")

# name, head, metadata?, loss, sampler, poison weight; each row is compared with the one above
VARIANTS = [
    ("baseline CE (image only)", "mlp", False, "ce", "shuffle", 0.0),
    ("+ inverse-frequency class weights", "mlp", False, "weighted_ce", "shuffle", 0.0),
    ("+ validation-matched sampler (no weights)", "mlp", False, "ce", "val_matched", 0.0),
    ("+ metadata", "mlp", True, "ce", "val_matched", 0.0),
    ("+ seesaw", "mlp", True, "seesaw", "val_matched", 0.0),
    ("+ poison term (a=0.1) [full MLP]", "mlp", True, "seesaw", "val_matched", 0.1),
]
FULL = VARIANTS[-1][0]
FUSION = "fusion head (full recipe)"
NO_PLACE = "full MLP without the place columns"
ENSEMBLE = "2-fold ensemble (full MLP)"


EVALUATIONS = ("role", "part", "both")


@dataclass
class SeedData:
    seed: int
    poison: np.ndarray
    folds: dict  # fold -> (train, val, evaluated test rows, names)
    summary: str
    store: FeatureStore | None = None  # kept open for decision_analysis.py
    test_ids: np.ndarray | None = None  # the evaluated observations (sorted)
    test_truth: np.ndarray | None = None  # their class ids (-1 unknown), same order

    def truth_of(self, observation_ids: np.ndarray) -> np.ndarray:
        """Class id (-1 unknown) of evaluated observations, from the labels in memory."""
        pos = np.searchsorted(self.test_ids, observation_ids)
        if not np.array_equal(self.test_ids[np.minimum(pos, len(self.test_ids) - 1)],
                              observation_ids):
            raise ValueError("observations outside the evaluated test set")
        return self.test_truth[pos]


def _cat_rows(a: Rows, b: Rows) -> Rows:
    return Rows(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in
                  ("image_ids", "observation_ids", "class_ids", "embeddings", "metadata")))


def build_seed(root: Path, seed: int, scale: str, dim: int | None, classes: int | None,
               count_scale: float | None, evaluate: str = "role") -> SeedData:
    """Simulate, ingest, encode and split one seed's data; load both folds' rows.

    ``evaluate``: the test rows of each fold are the simulation's independent test draw
    (``role``, the default: the unlabelled 2024-style file and its vectors are ingested as
    role test, their labels kept in memory), part ``test`` of the splits (``part``), or
    both together."""
    if evaluate not in EVALUATIONS:
        raise SystemExit(f"--eval {evaluate!r} is not one of {', '.join(EVALUATIONS)}")
    kw = {"dim": dim} if dim else {}
    sim = simulate(SimConfig(scale=scale, seed=seed, classes=classes, count_scale=count_scale,
                             **kw))
    files = write_simulation(sim, root / f"sim{seed}")
    fs = FeatureStore(root / f"seed{seed}.duckdb")
    ingest_simulation(fs, files, SPACE, seed)
    if evaluate != "part":
        fs.ingest_metadata(files["test"], role="test")
        fs.ingest_embeddings(files["embeddings_test"], SPACE)
        fs.encode_observations()
    folds = {f: fold_rows(fs, SPACE, f) for f in (1, 2)}
    part = folds[1][2]
    ids, truth = np.unique(part.observation_ids, return_index=True)
    truth = part.class_ids[truth]
    if evaluate != "part":
        t = sim.test_truth()
        role_ids = np.asarray(t["observation_id"], np.int64)
        order = np.argsort(role_ids)
        role_ids, role_truth = role_ids[order], np.asarray(t["class_id"], np.int64)[order]
        rows, _ = load_rows(fs, SPACE, role_ids, labelled_only=False)
        rows = replace(rows, class_ids=role_truth[np.searchsorted(role_ids, rows.observation_ids)])
        test = rows if evaluate == "role" else _cat_rows(part, rows)
        folds = {f: (tr, va, test, names) for f, (tr, va, _, names) in folds.items()}
        ids, truth = (role_ids, role_truth) if evaluate == "role" else (
            np.concatenate([ids, role_ids]), np.concatenate([truth, role_truth]))
        order = np.argsort(ids)
        ids, truth = ids[order], truth[order]
    train, val, test, names = folds[1]
    n_test = len(np.unique(test.observation_ids))
    poison = poisonous_ids(fs)
    n_pois = int(np.isin(truth, poison).sum())
    summary = (f"seed {seed}: {len(np.unique(train.class_ids))} training classes, "
               f"{train.embeddings.shape[1]}-d, {len(names)} metadata columns, train images "
               f"{len(train)}, val images {len(val)}, test observations {n_test} ({evaluate}; "
               f"{int((truth < 0).sum())} of unknown species, {n_pois} poisonous)")
    return SeedData(seed, poison, folds, summary, fs, ids, truth)


def obs_truth(rows) -> tuple[np.ndarray, np.ndarray]:
    """(observation ids, class id) in order of first appearance (aggregation order)."""
    obs, first = np.unique(rows.observation_ids, return_index=True)
    order = np.argsort(first)
    return obs[order], rows.class_ids[first[order]]


def predict_obs(clf, rows) -> np.ndarray:
    """The most probable class per observation (image probabilities averaged)."""
    probs = clf.predict_proba(rows.embeddings, rows.metadata)
    _, mean = aggregate_by_observation(probs, rows.observation_ids)
    return clf.classes_[mean.argmax(axis=1)]


def drop_columns(rows, keep: np.ndarray | None):
    """``rows`` with only metadata columns ``keep`` (None: no metadata)."""
    return replace(rows, metadata=None if keep is None else rows.metadata[:, keep])


def train_config(args, loss, sampler, alpha, seed, lr=None) -> TrainConfig:
    return TrainConfig(epochs=args.epochs, batch_size=128, lr=lr or args.lr, loss=loss,
                       sampler=sampler, poison_weight=alpha, patience=0, monitor="loss",
                       seed=seed, progress=False, scheduler="cosine")


def fit_head(data: SeedData, args, head, meta_cols, loss, sampler, alpha, fold=1,
             hidden=None, lr=None) -> Classifier:
    """``meta_cols``: indices of the metadata columns the head sees (None: image only)."""
    tr, va, _, names = data.folds[fold]
    tr, va = drop_columns(tr, meta_cols), drop_columns(va, meta_cols)
    params = ({"hidden": hidden or args.hidden} if head == "mlp"
              else {"heads": 8, "width": args.fusion_width})
    cfg = train_config(args, loss, sampler, alpha, data.seed, lr)
    clf = Classifier(head, params, cfg, space=SPACE,
                     feature_names=None if meta_cols is None else [names[i] for i in meta_cols])
    return clf.fit(tr.embeddings, tr.class_ids, tr.metadata,
                   observation_ids=tr.observation_ids, poisonous_classes=data.poison,
                   val=EvalSet(va.embeddings, va.class_ids, va.metadata, va.observation_ids))


# -- training-free baselines ------------------------------------------------------------
def _unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _obs_mean(x, rows):
    _, mean = aggregate_by_observation(x, rows.observation_ids)
    return mean


BASELINES = ("nearest class mean (cosine)", "1-NN (cosine)", "LDA (scikit-learn)",
             "logistic regression, embeddings", "logistic regression, embeddings + metadata")
STRONG = {"lr_c": "strong: logistic regression, std. embeddings, C tuned, prior-corrected",
          "meta_lr": "strong: logistic regression, metadata alone, prior-corrected",
          "late_fusion": "strong: late fusion of the two, weight tuned, prior-corrected",
          "lr_meta_c": "strong: logistic regression, std. emb + metadata, C tuned, "
                       "prior-corrected"}
RECIPES = (FULL, FUSION, ENSEMBLE)  # compared with every strong baseline


def _as_data(rows) -> strong.Data:
    return strong.Data(rows.embeddings, rows.metadata, rows.class_ids, rows.observation_ids)


def baselines(data: SeedData, args=None) -> dict[str, np.ndarray]:
    """Per test observation: the class each baseline answers. The strong baselines
    (``sporeprint.simulator.baselines.strong_baselines``) fit on the fold-1 training rows,
    choose C and the fusion weight on part p1 and move their class prior to p1's
    (``--prior``)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, val, test, _ = data.folds[1]
    keep = train.class_ids >= 0
    x_tr, y_tr = train.embeddings[keep].astype(np.float64), train.class_ids[keep]
    m_tr = train.metadata[keep]
    q = _obs_mean(test.embeddings.astype(np.float64), test)
    q_meta = _obs_mean(test.metadata.astype(np.float64), test)
    classes = np.unique(y_tr)
    out = {}
    means = _unit(np.stack([_unit(x_tr)[y_tr == c].mean(0) for c in classes]))
    out["nearest class mean (cosine)"] = classes[(_unit(q) @ means.T).argmax(1)]
    out["1-NN (cosine)"] = y_tr[(_unit(q) @ _unit(x_tr).T).argmax(1)]
    lda = LinearDiscriminantAnalysis().fit(x_tr, y_tr)
    out["LDA (scikit-learn)"] = lda.predict(q)
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x_tr, y_tr)
    out["logistic regression, embeddings"] = lr.predict(q)
    lrm = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(
        np.hstack([x_tr, m_tr]), y_tr)
    out["logistic regression, embeddings + metadata"] = lrm.predict(np.hstack([q, q_meta]))
    got, settings = strong.strong_baselines(
        _as_data(train), _as_data(val), _as_data(test), prior=getattr(args, "prior", "val"),
        c_grid=getattr(args, "c_grid", strong.C_GRID))
    order = obs_truth(test)[0]  # first-appearance order, as the other rows
    for key, (ids, pred) in got.items():
        out[STRONG[key]] = pred[np.searchsorted(ids, order)]
    print(f"  seed {data.seed}: strong baselines chosen on p1: {settings}", flush=True)
    return out


# -- one seed ---------------------------------------------------------------------------
def run_seed(data: SeedData, args) -> dict[str, np.ndarray]:
    """Predictions per test observation of every row of the table (plus ``truth``)."""
    _, _, test, names = data.folds[1]
    all_cols = np.arange(len(names))
    no_place = np.array([i for i, n in enumerate(names) if not n.startswith(PLACE_PREFIXES)])
    preds = {"truth": obs_truth(test)[1]}
    timing = {}
    full = None
    for name, head, meta, loss, sampler, alpha in VARIANTS:
        t0 = time.perf_counter()
        cols = all_cols if meta else None
        clf = fit_head(data, args, head, cols, loss, sampler, alpha)
        timing[name] = time.perf_counter() - t0
        preds[name] = predict_obs(clf, drop_columns(test, cols))
        if name == FULL:
            full = clf
        print(f"  seed {data.seed}: {name} ({timing[name]:.0f} s)", flush=True)
    clf = fit_head(data, args, "fusion", all_cols, "seesaw", "val_matched", 0.1)
    preds[FUSION] = predict_obs(clf, test)
    clf = fit_head(data, args, "mlp", no_place, "seesaw", "val_matched", 0.1)
    preds[NO_PLACE] = predict_obs(clf, drop_columns(test, no_place))
    second = fit_head(data, args, "mlp", all_cols, "seesaw", "val_matched", 0.1, fold=2)
    preds[ENSEMBLE] = predict_obs(Ensemble([full, second]), test)
    t0 = time.perf_counter()
    preds.update(baselines(data, args))
    print(f"  seed {data.seed}: heads and baselines done (baselines {time.perf_counter() - t0:.0f} s)",
          flush=True)
    return preds


# -- the table --------------------------------------------------------------------------
def table(per_seed: list[dict], poison: list[np.ndarray], rows: list[tuple[str, str | None]],
          reps: int, metrics=("accuracy", "macro_f1", "track3")) -> str:
    """Markdown: per row mean ± sd of each metric and, against its reference row, the
    paired-bootstrap difference of accuracy and macro F1."""
    scale = {"accuracy": 100.0, "macro_f1": 1.0, "track3": 1.0, "track1": 1.0, "track2": 1.0}
    digits = {"accuracy": 1, "macro_f1": 1, "track3": 3, "track1": 3, "track2": 3}
    head = ["row", *(m for m in metrics), "vs", "Δ acc (pts) [95% CI]", "Δ macro F1 [95% CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, ref in rows:
        cells = [name]
        for m in metrics:
            vals = [metric(m, p["truth"], p[name], pz) for p, pz in zip(per_seed, poison,
                                                                         strict=True)]
            cells.append(fmt_mean_sd(vals, scale[m], digits[m]))
        if ref is None:
            cells += ["", "", ""]
        else:
            pairs = [(p["truth"], p[name], p[ref], pz) for p, pz in zip(per_seed, poison,
                                                                        strict=True)]
            cells += [ref,
                      fmt_interval(paired_interval(pairs, "accuracy", reps=reps), 100.0),
                      fmt_interval(paired_interval(pairs, "macro_f1", reps=reps), 1.0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ablation_rows() -> list[tuple[str, str | None]]:
    rows = [(VARIANTS[0][0], None)]
    rows += [(VARIANTS[i][0], VARIANTS[i - 1][0]) for i in range(1, len(VARIANTS))]
    rows += [(FUSION, FULL), (NO_PLACE, FULL), (ENSEMBLE, FULL)]
    rows += [(b, ENSEMBLE) for b in (*BASELINES, *STRONG.values())]
    return rows


def against_baselines(per_seed: list[dict], reps: int) -> str:
    """Markdown: each recipe row (full MLP, fusion head, 2-fold ensemble) against every
    baseline, accuracy difference with its paired-bootstrap interval; a recipe clears the
    bar only when every interval is above zero."""
    pool = [b for b in (*BASELINES, *STRONG.values()) if b in per_seed[0]]
    mean = {b: np.mean([metric("accuracy", p["truth"], p[b], ()) for p in per_seed])
            for b in pool}
    best = max(pool, key=mean.get)
    lines = [f"Recipe rows against every baseline (Δ accuracy, points [95% CI]); strongest "
             f"baseline: {best} ({100 * mean[best]:.1f}).", "",
             "| recipe | " + " | ".join(pool) + " | clears all |", "|" + "---|" * (len(pool) + 2)]
    for name in RECIPES:
        cells, clear = [name], True
        for b in pool:
            diff = paired_interval([(p["truth"], p[name], p[b]) for p in per_seed], "accuracy",
                                   reps=reps)
            clear &= diff[1] > 0
            cells.append(fmt_interval(diff, 100.0))
        lines.append("| " + " | ".join(cells) + f" | {'yes' if clear else 'no'} |")
    return "\n".join(lines)


def ablation_report(recs: list[dict], reps: int) -> str:
    per_seed = [r["preds"] for r in recs]
    return (table(per_seed, [r["poison"] for r in recs], ablation_rows(), reps) + "\n\n"
            + against_baselines(per_seed, reps))


SWEEP = [(1024, 1e-3), (1024, 1e-4), (4096, 1e-3), (4096, 1e-4)]


def _sweep_name(hidden, lr) -> str:
    return f"hidden {hidden}, lr {lr:g}"


def sweep_seed(data: SeedData, args) -> tuple[dict, dict]:
    """``sporeprint train``'s MLP settings on one seed: predictions and seconds per
    fold-1 head (full recipe, ``--sweep-epochs`` epochs)."""
    test = data.folds[1][2]
    preds, secs = {"truth": obs_truth(test)[1]}, {}
    cols = np.arange(len(data.folds[1][3]))
    for hidden, lr in SWEEP:
        t0 = time.perf_counter()
        clf = fit_head(data, args, "mlp", cols, "seesaw", "val_matched", 0.1, hidden=hidden,
                       lr=lr)
        secs[_sweep_name(hidden, lr)] = time.perf_counter() - t0
        preds[_sweep_name(hidden, lr)] = predict_obs(clf, test)
        print(f"  seed {data.seed}: hidden {hidden} lr {lr:g} "
              f"({secs[_sweep_name(hidden, lr)]:.0f} s)", flush=True)
    return preds, secs


def sweep_table(recs: list[dict], reps: int) -> str:
    ref = _sweep_name(*SWEEP[0])
    rows = [(ref, None)] + [(_sweep_name(h, lr), ref) for h, lr in SWEEP[1:]]
    out = table([r["preds"] for r in recs], [r["poison"] for r in recs], rows, reps)
    return out + "\n\nseconds per fold-1 head, median over seeds: " + ", ".join(
        f"{_sweep_name(h, lr)}: {np.median([r['seconds'][_sweep_name(h, lr)] for r in recs]):.1f}"
        for h, lr in SWEEP)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--scale", default="small", choices=["small", "medium"])
    ap.add_argument("--classes", type=int, default=150)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--count-scale", type=float, default=0.25)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--fusion-width", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--reps", type=int, default=1000, help="bootstrap replicates")
    ap.add_argument("--eval", default="role", choices=EVALUATIONS,
                    help="test rows: role (the simulation's independent test draw, labels in "
                         "memory), part (the held-out part test of the splits), both")
    ap.add_argument("--prior", default="val", choices=strong.PRIOR_CORRECTIONS,
                    help="the strong baselines' prior correction: val (p1's class "
                         "frequencies), em (Saerens EM on the test observations), none")
    ap.add_argument("--c-grid", type=float, nargs="+", default=list(strong.C_GRID),
                    help="C values the strong logistic-regression baselines try on p1")
    ap.add_argument("--sweep", action="store_true", help="the train defaults sweep instead")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, tiny data")
    ap.add_argument("--save", type=Path, default=None,
                    help="also write each seed's predictions to DIR (one pickle per seed), "
                         "e.g. to run seeds as parallel processes")
    ap.add_argument("--load", type=Path, default=None,
                    help="print the table from the seeds saved in DIR; trains nothing")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.classes, args.count_scale = args.seeds[:2], 70, 0.05
        args.epochs, args.hidden, args.reps, args.dim = 2, 64, 100, 64
    return args


def setting_line(args) -> str:
    heads = ("MLP hidden and lr as in each row" if args.sweep else
             f"MLP hidden {args.hidden}, fusion width {args.fusion_width}, AdamW lr {args.lr:g}")
    return (f"scale {args.scale}, {args.classes} classes, {args.dim}-d, count scale "
            f"{args.count_scale}; {heads}, "
            f"{args.epochs} epochs, batch 128, cosine schedule; "
            f"seeds {args.seeds}; {args.reps} bootstrap replicates; evaluated on "
            f"{args.eval}; strong baselines: C grid {args.c_grid}, prior {args.prior}")


def save_seed(directory: Path | None, kind: str, seed: int, record: dict) -> None:
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / f"{kind}-seed{seed}.pkl", "wb") as f:
            pickle.dump(record, f)


def load_seeds(directory: Path, kind: str) -> list[dict]:
    """Saved seed records of ``kind``, by seed."""
    records = []
    for path in sorted(directory.glob(f"{kind}-seed*.pkl")):
        with open(path, "rb") as f:
            records.append(pickle.load(f))  # noqa: S301 - files this script wrote
    if not records:
        raise SystemExit(f"no {kind}-seed*.pkl in {directory}; run with --save {directory}")
    return sorted(records, key=lambda r: r["seed"])


def main(argv=None) -> None:
    args = parse(argv)
    t0 = time.perf_counter()
    kind = "sweep" if args.sweep else "ablation"
    if args.load is not None:
        recs = load_seeds(args.load, kind)
        print(recs[0]["setting"])
        print("\n".join("  " + r["summary"] for r in recs))
        if args.sweep:
            print(sweep_table(recs, args.reps))
        else:
            print(ablation_report(recs, args.reps))
        return
    print(setting_line(args), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        recs = []
        for seed in args.seeds:
            data = build_seed(Path(tmp), seed, args.scale, args.dim, args.classes,
                              args.count_scale, args.eval)
            print("  " + data.summary, flush=True)
            rec = {"seed": seed, "poison": data.poison, "summary": data.summary,
                   "setting": setting_line(args)}
            if args.sweep:
                rec["preds"], rec["seconds"] = sweep_seed(data, args)
            else:
                rec["preds"] = run_seed(data, args)
            data.store.close()
            save_seed(args.save, kind, seed, rec)
            recs.append(rec)
        if args.sweep:
            print(sweep_table(recs, args.reps))
        else:
            print(ablation_report(recs, args.reps))
    print(f"({time.perf_counter() - t0:.0f} s; test observations: {args.eval}, per "
          "observation; unknown test species count as errors; * = the 95% interval "
          "excludes zero)")


if __name__ == "__main__":
    main()

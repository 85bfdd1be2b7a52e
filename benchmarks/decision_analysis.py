"""Decision rules, cost matrices, the unknown detector and poison-head fusion, over seeds.

Per seed ``s`` (simulator, split and training seed): the store of
``ablation.build_seed``; a two-fold MLP ensemble of the full recipe trained with
``sporeprint.training.train_folds``; the app's ``ScoringModel`` (exact index of the
training images, calibration fitted out-of-fold on the validation parts); every
rule scored on the held-out ``test`` part, which no head, calibration or
threshold has seen.

Rules:

- plain argmax: the raw ensemble (mean image probabilities), no temperature, no
  poison prior shift, never "unknown";
- calibrated argmax: the app's ``argmax`` rule (temperature, then the poison
  prior shift; the temperature alone cannot change an argmax);
- argmax + calibrated unknown: the app's ``argmax_unknown`` rule;
- Track 3 rule: the app's default (expected-cost argmin);
- Track 3 rule + fused poison head: the poison probability of the Track 3 rule
  replaced by ``heads.calibration.PoisonFusion`` of (poison mass, the heads' poison
  logit), fitted out-of-fold: fold k's head on part p_k, the same parts and
  states as the rest of the calibration.

Each rule: mean ± sd over seeds and the paired-bootstrap difference against the
Track 3 rule (``benchmarks/stats.py``). Then the Track 3 rule replayed under
``sporeprint.decisions.COST_MATRICES`` with its answer mix, and the unknown
detector's AUROC on the held-out test part beside its validation AUROC.

    python benchmarks/decision_analysis.py [--seeds 0 1 2 3 4] [--epochs 5]
    python benchmarks/decision_analysis.py --quick
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablation import SPACE, build_seed, load_seeds, save_seed, train_config  # noqa: E402
from stats import fmt_interval, fmt_mean_sd, metric, paired_interval  # noqa: E402

from heads import HeadsError  # noqa: E402
from heads.calibration import PoisonFusion  # noqa: E402
from heads.classifier import Ensemble  # noqa: E402
from heads.decision import Costs, decide_summary, summarise  # noqa: E402
from heads.inference import aggregate_by_observation  # noqa: E402
from sporeprint.decisions import COST_MATRICES, answer_mix  # noqa: E402
from sporeprint.scoring import ScoringModel  # noqa: E402
from sporeprint.scoring.observations import ObservationScores, observation_scores, uncertainty  # noqa: E402
from sporeprint.training import load_rows, train_folds  # noqa: E402

PLAIN, CAL, UNK, T3, FUSED = ("plain argmax (raw ensemble)", "calibrated argmax",
                              "argmax + calibrated unknown", "Track 3 rule (default)",
                              "Track 3 rule + fused poison head")
RULES = (PLAIN, CAL, UNK, T3, FUSED)


def poison_logit(classifiers, rows) -> tuple[np.ndarray, np.ndarray]:
    """(observation ids, mean over members and images of the heads' poison logit)."""
    z = np.mean([c.predict_logits(rows.embeddings, rows.metadata)[1] for c in classifiers],
                axis=0).astype(np.float64)
    return aggregate_by_observation(z, rows.observation_ids)


def align(ids_from: np.ndarray, values: np.ndarray, ids_to: np.ndarray) -> np.ndarray:
    order = np.argsort(ids_from)
    return values[order][np.searchsorted(ids_from[order], ids_to)]


def summary_inputs(model: ScoringModel, scores: ObservationScores):
    """(DecisionSummary, P(unknown), fused detector score) as ``ScoringModel.decide`` sees them."""
    cal = model.calibration
    det = cal.detector_for(model.index)
    knn = model.neighbours.search(scores.queries, 5, det.k).unknown_score
    plain = cal.species_probs(scores.log_probs, model.poisonous, shift=False)
    probs = cal.prior.apply(plain, model.poisonous)
    s = det.fuse(knn, uncertainty(plain))
    pu = cal.unknown_prob(s)
    return summarise(probs, pu, model.classes, model.poisonous), knn


def fit_fusion(fs, model: ScoringModel, poison: np.ndarray) -> PoisonFusion:
    """PoisonFusion on the validation parts, out-of-fold (fold k's head on part p_k)."""
    seed = fs.split_seed()
    mass, logit, truth = [], [], []
    for m in model.members:
        rows, _ = load_rows(fs, SPACE, fs.fold_observations(m.fold, seed=seed)["val"])
        one = Ensemble([m.classifier])
        s = observation_scores(one, rows)
        full = np.full((len(s.observation_ids), len(model.classes)), np.log(1e-12))
        full[:, np.searchsorted(model.classes, one.classes_[one.classes_ >= 0])] = s.log_probs
        s = ObservationScores(s.observation_ids, full, s.queries)
        summ, _ = summary_inputs(model, s)
        ids, z = poison_logit([m.classifier], rows)
        mass.append(summ.poison_prob)
        logit.append(align(ids, z, s.observation_ids))
        truth.append(np.isin(fs.observation_class_ids(s.observation_ids), poison))
    return PoisonFusion().fit(np.concatenate(mass), np.concatenate(logit),
                              np.concatenate(truth))


def run_seed(data, args, root: Path) -> dict:
    fs = data.store
    cfg = train_config(args, "seesaw", "val_matched", 0.1, data.seed)
    runs = train_folds(fs, SPACE, head="mlp", folds=[1, 2], head_params={"hidden": args.hidden},
                       config=cfg, out_dir=root / f"runs{data.seed}", split_seed=data.seed)
    model = ScoringModel.load(fs, [runs[-1].run_id])
    test_ids = fs.fold_observations(1)["test"]
    scores, rows = model.scores(fs, test_ids)
    truth = fs.observation_class_ids(scores.observation_ids)
    summ, knn = summary_inputs(model, scores)
    out = {"truth": truth, PLAIN: model.classes[scores.log_probs.argmax(1)]}
    for name, rule in ((CAL, "argmax"), (UNK, "argmax_unknown"), (T3, "track3")):
        out[name] = model.decide(scores, rule, knn).class_id
    d3 = decide_summary(summ)
    assert np.array_equal(d3.class_id, out[T3]), "the replayed rule must equal the app's"
    try:
        fusion = fit_fusion(fs, model, data.poison)
    except HeadsError as exc:  # tiny data: no poisonous validation observation
        print(f"  seed {data.seed}: no fusion ({exc}); its row repeats the Track 3 rule")
        out[FUSED], out["fusion"] = out[T3], (1.0, 0.0, 0.0)
    else:
        ids, z = poison_logit([m.classifier for m in model.members], rows)
        fused = fusion.transform(summ.poison_prob, align(ids, z, scores.observation_ids))
        out[FUSED] = decide_summary(replace(summ, poison_prob=np.minimum(
            fused, 1.0 - summ.unknown_prob))).class_id
        out["fusion"] = (fusion.coef_mass_, fusion.coef_logit_, fusion.intercept_)
    for label, (pe, ep) in COST_MATRICES.items():
        d = decide_summary(summ, Costs(poisonous_as_edible=pe, edible_as_poisonous=ep))
        out[f"cost {label}"] = d.class_id
        out[f"mix {label}"] = answer_mix(d.class_id, data.poison, d.reason)
    out["auroc_test"] = model.unknown_auroc(fs, test_ids)["auroc"]
    out["auroc_val"] = float(model.calibration.metrics.get("auroc", float("nan")))
    out["n_test"] = len(truth)
    return out


def rule_table(per_seed, poison, reps) -> str:
    metrics = ("track1", "track2", "track3", "macro_f1", "poisonous_as_edible")
    lines = ["| rule | Track 1 | Track 2 | Track 3 | macro F1 | poisonous called edible/unknown "
             "(per 1000) | Δ Track 3 vs Track 3 rule [95% CI] | Δ Track 2 [95% CI] | "
             "Δ macro F1 [95% CI] |", "|" + "---|" * 9]
    for name in RULES:
        cells = [name]
        for m in metrics:
            vals = [metric(m, p["truth"], p[name], pz) for p, pz in zip(per_seed, poison,
                                                                         strict=True)]
            cells.append(fmt_mean_sd(vals, 1.0, 1 if m in ("macro_f1", "poisonous_as_edible")
                                     else 3))
        if name == T3:
            cells += ["", "", ""]
        else:
            pairs = [(p["truth"], p[name], p[T3], pz) for p, pz in zip(per_seed, poison,
                                                                       strict=True)]
            cells += [fmt_interval(paired_interval(pairs, "track3", reps=reps), 1.0, 3),
                      fmt_interval(paired_interval(pairs, "track2", reps=reps), 1.0, 3),
                      fmt_interval(paired_interval(pairs, "macro_f1", reps=reps), 1.0, 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_table(per_seed, poison) -> str:
    lines = ["| cost matrix (poisonous-as-edible : edible-as-poisonous) | Track 1 | Track 2 | "
             "Track 3 | edible species | poisonous species | unknown | raised for poison risk |",
             "|" + "---|" * 8]
    for label in COST_MATRICES:
        key = f"cost {label}"
        cells = [label]
        for m in ("track1", "track2", "track3"):
            cells.append(fmt_mean_sd([metric(m, p["truth"], p[key], pz)
                                      for p, pz in zip(per_seed, poison, strict=True)], 1.0, 3))
        for k in ("edible species", "poisonous species", "unknown", "raised for poison risk"):
            cells.append(fmt_mean_sd([p[f"mix {label}"][k] for p in per_seed], 1.0, 1))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--scale", default="small", choices=["small", "medium"])
    ap.add_argument("--classes", type=int, default=None, help="default: the scale's")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--count-scale", type=float, default=None, help="default: the scale's")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--save", type=Path, default=None, help="write each seed's record to DIR")
    ap.add_argument("--load", type=Path, default=None, help="tables from the seeds in DIR")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.classes, args.count_scale = args.seeds[:2], 70, 0.1
        args.epochs, args.hidden, args.reps, args.dim = 2, 64, 100, 64
    t0 = time.perf_counter()
    if args.load is not None:
        recs = load_seeds(args.load, "decisions")
        print(recs[0]["setting"])
        return report([r["record"] for r in recs], [r["poison"] for r in recs], args.reps)
    setting = (f"scale {args.scale}, classes {args.classes or 'scale default'}, {args.dim}-d; "
          f"2-fold MLP ensemble hidden {args.hidden}, {args.epochs} epochs, lr {args.lr:g}, "
          f"seesaw + val-matched sampler + poison term; seeds {args.seeds}")
    print(setting, flush=True)
    per_seed, poison = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            data = build_seed(Path(tmp), seed, args.scale, args.dim, args.classes,
                              args.count_scale)
            print("  " + data.summary, flush=True)
            per_seed.append(run_seed(data, args, Path(tmp)))
            poison.append(data.poison)
            data.store.close()
            save_seed(args.save, "decisions", seed, {"seed": seed, "poison": data.poison,
                                                     "setting": setting,
                                                     "record": per_seed[-1]})
            p = per_seed[-1]
            print(f"  seed {seed}: test AUROC {p['auroc_test']:.3f} (validation "
                  f"{p['auroc_val']:.3f}); fusion coef mass {p['fusion'][0]:+.2f}, poison logit "
                  f"{p['fusion'][1]:+.2f}, intercept {p['fusion'][2]:+.2f}", flush=True)
    report(per_seed, poison, args.reps)
    print(f"({time.perf_counter() - t0:.0f} s)")


def report(per_seed, poison, reps) -> None:
    for p in per_seed:
        print(f"  test AUROC {p['auroc_test']:.3f} (validation {p['auroc_val']:.3f}); fusion "
              f"coef mass {p['fusion'][0]:+.2f}, poison logit {p['fusion'][1]:+.2f}, "
              f"intercept {p['fusion'][2]:+.2f}")
    print(rule_table(per_seed, poison, reps))
    print()
    print(cost_table(per_seed, poison))
    print()
    print("unknown detector AUROC: held-out test part "
          f"{fmt_mean_sd([p['auroc_test'] for p in per_seed], 1.0, 3)}, validation parts it "
          f"was calibrated on {fmt_mean_sd([p['auroc_val'] for p in per_seed], 1.0, 3)}; "
          f"test observations per seed {[p['n_test'] for p in per_seed]}")
    print("(per observation, official definitions; * = the 95% interval excludes zero)")


if __name__ == "__main__":
    main()

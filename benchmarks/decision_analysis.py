"""Decision rules, cost matrices, the unknown detector and poison-head fusion, over seeds.

Per seed ``s`` (simulator, split and training seed): the store of
``ablation.build_seed``; a two-fold MLP ensemble of the full recipe trained with
``sporeprint.training.train_folds``; the app's ``ScoringModel`` (exact index of the
training images, calibration as ``sporeprint train`` records it by default); every
rule scored on the simulation's independent test draw (the 2024-style test role,
ingested without labels, its labels kept in memory; ``--eval part``: the held-out
``test`` part of the splits, ``--eval both``: the two), which no head, calibration or
threshold has seen.

Calibrating what is deployed (unless ``--no-calibration-compare``): the seed's
ensemble is trained twice with the same training seed, once on all of p1/p2
(calibration mode ``oof``) and once without the calibration slice (``holdout``), and
the Track 3 rule is scored under three calibrations, each with and without the
poison prior shift:

- heads on all of p1/p2, single-head out-of-fold calibration (the previous default);
- heads without the slice, single-head out-of-fold calibration (same heads as the
  next row: isolates the calibration method from the training data it costs);
- heads without the slice, calibrated on the deployed ensemble over the slice.

For each: NLL and ECE of the calibrated open-set probabilities (known species
``(1 - P(unknown)) · p``, plus ``P(unknown)``) on the test part, Track 1-3 of the
Track 3 rule, the unknown detector's test AUROC and poisonous-called-edible per
1,000; paired-bootstrap differences for the comparisons that decide the defaults.

Rules:

- plain argmax: the raw ensemble (mean image probabilities), no temperature, no
  poison prior shift, never "unknown";
- calibrated argmax: the app's ``argmax`` rule (temperature, then the poison
  prior shift; the temperature alone cannot change an argmax);
- argmax + calibrated unknown: the app's ``argmax_unknown`` rule;
- Track 3 rule: the app's default (expected-cost argmin);
- Track 3 rule with the poison prior shift (the calibration's ``poison_shift``,
  ``sporeprint train --poison-shift/--no-poison-shift``) set the other way from the
  default: the same heads and calibration, the shift applied or not;
- Track 3 rule + fused poison head: the poison probability of the Track 3 rule
  replaced by ``heads.calibration.PoisonFusion`` of (poison mass, the heads' poison
  logit), fitted out-of-fold: fold k's head on part p_k, the same parts and
  states as the rest of the calibration.

Each rule: mean ± sd over seeds and the paired-bootstrap difference against the
Track 3 rule (``benchmarks/stats.py``). Poison misses (poisonous test observations
answered edible or unknown) are counts k/n pooled over seeds with their exact
Clopper-Pearson 95% interval, beside how many observations were answered with a
poisonous species; with fewer than 100 poisonous test observations in all the count
is printed with "too few to claim" and no rate. Then the Track 3 rule replayed under
``sporeprint.decisions.COST_MATRICES`` with its answer mix, and the unknown
detector's AUROC on the held-out test part beside its validation AUROC.

    python benchmarks/decision_analysis.py [--seeds 0 1 2 3 4] [--epochs 5]
    python benchmarks/decision_analysis.py --quick
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablation import EVALUATIONS, SPACE, build_seed, load_seeds, save_seed, train_config  # noqa: E402
from stats import (  # noqa: E402
    auroc,
    clopper_pearson,
    ece,
    fmt_interval,
    fmt_mean_sd,
    metric,
    nll,
    paired_bootstrap,
    paired_interval,
)

from heads import HeadsError  # noqa: E402
from heads.calibration import PoisonFusion  # noqa: E402
from heads.classifier import Ensemble  # noqa: E402
from heads.decision import Costs, answer_mix, decide_summary, summarise  # noqa: E402
from heads.inference import aggregate_by_observation  # noqa: E402
from sporeprint.decisions import COST_MATRICES  # noqa: E402
from sporeprint.rows import load_rows  # noqa: E402
from sporeprint.scoring import ScoringModel  # noqa: E402
from sporeprint.scoring import calibration as calib  # noqa: E402
from sporeprint.scoring.observations import ObservationScores, observation_scores, uncertainty  # noqa: E402
from sporeprint.scoring.settings import DEFAULT_CALIBRATION, DEFAULT_POISON_SHIFT  # noqa: E402
from sporeprint.training import train_folds  # noqa: E402

PLAIN, CAL, UNK, T3, FUSED = ("plain argmax (raw ensemble)", "calibrated argmax",
                              "argmax + calibrated unknown", "Track 3 rule (default)",
                              "Track 3 rule + fused poison head")
# the Track 3 rule with the poison prior shift set the other way from the default
T3_OTHER = f"Track 3 rule, poison prior shift {'off' if DEFAULT_POISON_SHIFT else 'on'}"
RULES = (PLAIN, CAL, UNK, T3, T3_OTHER, FUSED)
MIN_POISONOUS = 100  # poisonous test observations a poison-miss claim needs

# calibration variants: (row name, training mode of the heads, calibration mode)
OLD = "heads on all of p1/p2, single-head OOF calibration"
OOF_SLICE = "heads without the slice, single-head OOF calibration"
HOLD = "heads without the slice, ensemble calibrated on the slice"
CAL_VARIANTS = ((OLD, "oof", "oof"), (OOF_SLICE, "holdout", "oof"), (HOLD, "holdout", "holdout"))
SHIFT = {True: "poison shift", False: "no poison shift"}


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
    """PoisonFusion fitted where the model's calibration was: on the ensemble over the
    calibration slice (mode ``holdout``), or out-of-fold, fold k's head on part p_k."""
    seed = fs.split_seed()
    mass, logit, truth = [], [], []
    if model.calibration.mode == "holdout":
        one_in = calib.run_settings(fs, model.members)["one_in"]
        rows, _ = load_rows(fs, SPACE, fs.calibration_observations(seed=seed, one_in=one_in))
        pieces = [(model.ensemble, [m.classifier for m in model.members], rows)]
    else:
        pieces = []
        for m in model.members:
            rows, _ = load_rows(fs, SPACE, fs.fold_observations(m.fold, seed=seed)["val"])
            pieces.append((Ensemble([m.classifier]), [m.classifier], rows))
    for one, classifiers, rows in pieces:
        s = observation_scores(one, rows)
        full = np.full((len(s.observation_ids), len(model.classes)), np.log(1e-12))
        full[:, np.searchsorted(model.classes, one.classes_[one.classes_ >= 0])] = s.log_probs
        s = ObservationScores(s.observation_ids, full, s.queries)
        summ, _ = summary_inputs(model, s)
        ids, z = poison_logit(classifiers, rows)
        mass.append(summ.poison_prob)
        logit.append(align(ids, z, s.observation_ids))
        truth.append(np.isin(fs.observation_class_ids(s.observation_ids), poison))
    return PoisonFusion().fit(np.concatenate(mass), np.concatenate(logit),
                              np.concatenate(truth))


def train_model(data, args, root: Path, mode: str) -> ScoringModel:
    """The seed's two-fold ensemble trained with calibration mode ``mode``, loaded."""
    cfg = train_config(args, "seesaw", "val_matched", 0.1, data.seed)
    t0 = time.time()
    runs = train_folds(data.store, SPACE, head="mlp", folds=[1, 2],
                       head_params={"hidden": args.hidden}, config=cfg,
                       out_dir=root / f"runs{data.seed}-{mode}", split_seed=data.seed,
                       calibration=mode, poison_shift=DEFAULT_POISON_SHIFT)
    calib.fit_and_record(data.store, [runs[-1].run_id])  # as `sporeprint train` ends
    time.sleep(max(0.0, 1.05 - (time.time() - t0)))  # run ids carry a one-second stamp
    return ScoringModel.load(data.store, [runs[-1].run_id])


def calibration_record(model: ScoringModel, scores, knn, truth: np.ndarray) -> dict:
    """Per test observation, what the calibration table needs from one variant."""
    d = model.decide(scores, "track3", knn)
    known = np.isin(truth, model.classes)
    col = np.searchsorted(model.classes, np.where(known, truth, model.classes[0]))
    joint = d.probs * (1.0 - d.unknown_prob)[:, None]
    p_true = np.where(known, joint[np.arange(len(truth)), col], d.unknown_prob)
    top = joint.max(1)
    answer = np.where(d.unknown_prob >= top, -1, model.classes[joint.argmax(1)])
    return {"pred": d.class_id, "p_true": p_true, "conf": np.maximum(top, d.unknown_prob),
            "correct": answer == np.where(known, truth, -1), "score": d.unknown_score,
            "unknown": ~known}


def compare_calibrations(data, args, root: Path, first: ScoringModel, test_ids) -> dict:
    """Records of every (calibration variant, poison shift) on the test part."""
    fs = data.store
    models = {first.calibration.mode: first}
    other = "oof" if first.calibration.mode == "holdout" else "holdout"
    models[other] = train_model(data, args, root, other)
    scored = {mode: m.scores(fs, test_ids)[0] for mode, m in models.items()}
    ids = scored["oof"].observation_ids
    assert np.array_equal(ids, scored["holdout"].observation_ids)
    truth = data.truth_of(ids)
    model = models["holdout"]
    k = model.calibration.detector_for(model.index).k
    knn = model.neighbours.search(scored["holdout"].queries, 5, k).unknown_score
    out = {}
    for name, trained, mode in CAL_VARIANTS:
        m = models[trained]
        cal = m.calibration if mode == trained else calib.calibrate(
            fs, m.members, m.ensemble, m.poisonous, m.index, SPACE, mode=mode)
        for shift in (True, False):
            variant = copy.copy(m)
            variant.calibration = replace(cal, poison_shift=shift)
            out[(name, shift)] = calibration_record(variant, scored[trained], knn, truth)
        out[(name, "temperature")] = cal.temperature_scaler.temperature_
        out[(name, "bias")] = cal.fitted_prior.bias_
    out["truth"] = truth
    return out


def run_seed(data, args, root: Path) -> dict:
    fs = data.store
    model = train_model(data, args, root, DEFAULT_CALIBRATION)
    test_ids = data.test_ids
    scores, rows = model.scores(fs, test_ids)
    truth = data.truth_of(scores.observation_ids)
    summ, knn = summary_inputs(model, scores)
    out = {"truth": truth, PLAIN: model.classes[scores.log_probs.argmax(1)]}
    for name, rule in ((CAL, "argmax"), (UNK, "argmax_unknown"), (T3, "track3")):
        out[name] = model.decide(scores, rule, knn).class_id
    d3 = decide_summary(summ)
    assert np.array_equal(d3.class_id, out[T3]), "the replayed rule must equal the app's"
    other = copy.copy(model)
    other.calibration = replace(model.calibration, poison_shift=not DEFAULT_POISON_SHIFT)
    out[T3_OTHER] = other.decide(scores, "track3", knn).class_id
    unknown_score = model.decide(scores, "track3", knn).unknown_score
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
        named = np.isin(d.class_id, data.poison)
        mix = answer_mix(d.kind)
        out[f"mix {label}"] = {"edible species": int(((d.class_id >= 0) & ~named).sum()),
                               "poisonous species": int(named.sum()), "unknown": mix["unknown"],
                               "raised for poison risk": mix["poison_risk"]}
    out["auroc_test"] = auroc(unknown_score, ~np.isin(truth, model.classes))
    out["auroc_val"] = float(model.calibration.metrics.get("auroc", float("nan")))
    out["n_test"] = len(truth)
    if args.calibration_compare:
        out["calibration"] = compare_calibrations(data, args, root, model, test_ids)
    return out


def poison_misses(pairs) -> tuple[int, int, int, int]:
    """Pooled over seeds: ``(k, n, called, total)``: k of the n poisonous test observations
    answered edible or unknown, and how many of all ``total`` observations were answered
    with a poisonous species. ``pairs``: one ``(truth, prediction, poisonous ids)`` per
    seed."""
    k = n = called = total = 0
    for truth, pred, pois in pairs:
        tp, pp = np.isin(truth, pois), np.isin(pred, pois)
        k, n = k + int((tp & ~pp).sum()), n + int(tp.sum())
        called, total = called + int(pp.sum()), total + len(truth)
    return k, n, called, total


def fmt_misses(k: int, n: int) -> str:
    """``4/84 ...``: the count with its Clopper-Pearson 95% interval, or, under
    ``MIN_POISONOUS`` poisonous observations, the count and that it is too few to claim."""
    if n < MIN_POISONOUS:
        return f"{k}/{n} (too few to claim: {n} < {MIN_POISONOUS} poisonous test observations)"
    lo, hi = clopper_pearson(k, n)
    return f"{k}/{n} = {100 * k / n:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def miss_cells(pairs) -> list[str]:
    k, n, called, total = poison_misses(pairs)
    return [fmt_misses(k, n), f"{called}/{total} = {100 * called / max(total, 1):.1f}%"]


def rule_table(per_seed, poison, reps) -> str:
    metrics = ("track1", "track2", "track3", "macro_f1")
    lines = ["| rule | Track 1 | Track 2 | Track 3 | macro F1 | poisonous answered edible or "
             "unknown, pooled over seeds (k/n, % [95% Clopper-Pearson]) | answered poisonous | "
             "Δ Track 3 vs Track 3 rule [95% CI] | Δ Track 2 [95% CI] | Δ macro F1 [95% CI] |",
             "|" + "---|" * 10]
    for name in RULES:
        cells = [name]
        for m in metrics:
            vals = [metric(m, p["truth"], p[name], pz) for p, pz in zip(per_seed, poison,
                                                                         strict=True)]
            cells.append(fmt_mean_sd(vals, 1.0, 1 if m == "macro_f1" else 3))
        cells += miss_cells([(p["truth"], p[name], pz) for p, pz in zip(per_seed, poison,
                                                                         strict=True)])
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


CAL_METRICS = (("NLL", 3), ("ECE", 3), ("track1", 3), ("track2", 3), ("track3", 3),
               ("AUROC", 3))
# (A, B): the difference A - B of each calibration comparison
CAL_COMPARISONS = (
    ((HOLD, False), (OLD, False)), ((HOLD, True), (OLD, True)),
    ((HOLD, False), (OOF_SLICE, False)), ((HOLD, True), (OOF_SLICE, True)),
    ((OOF_SLICE, False), (OLD, False)), ((OOF_SLICE, True), (OLD, True)),
    ((HOLD, True), (HOLD, False)), ((OLD, True), (OLD, False)),
)


def cal_value(name: str, r: dict, truth: np.ndarray, poison: np.ndarray,
              idx: np.ndarray | None = None) -> float:
    """One figure of a calibration record (on the observations ``idx``)."""
    i = np.arange(len(truth)) if idx is None else idx
    if name == "NLL":
        return nll(r["p_true"][i])
    if name == "ECE":
        return ece(r["conf"][i], r["correct"][i])
    if name == "AUROC":
        return auroc(r["score"][i], r["unknown"][i])
    return metric(name, truth[i], r["pred"][i], poison)


def cal_label(key) -> str:
    return f"{key[0]}, {SHIFT[key[1]]}"


def calibration_tables(per_seed, poison, reps) -> str:
    recs = [p["calibration"] for p in per_seed]
    heads = ["NLL", "ECE", "Track 1", "Track 2", "Track 3", "test AUROC"]
    lines = ["| calibration | " + " | ".join(heads) + " | poisonous answered edible or unknown, "
             "pooled | answered poisonous | temperature | poison shift b |",
             "|" + "---|" * (len(heads) + 5)]
    for name, _, _ in CAL_VARIANTS:
        for shift in (True, False):
            cells = [cal_label((name, shift))]
            for m, digits in CAL_METRICS:
                cells.append(fmt_mean_sd([cal_value(m, r[(name, shift)], r["truth"], pz)
                                          for r, pz in zip(recs, poison, strict=True)],
                                         1.0, digits))
            cells += miss_cells([(r["truth"], r[(name, shift)]["pred"], pz)
                                 for r, pz in zip(recs, poison, strict=True)])
            cells.append(fmt_mean_sd([r[(name, "temperature")] for r in recs], 1.0, 2))
            cells.append(fmt_mean_sd([r[(name, "bias")] for r in recs], 1.0, 2)
                         + (" (applied)" if shift else " (not applied)"))
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| difference A − B [95% CI] | " + " | ".join("Δ " + h for h in heads) + " |",
              "|" + "---|" * (len(heads) + 1)]
    for a, b in CAL_COMPARISONS:
        cells = [f"A = {cal_label(a)}; B = {cal_label(b)}"]
        for m, digits in CAL_METRICS:
            def diff(r, pz, m=m, a=a, b=b):
                ra, rb, y = r[a], r[b], r["truth"]
                return len(y), lambda i: (cal_value(m, ra, y, pz, i)
                                          - cal_value(m, rb, y, pz, i))
            cells.append(fmt_interval(paired_bootstrap(
                [diff(r, pz) for r, pz in zip(recs, poison, strict=True)], reps=reps),
                1.0, digits))
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
    ap.add_argument("--eval", default="role", choices=EVALUATIONS,
                    help="test observations: role (the simulation's independent test draw, "
                         "labels in memory), part (the held-out part test of the splits), both")
    ap.add_argument("--no-calibration-compare", dest="calibration_compare",
                    action="store_false", help="skip the second training per seed and the "
                    "calibration comparison")
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
          f"seesaw + val-matched sampler + poison term; seeds {args.seeds}; default "
          f"calibration {DEFAULT_CALIBRATION}, poison shift "
          f"{'on' if DEFAULT_POISON_SHIFT else 'off'}; evaluated on {args.eval}")
    print(setting, flush=True)
    per_seed, poison = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            data = build_seed(Path(tmp), seed, args.scale, args.dim, args.classes,
                              args.count_scale, args.eval)
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
    if all("calibration" in p for p in per_seed):
        print()
        print("Calibrating what is deployed; the poison prior shift (Track 3 rule, test "
              "observations):")
        print(calibration_tables(per_seed, poison, reps))
    print("(per observation, official definitions; * = the 95% interval excludes zero)")


if __name__ == "__main__":
    main()

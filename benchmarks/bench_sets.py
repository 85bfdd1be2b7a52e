"""Conformal prediction sets over seeds: coverage, set size, poison misses, genus answers.

Per seed ``s`` (simulator, split and training seed): the store of
``ablation.build_seed``; a two-fold MLP ensemble trained with the calibration slice held
out (``sporeprint.training.train_folds(..., calibration="holdout")``) and calibrated as
``sporeprint train --calibration holdout`` records it, so the calibration record holds
the slice's conformal scores; the app's ``ScoringModel`` deciding the held-out ``test``
part, which no head, calibration or threshold has seen, and the simulation's independent
test draw (shifted from the validation period: the guarantee assumes exchangeability, so
coverage there says what a shift costs).

Reported on each, at each level of ``--levels`` (default 0.8, 0.9, 0.95):

- empirical coverage (the true species, or "not in the model" for an unseen one, in the
  set): per seed with its exact Clopper–Pearson 95% interval, the mean over seeds, and
  the pooled share with its interval;
- mean and median set size;
- the poison miss rate (truly poisonous observations answered edible or unknown) of the
  set rule (Track 3 plus the poison check of the sets, poison set at
  ``--poison-coverage``) beside the Track 3 rule alone and the calibrated argmax, and
  Track 1-3 of each (official definitions, ``heads.metrics.fungiclef_scores``);
- the share of genus answers (``answer_rank == "genus"``) and how often their genus is
  the true species' genus.

    python benchmarks/bench_sets.py [--seeds 0 1 2 3 4] [--epochs 8]
    python benchmarks/bench_sets.py --small --seeds 0      # a fast run, one seed
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablation import SPACE, build_seed, train_config  # noqa: E402

from heads.metrics import clopper_pearson, fungiclef_scores  # noqa: E402
from sporeprint.scoring import ScoringModel  # noqa: E402
from sporeprint.scoring import calibration as calib  # noqa: E402
from sporeprint.scoring.model import N_EVIDENCE  # noqa: E402
from sporeprint.scoring.settings import DEFAULT_POISON_SHIFT  # noqa: E402
from sporeprint.training import train_folds  # noqa: E402

SET, T3, ARGMAX = "set rule (Track 3 + poison check of the sets)", "Track 3 rule", \
    "calibrated argmax"


def train_holdout(data, args, root: Path) -> ScoringModel:
    """The seed's two-fold ensemble trained without the calibration slice, calibrated on it."""
    cfg = train_config(args, "seesaw", "val_matched", 0.1, data.seed)
    t0 = time.time()
    runs = train_folds(data.store, SPACE, head="mlp", folds=[1, 2],
                       head_params={"hidden": args.hidden}, config=cfg,
                       out_dir=root / f"runs{data.seed}", split_seed=data.seed,
                       calibration="holdout", poison_shift=DEFAULT_POISON_SHIFT)
    calib.fit_and_record(data.store, [runs[-1].run_id])
    time.sleep(max(0.0, 1.05 - (time.time() - t0)))  # run ids carry a one-second stamp
    return ScoringModel.load(data.store, [runs[-1].run_id])


def poison_misses(truth: np.ndarray, answer: np.ndarray, poison: np.ndarray) -> tuple[int, int]:
    """``(missed, poisonous)``: truly poisonous observations answered edible or unknown."""
    pois = np.isin(truth, poison)
    return int((pois & ~np.isin(answer, poison)).sum()), int(pois.sum())


def run_seed(data, args, root: Path) -> dict:
    """``{evaluation: figures}``: one holdout ensemble, scored on the splits' test part
    (``part``: exchangeable with the calibration slice, where the guarantee applies)
    and on the simulation's independent, shifted test draw (``role``)."""
    model = train_holdout(data, args, root)
    part = data.store.fold_observations(1)["test"]
    out = {"part": evaluate(data, args, model, part,
                            lambda ids: data.store.observation_class_ids(ids))}
    if "role" in args.eval:
        out["role"] = evaluate(data, args, model, data.test_ids, data.truth_of)
    return out


def evaluate(data, args, model: ScoringModel, test_ids: np.ndarray, truth_of) -> dict:
    fs = data.store
    cal = model.calibration
    scores, _ = model.scores(fs, test_ids)
    truth = truth_of(scores.observation_ids)
    option = np.where(np.isin(truth, model.classes), truth, -1)
    near = model.neighbours.search(scores.queries, N_EVIDENCE, cal.detector["k"])
    knn, evidence = near.unknown_score, near.observation_ids
    taxa = fs.species_table()
    genus_of = dict(zip(taxa.column("class_id").to_pylist(), taxa.column("genus").to_pylist(),
                        strict=True))
    true_genus = np.array([genus_of.get(int(t)) if t >= 0 else None for t in truth], dtype=object)
    out = {"n_test": len(truth), "n_cal": len(cal.conformal["scores"]),
           "n_cal_poisonous": len(cal.conformal["poisonous_scores"]), "levels": {}}
    rules = {T3: model.decide(scores, "track3", knn, evidence, coverage=0).class_id,
             ARGMAX: model.decide(scores, "argmax", knn, evidence, coverage=0).class_id}
    for name, answer in rules.items():
        out[name] = {**fungiclef_scores(truth, answer, data.poison),
                     "miss": poison_misses(truth, answer, data.poison)}
    for level in args.levels:
        d = model.decide(scores, "track3", knn, evidence, coverage=level,
                         poison_coverage=args.poison_coverage)
        if d.sets is None:
            out["levels"][level] = {"why": d.coverage_note}
            continue
        sets = d.sets
        hit = np.array([o in s for o, s in zip(option, sets.prediction_set, strict=True)])
        rank = np.array(sets.answer_rank, dtype=object)
        genus = np.array(sets.genus, dtype=object)
        is_genus = rank == "genus"
        out["levels"][level] = {
            "covered": int(hit.sum()), "n": len(hit),
            "covered_poisonous": int(hit[np.isin(truth, data.poison)].sum()),
            "size_mean": float(sets.set_size.mean()),
            "size_median": float(np.median(sets.set_size)),
            "genus_share": float(is_genus.mean()),
            "genus_right": (float((genus[is_genus] == true_genus[is_genus]).mean())
                            if is_genus.any() else float("nan")),
            SET: {**fungiclef_scores(truth, d.class_id, data.poison),
                  "miss": poison_misses(truth, d.class_id, data.poison)},
            "note": d.coverage_note}
    return out


def _ms(values, fmt="{:.3f}") -> str:
    v = np.array([x for x in values if x == x], dtype=float)
    if not len(v):
        return "—"
    return (fmt.format(v.mean()) + (" ± " + fmt.format(v.std(ddof=1)) if len(v) > 1 else ""))


def report(per_seed: list[dict], seeds: list[int], args) -> None:
    print(f"\ntest observations per seed: {[p['n_test'] for p in per_seed]}; calibration slice "
          f"{[p['n_cal'] for p in per_seed]} (poisonous {[p['n_cal_poisonous'] for p in per_seed]};"
          f" a poison coverage above n/(n+1) cannot be promised, and the check then reads the "
          "set alone)")
    print("\n| level | coverage per seed [95% CP] | mean over seeds | pooled [95% CP] | "
          "set size mean | median | genus answers | genus right |")
    print("|---|---|---|---|---|---|---|---|")
    for level in args.levels:
        rows = [p["levels"][level] for p in per_seed]
        if any("why" in r for r in rows):
            why = next(r["why"] for r in rows if "why" in r)
            print(f"| {level:.0%} | no sets: {why} | | | | | | |")
            continue
        per = []
        for seed, r in zip(seeds, rows, strict=True):
            lo, hi = clopper_pearson(r["covered"], r["n"])
            per.append(f"s{seed} {r['covered'] / r['n']:.3f} [{lo:.3f}, {hi:.3f}]")
        k, n = sum(r["covered"] for r in rows), sum(r["n"] for r in rows)
        lo, hi = clopper_pearson(k, n)
        print(f"| {level:.0%} | {'; '.join(per)} | "
              f"{_ms([r['covered'] / r['n'] for r in rows])} | {k / n:.3f} [{lo:.3f}, {hi:.3f}] | "
              f"{_ms([r['size_mean'] for r in rows], '{:.2f}')} | "
              f"{_ms([r['size_median'] for r in rows], '{:.1f}')} | "
              f"{_ms([r['genus_share'] for r in rows])} | "
              f"{_ms([r['genus_right'] for r in rows])} |")
    print(f"\nPoison misses (truly poisonous answered edible or unknown) and Track 1-3, mean ± sd "
          f"over seeds; the set rule's poison set at poison coverage {args.poison_coverage}:")
    print("\n| rule | poison miss rate | pooled misses / poisonous [95% CP] | Track 1 | "
          "Track 2 | Track 3 |")
    print("|---|---|---|---|---|---|")

    def row(name, recs):
        missed = [r["miss"][0] for r in recs]
        total = [r["miss"][1] for r in recs]
        k, n = sum(missed), sum(total)
        lo, hi = clopper_pearson(k, n)
        rates = [m / t if t else float("nan") for m, t in zip(missed, total, strict=True)]
        print(f"| {name} | {_ms(rates)} | {k} / {n} [{lo:.3f}, {hi:.3f}] | "
              f"{_ms([r['track1'] for r in recs], '{:.4f}')} | "
              f"{_ms([r['track2'] for r in recs], '{:.4f}')} | "
              f"{_ms([r['track3'] for r in recs], '{:.4f}')} |")

    row(ARGMAX, [p[ARGMAX] for p in per_seed])
    row(T3, [p[T3] for p in per_seed])
    for level in args.levels:
        recs = [p["levels"][level] for p in per_seed]
        if not any("why" in r for r in recs):
            row(f"{SET}, {level:.0%}", [r[SET] for r in recs])
    notes = {r.get("note") for p in per_seed for r in p["levels"].values() if r.get("note")}
    for n in sorted(notes):
        print(f"note: {n}")


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
    ap.add_argument("--levels", type=float, nargs="+", default=[0.8, 0.9, 0.95])
    ap.add_argument("--poison-coverage", type=float, default=0.99)
    ap.add_argument("--eval", nargs="+", default=["part", "role"], choices=["part", "role"],
                    help="where to measure: part (the splits' test part, exchangeable with "
                         "the calibration slice) and/or role (the shifted test draw)")
    ap.add_argument("--small", action="store_true",
                    help="a fast run: 70 classes, count scale 0.1, 64-d, 2 epochs, hidden 64")
    args = ap.parse_args(argv)
    if args.small:
        args.classes, args.count_scale, args.dim = 70, 0.1, 64
        args.epochs, args.hidden = 2, 64
    t0 = time.perf_counter()
    print(f"scale {args.scale}, classes {args.classes or 'scale default'}, {args.dim}-d, count "
          f"scale {args.count_scale or 'scale default'}; 2-fold MLP ensemble hidden "
          f"{args.hidden}, {args.epochs} epochs, lr {args.lr:g}, calibration holdout; seeds "
          f"{args.seeds}; levels {args.levels}, poison coverage {args.poison_coverage}",
          flush=True)
    per_seed = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            data = build_seed(Path(tmp), seed, args.scale, args.dim, args.classes,
                              args.count_scale)
            print("  " + data.summary, flush=True)
            per_seed.append(run_seed(data, args, Path(tmp)))
            data.store.close()
    for name, what in (("part", "the splits' held-out test part (exchangeable with the "
                                "calibration slice)"),
                       ("role", "the independent test draw (shifted: 40% unknown, 3% "
                                "poisonous, a later year)")):
        if name in args.eval:
            print(f"\n=== evaluated on {what} ===")
            report([r[name] for r in per_seed], args.seeds, args)
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()

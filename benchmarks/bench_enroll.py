"""Enrolling unseen species from a few expert-labelled observations, measured in the
FungiCLEF 2025 way on the simulator.

Per seed ``s`` (simulator, split and training seed): ``simulate(SimConfig(scale, seed=s))``
is ingested into a DuckDB store as the other benchmarks do (roles train and val, the
metadata encoder, the seeded validation splits); a two-fold MLP ensemble is trained with
``sporeprint.training.train_folds`` and calibrated as ``sporeprint train`` ends (the demo's
recipe, with ``--epochs`` epochs per fold); the simulator's separate test draw
(``test_2024.csv`` and its vectors) is ingested as a batch to score, role ``new``. Its
truth, unknown species included, is ``Simulation.test_species_truth()``.

Then, for each shot count k (1, 2, 4): every unseen species (one the heads never saw)
with at least k observations in the val role is enrolled from k of them, drawn at
random (seeded), through ``sporeprint.enrollment.enroll`` with a labels file of
observation id and species name only (so no enrolled species has a poison status: all
are treated as possibly poisonous); the model is loaded as the app loads it (enrolled
prototypes and their membership calibration), the test draw is scored with the default
Track 3 rule, and the enrollment is undone before the next k. On the test draw:

- enrolled species (test observations whose true species was enrolled): Recall@5 and
  top-1 of the answer's species ranking (the options' probabilities: trained and
  enrolled species, before the decision rule), beside two training-free baselines
  ranking the same options: the plain **prototype** (nearest class mean, cosine, over
  observation vectors: trained species from their training observations, enrolled
  ones from their enrolled observations) and **1-NN** (the nearest such observation);
  and the prototype among the enrolled species only (a closed-set reference). The
  species enrolled differ with k (fewer have 4 val observations), so the species
  eligible at the largest k (enrolled at every k) are reported apart too;
- trained species: top-1 before and after enrolling, on the same test observations
  (PASS when the mean drop is at most 1 point);
- the unknown AUROC (P(unknown) of the answer; unknown = a species neither trained nor
  enrolled, against trained-species observations; enrolled species' observations left
  out), before and after enrolling, on the same observations;
- the poison side: answers that would call an enrolled species without a poison status
  edible (the answer or the best edible option naming it; must be 0, PASS/FAIL), test
  observations of enrolled species answered with an edible species or "unknown"
  (which the Track 3 rule treats as edible), and the share of ``poison_risk`` answers,
  before and after.

Each figure: the mean over seeds with a 95% bootstrap interval (``benchmarks/stats.py``
``paired_bootstrap``: each seed's test observations resampled, seeds weighted equally;
differences paired on the same resampled observations), then the value per seed.

    python benchmarks/bench_enroll.py [--seeds 0 1 2] [--scale small] [--epochs 12]
    python benchmarks/bench_enroll.py --small      # a smoke run: one seed, few epochs
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stats import auroc, paired_bootstrap  # noqa: E402

from heads.decision import POISON_RISK  # noqa: E402
from heads.train import TrainConfig  # noqa: E402
from sporeprint.enrollment import enroll, undo  # noqa: E402
from sporeprint.scoring import ScoringModel  # noqa: E402
from sporeprint.scoring.calibration import fit_and_record  # noqa: E402
from sporeprint.simulator.simulate import (  # noqa: E402
    SimConfig,
    ingest_simulation,
    simulate,
    write_simulation,
)
from sporeprint.training import train_folds  # noqa: E402
from store import FeatureStore  # noqa: E402

SPACE = "sim"
SHOTS = (1, 2, 4)
DEFAULT_EPOCHS = 12  # the demo's at scale small
METHODS = ("sporeprint (heads + enrolled prototypes)", "prototype (nearest class mean)",
           "1-NN", "prototype, enrolled species only")
OURS, PROTO, NN, PROTO_ONLY = METHODS


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def observation_vectors(vectors: np.ndarray, image_obs: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """``(observation ids, query vectors)``: per observation the normalised mean of its
    normalised image vectors (the query scoring makes)."""
    obs, inverse = np.unique(image_obs, return_inverse=True)
    sums = np.zeros((len(obs), vectors.shape[1]), np.float64)
    np.add.at(sums, inverse, _unit(vectors.astype(np.float64)))
    return obs.astype(np.int64), _unit(sums)


def first_rows(table: pa.Table) -> pa.Table:
    """One row per observation (its first image's)."""
    _, first = np.unique(np.asarray(table["observationID"]), return_index=True)
    return table.take(np.sort(first))


def ranking(scores: np.ndarray, classes: np.ndarray, k: int = 5) -> np.ndarray:
    """(n, k) the classes of the k highest scores per row, best first."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, 1).argsort(1)[:, ::-1]
    return classes[np.take_along_axis(top, order, 1)]


def hits(top: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Per observation: top-1 and Recall@5 hits (bool arrays)."""
    return {"top1": top[:, 0] == truth, "r5": (top == truth[:, None]).any(1)}


def answered_edible(decided, no_status: np.ndarray) -> tuple[int, int]:
    """``(answers naming an enrolled species with no poison status as an edible answer,
    best edible options naming one)``; both must be 0."""
    col = np.searchsorted(decided.classes, np.where(decided.class_id >= 0, decided.class_id,
                                                     decided.classes[0]))
    named = (decided.class_id >= 0) & np.isin(decided.class_id, no_status)
    as_edible = named & ~decided.poisonous[col]
    best_edible = np.isin(decided.summary.best_edible_class, no_status)
    return int(as_edible.sum()), int(best_edible.sum())


def edible_or_unknown(decided) -> np.ndarray:
    """Per answer: an edible species or "unknown" (both count as edible for Track 3)."""
    col = np.searchsorted(decided.classes, np.where(decided.class_id >= 0, decided.class_id,
                                                     decided.classes[0]))
    return (decided.class_id < 0) | ~decided.poisonous[col]


def build(seed: int, root: Path, scale: str, epochs: int, classes: int | None = None,
          dim: int | None = None, count_scale: float | None = None, hidden: int | None = None):
    """Simulate, ingest, train and calibrate one seed; ingest its test draw as a batch.
    Returns ``(sim, store, run id, test observation ids, seconds)``."""
    t0 = time.perf_counter()
    kw = {"dim": dim} if dim else {}
    sim = simulate(SimConfig(scale=scale, seed=seed, classes=classes, count_scale=count_scale,
                             **kw))
    files = write_simulation(sim, root / f"sim{seed}")
    fs = FeatureStore(root / f"seed{seed}.duckdb")
    ingest_simulation(fs, files, SPACE, seed, model_id="simulator")
    runs = train_folds(fs, SPACE, head="mlp", folds=[1, 2],
                       head_params={"hidden": hidden} if hidden else None,
                       config=TrainConfig(epochs=epochs, seed=seed, progress=False),
                       out_dir=root / f"runs{seed}", split_seed=seed)
    run = runs[-1].run_id
    fit_and_record(fs, [run])  # as `sporeprint train` ends
    batch = fs.ingest_batch(files["test"], files["embeddings_test"], SPACE, role="new")
    test_ids = np.sort(np.asarray(batch.metadata.observation_ids, np.int64))
    fs.encode_observations(test_ids)
    return sim, fs, run, test_ids, time.perf_counter() - t0


def run_seed(seed: int, root: Path, scale: str = "small", shots=SHOTS,
             epochs: int = DEFAULT_EPOCHS, classes: int | None = None, dim: int | None = None,
             count_scale: float | None = None, hidden: int | None = None,
             say=print) -> dict:
    """One seed's record: per-observation hit arrays and counts (see the module doc)."""
    sim, fs, run, test_ids, build_s = build(seed, root, scale, epochs, classes, dim,
                                            count_scale, hidden)
    t0 = time.perf_counter()
    try:
        rec = _measure(sim, fs, run, test_ids, seed, root, shots)
    finally:
        fs.close()
    rec.update(seed=seed, build_seconds=build_s, measure_seconds=time.perf_counter() - t0,
               epochs=epochs)
    say(f"seed {seed}: {rec['summary']} (build and train {build_s:.0f} s, enroll and score "
        f"{rec['measure_seconds']:.0f} s)")
    return rec


def _measure(sim, fs, run: str, test_ids: np.ndarray, seed: int, root: Path, shots) -> dict:
    rng = np.random.default_rng([seed, 2025])
    model = ScoringModel.load(fs, [run])
    trained = model.classes
    scores, _ = model.scores(fs, test_ids)
    ids = scores.observation_ids
    truth_t = sim.test_species_truth()
    order = np.argsort(truth_t["observation_id"].to_numpy())
    pos = order[np.searchsorted(truth_t["observation_id"].to_numpy()[order], ids)]
    true_cls = truth_t["class_id"].to_numpy()[pos]
    true_name = np.asarray(truth_t["species"].to_pylist(), dtype=object)[pos]
    is_trained = np.isin(true_cls, trained)
    unseen = ~is_trained

    before = model.decide(scores, "track3")
    top_before = ranking(before.probs, before.classes)
    trained_before = top_before[is_trained, 0] == true_cls[is_trained]

    # reference vectors from the simulation in memory: training observations and val ones
    roles = np.asarray(sim.image_roles)
    tr = roles == "train"
    tr_obs, tr_q = observation_vectors(sim.vectors[tr], sim.image_observation_ids[tr])
    tr_first = {}
    for o, c in zip(sim.image_observation_ids[tr], sim.image_class_ids[tr], strict=True):
        tr_first.setdefault(int(o), int(c))
    tr_cls = np.asarray([tr_first[int(o)] for o in tr_obs], np.int64)
    va = roles == "val"
    va_obs, va_q = observation_vectors(sim.vectors[va], sim.image_observation_ids[va])
    va_row = {int(o): i for i, o in enumerate(va_obs)}
    proto_classes = np.unique(tr_cls[tr_cls >= 0])
    proto_trained = _unit(np.stack([tr_q[tr_cls == c].mean(0) for c in proto_classes]))
    q = _unit(scores.queries.astype(np.float64))

    # the unseen species' val observations, from the simulation's labels
    val = first_rows(sim.val)
    unk_val = val.filter(pc.equal(val["class_id"], -1))
    by_species: dict[str, list[int]] = {}
    for o, s in zip(unk_val["observationID"].to_pylist(), unk_val["species"].to_pylist(),
                    strict=True):
        by_species.setdefault(s, []).append(int(o))
    names = sorted(by_species)
    poison_of = dict(zip(sim.species["species"].to_pylist(),
                         sim.species["poisonous"].to_pylist(), strict=True))
    true_poison = np.asarray([bool(poison_of.get(n, False)) for n in true_name], bool)
    every_k = {s for s in names if len(by_species[s]) >= max(shots)}

    rec = {"n_test": int(len(ids)), "n_trained_test": int(is_trained.sum()),
           "n_unseen_test": int(unseen.sum()), "n_unseen_val_species": len(names),
           "trained_before": trained_before,
           "poison_risk_before": np.asarray(before.kind) == POISON_RISK, "k": {}}
    rec["summary"] = (f"{len(trained)} trained species, {len(ids)} test observations "
                      f"({int(is_trained.sum())} of trained species, {int(unseen.sum())} of "
                      f"unseen ones), {len(names)} unseen species in val")
    for k in shots:
        chosen = [s for s in names if len(by_species[s]) >= k]
        picked = {s: sorted(rng.choice(by_species[s], k, replace=False).tolist())
                  for s in chosen}
        labels = root / f"experts{seed}-k{k}.csv"
        pacsv.write_csv(pa.table({
            "observation_id": pa.array([o for s in chosen for o in picked[s]], pa.int64()),
            "species": [s for s in chosen for _ in picked[s]]}), labels)
        report, _ = enroll(fs, labels, "bench_enroll")
        cls_of = {n: c for c, n in report.new_species + report.joined}
        no_status = np.asarray([c for c, _ in report.new_species], np.int64)
        after_model = ScoringModel.load(fs, [run])
        after = after_model.decide(scores, "track3")
        undo(fs, report.enrollment_id, "bench_enroll")
        again = ScoringModel.load(fs, [run]).decide(scores, "track3")
        restored = bool(np.array_equal(again.class_id, before.class_id)
                        and np.array_equal(again.probs, before.probs)
                        and np.array_equal(again.unknown_prob, before.unknown_prob))

        # the same enrollment with the experts stating each species' poison status
        status = [("yes" if poison_of[s] else "no") for s in chosen for _ in picked[s]]
        stated_labels = root / f"experts{seed}-k{k}-status.csv"
        pacsv.write_csv(pa.table({
            "observation_id": pa.array([o for s in chosen for o in picked[s]], pa.int64()),
            "species": [s for s in chosen for _ in picked[s]], "poisonous": status}),
            stated_labels)
        stated_report, _ = enroll(fs, stated_labels, "bench_enroll")
        stated = ScoringModel.load(fs, [run]).decide(scores, "track3")
        undo(fs, stated_report.enrollment_id, "bench_enroll")

        enrolled_cls = np.asarray([cls_of.get(n, -2) if u else -2
                                   for n, u in zip(true_name, unseen, strict=True)], np.int64)
        is_enrolled = enrolled_cls >= 0
        truth_e = enrolled_cls[is_enrolled]
        same = np.asarray([n in every_k for n in true_name[is_enrolled]], bool)
        e_classes = np.asarray([cls_of[s] for s in chosen], np.int64)
        protos = _unit(np.stack([va_q[[va_row[o] for o in picked[s]]].mean(0) for s in chosen]))
        shot_q = np.concatenate([va_q[[va_row[o] for o in picked[s]]] for s in chosen])
        shot_cls = np.repeat(e_classes, k)
        qe = q[is_enrolled]
        all_cls = np.concatenate([proto_classes, e_classes])
        methods = {
            OURS: ranking(after.probs[is_enrolled], after.classes),
            PROTO: ranking(qe @ np.concatenate([proto_trained, protos]).T, all_cls),
            NN: _nn_ranking(qe, np.concatenate([tr_q, shot_q]),
                            np.concatenate([tr_cls, shot_cls])),
            PROTO_ONLY: ranking(qe @ protos.T, e_classes),
        }
        top_after = ranking(after.probs, after.classes)
        not_enrolled = unseen & ~is_enrolled
        keep = is_trained | not_enrolled  # the AUROC's observations: enrolled ones left out
        as_edible, best_edible = answered_edible(after, no_status)
        rec["k"][k] = {
            "n_species": len(chosen), "n_enrolled_obs": len(chosen) * k,
            "n_test": int(is_enrolled.sum()), "n_species_in_test": len(np.unique(truth_e)),
            "same_species": same, "n_still_unknown_test": int(not_enrolled.sum()),
            "methods": {m: hits(top, truth_e) for m, top in methods.items()},
            "trained_after": top_after[is_trained, 0] == true_cls[is_trained],
            "auroc_before": before.unknown_prob[keep], "auroc_after": after.unknown_prob[keep],
            "auroc_positive": not_enrolled[keep],
            "no_status_as_edible": as_edible, "no_status_best_edible": best_edible,
            "enrolled_edible_before": edible_or_unknown(before)[is_enrolled],
            "enrolled_edible_after": edible_or_unknown(after)[is_enrolled],
            "poison_risk_after": np.asarray(after.kind) == POISON_RISK,
            "poison_risk_stated": np.asarray(stated.kind) == POISON_RISK,
            "n_poisonous_species": int(sum(poison_of[s] for s in chosen)),
            "poisonous_as_edible_stated": int((edible_or_unknown(stated)[is_enrolled]
                                               & true_poison[is_enrolled]).sum()),
            "undo_restores": restored,
            "enrolled_in_model": int(len(after_model.enrolled or [])),
        }
    return rec


def _nn_ranking(queries: np.ndarray, refs: np.ndarray, ref_cls: np.ndarray, k: int = 5
                ) -> np.ndarray:
    """(n, k) classes by their nearest reference observation, best first."""
    sims = queries @ refs.T
    classes = np.unique(ref_cls[ref_cls >= 0])
    best = np.full((len(queries), len(classes)), -np.inf)
    col = np.searchsorted(classes, ref_cls)
    for j in np.flatnonzero(ref_cls >= 0):
        np.maximum(best[:, col[j]], sims[:, j], out=best[:, col[j]])
    return ranking(best, classes, k)


# -- the table --------------------------------------------------------------------------
def _mean_interval(per_seed: list[np.ndarray], reps: int) -> tuple[float, float, float]:
    """Mean of per-observation values (pooled over seeds, each weighted equally) and its
    95% bootstrap interval; seeds with no observation are left out."""
    def part(v: np.ndarray):
        v = np.asarray(v, np.float64)
        return len(v), lambda i: float(v[i].mean())

    parts = [part(v) for v in per_seed if len(v)]
    if not parts:
        return float("nan"), float("nan"), float("nan")
    return paired_bootstrap(parts, reps=reps)


def _diff_interval(pairs: list[tuple[np.ndarray, np.ndarray]], reps: int):
    def part(a: np.ndarray, b: np.ndarray):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return len(a), lambda i: float(a[i].mean() - b[i].mean())

    return paired_bootstrap([part(a, b) for a, b in pairs if len(a)], reps=reps)


def _auroc_interval(rows: list[tuple[np.ndarray, np.ndarray]], reps: int):
    parts = [(len(s), lambda i, s=s, p=p: auroc(s[i], p[i])) for s, p in rows
             if p.any() and (~p).any()]
    if not parts:
        return float("nan"), float("nan"), float("nan")
    return paired_bootstrap(parts, reps=reps)


def _fmt(x: tuple[float, float, float], scale: float = 100.0, digits: int = 1,
         sign: bool = False) -> str:
    """``m [lo, hi]``; a share's interval (``sign`` False) is clipped to [0, 100]: the
    bootstrap's bias shift can carry a bound of a small sample past it."""
    m, lo, hi = (scale * v for v in x)
    if not sign:
        lo, hi = max(lo, 0.0), min(hi, scale)
    if m != m:
        return "n/a"
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    return f"{f.format(m)} [{f.format(lo)}, {f.format(hi)}]"


def _per_seed(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    return " / ".join("n/a" if v != v else f"{scale * v:.{digits}f}" for v in values)


def _mean(v) -> float:
    return float(np.mean(v)) if len(v) else float("nan")


def table(records: list[dict], reps: int = 1000) -> tuple[list[str], dict]:
    """The report's lines and its verdicts ``{"trained_top1": bool, "poison": bool}``."""
    seeds = [r["seed"] for r in records]
    shots = sorted(records[0]["k"])
    lines = [f"seeds {' '.join(map(str, seeds))}; figures in % (AUROC x100): mean over seeds "
             "[95% bootstrap interval], then per seed (" + " / ".join(map(str, seeds)) + ")", ""]
    lines.append("Enrolled species (test observations of an enrolled species):")
    head = f"{'k':>2}  {'method':<42} {'Recall@5':<22} {'top-1':<22} per seed R@5 | top-1"
    lines += [head, "-" * len(head)]
    for k in shots:
        ks = [r["k"][k] for r in records]
        counts = ", ".join(f"{x['n_species']} species, {x['n_test']} test obs" for x in ks)
        lines.append(f"{k:>2}  enrolled per seed: {counts}")
        for m in METHODS:
            r5 = [x["methods"][m]["r5"] for x in ks]
            t1 = [x["methods"][m]["top1"] for x in ks]
            lines.append(f"{'':>2}  {m:<42} {_fmt(_mean_interval(r5, reps)):<22} "
                         f"{_fmt(_mean_interval(t1, reps)):<22} "
                         f"{_per_seed([_mean(v) for v in r5])} | {_per_seed([_mean(v) for v in t1])}")
    lines += ["", f"Same species at every k (those with at least {max(shots)} val observations), "
              "sporeprint and prototype:"]
    for k in shots:
        ks = [r["k"][k] for r in records]
        n = sum(int(x["same_species"].sum()) for x in ks)
        cells = []
        for m in (OURS, PROTO):
            r5 = [x["methods"][m]["r5"][x["same_species"]] for x in ks]
            cells.append(f"{m.split(' (')[0]} R@5 {_fmt(_mean_interval(r5, reps))}")
        lines.append(f"  k={k}: {n} test obs over the seeds; " + "; ".join(cells))

    lines += ["", "Trained species, top-1 on the same test observations before and after "
              "enrolling (must not drop by more than 1 point):"]
    before = [r["trained_before"] for r in records]
    lines.append(f"  before: {_fmt(_mean_interval(before, reps))}  per seed "
                 f"{_per_seed([_mean(v) for v in before])}  "
                 f"({', '.join(str(r['n_trained_test']) for r in records)} obs)")
    verdict_top1 = True
    for k in shots:
        after = [r["k"][k]["trained_after"] for r in records]
        d = _diff_interval(list(zip(after, before, strict=True)), reps)
        ok = 100 * d[0] >= -1.0
        verdict_top1 &= ok
        lines.append(f"  k={k}: after {_fmt(_mean_interval(after, reps))}, change "
                     f"{_fmt(d, sign=True)} points  per seed "
                     f"{_per_seed([_mean(a) - _mean(b) for a, b in zip(after, before, strict=True)])}"
                     f"  {'PASS' if ok else 'FAIL'}")

    lines += ["", "Unknown AUROC (P(unknown); unknown = neither trained nor enrolled, against "
              "trained species; enrolled species' observations left out):"]
    for k in shots:
        ks = [r["k"][k] for r in records]
        b = [(x["auroc_before"], x["auroc_positive"]) for x in ks]
        a = [(x["auroc_after"], x["auroc_positive"]) for x in ks]
        lines.append(f"  k={k}: before {_fmt(_auroc_interval(b, reps))}, after "
                     f"{_fmt(_auroc_interval(a, reps))}  per seed after "
                     f"{_per_seed([auroc(s, p) for s, p in a])}  still-unknown obs "
                     f"{', '.join(str(x['n_still_unknown_test']) for x in ks)}")

    lines += ["", "Poison side (no enrolled species has a poison status: all count as possibly "
              "poisonous):"]
    verdict_poison = True
    pr_before = [r["poison_risk_before"] for r in records]
    for k in shots:
        ks = [r["k"][k] for r in records]
        bad = sum(x["no_status_as_edible"] + x["no_status_best_edible"] for x in ks)
        verdict_poison &= bad == 0
        eb = sum(int(x["enrolled_edible_before"].sum()) for x in ks)
        ea = sum(int(x["enrolled_edible_after"].sum()) for x in ks)
        n = sum(x["n_test"] for x in ks)
        pr_after = [x["poison_risk_after"] for x in ks]
        pr_stated = [x["poison_risk_stated"] for x in ks]
        n_pois = sum(x["n_poisonous_species"] for x in ks)
        pe = sum(x["poisonous_as_edible_stated"] for x in ks)
        lines.append(
            f"  k={k}: answers calling an enrolled species without status edible "
            f"{bad} ({'PASS' if bad == 0 else 'FAIL'}); enrolled-species test obs answered "
            f"edible or unknown {eb} -> {ea} of {n}; poison_risk answers (all test obs) "
            f"{_fmt(_mean_interval(pr_before, reps))} -> {_fmt(_mean_interval(pr_after, reps))}"
            f"; with the status stated {_fmt(_mean_interval(pr_stated, reps))} ({n_pois} of "
            f"the enrolled species poisonous, their test obs answered edible or unknown {pe})")
    undo_ok = all(r["k"][k]["undo_restores"] for r in records for k in shots)
    lines += ["", f"undo restores the answers of before exactly: {'yes' if undo_ok else 'NO'}"]
    return lines, {"trained_top1": verdict_top1, "poison": verdict_poison, "undo": undo_ok}


def machine() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load "
            f"average {load[0]:.1f}, Python {platform.python_version()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--scale", default="small", choices=["small", "medium"])
    ap.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                    help=f"epochs per fold (default {DEFAULT_EPOCHS}, the demo's at small)")
    ap.add_argument("--shots", type=int, nargs="+", default=list(SHOTS))
    ap.add_argument("--reps", type=int, default=1000, help="bootstrap replicates")
    ap.add_argument("--small", action="store_true",
                    help="a smoke run: seed 0 only, 3 epochs, 200 replicates")
    args = ap.parse_args(argv)
    if args.small:
        args.seeds, args.epochs, args.reps = args.seeds[:1], 3, 200
    print(f"bench_enroll: scale {args.scale}, seeds {args.seeds}, shots {args.shots}; heads: "
          f"two-fold MLP ensemble (hidden 1024, seesaw, {args.epochs} epochs per fold), "
          f"calibrated as `sporeprint train` does; machine: {machine()}", flush=True)
    t0 = time.perf_counter()
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            records.append(run_seed(seed, Path(tmp), args.scale, tuple(args.shots),
                                    args.epochs))
    lines, verdicts = table(records, args.reps)
    print("\n" + "\n".join(lines))
    print(f"\n{time.perf_counter() - t0:.0f} s in all; load average now "
          f"{os.getloadavg()[0]:.1f}")
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

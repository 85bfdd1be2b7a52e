"""Prediction sets: how often the conformal sets hold the true species, level by level (a
calibration curve of the sets), how large they are, and where coverage is lower.

The truth is the scored batch's (``--truth``, or labels stored with its observations),
its sets made again at each level from the ranked options stored with each prediction
(as ``sporeprint decide --coverage`` makes them); without a labelled batch, a seeded
sample of the held-out test part decided by the run. Conformal coverage is marginal:
the groups (poisonous, rare, unknown species) may be covered less than the level, and
the captions say which are."""

from __future__ import annotations

import numpy as np

from heads.metrics import clopper_pearson
from store import StoreError

from .. import figures
from ..page import Figure, Note, Section, Table
from .common import members, query

LEVELS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99)
MAIN_LEVEL = 0.9  # the level of the size histogram and the groups (the scoring default)
RARE_SHARE = 0.25  # "rare species": the rarest quarter of the run's species by training images




def section(fs, run: dict | None, batch: str | None, truth, n_points: int, seed: int
            ) -> Section:
    s = Section("sets", "Prediction sets: coverage by level, set sizes, groups")
    if run is None:
        return s.absent("No trained run: prediction sets need a run's heads and calibration.")
    from heads import HeadsError
    from retrieval import RetrievalError
    from sporeprint.errors import SporeprintError
    from sporeprint.scoring import ScoringModel

    try:
        model = ScoringModel.load(fs, members(run))
    except (SporeprintError, StoreError, HeadsError, RetrievalError) as exc:
        return s.absent(f"No prediction sets: run {run['run_id']} could not be loaded ({exc}).")
    cal = model.calibration
    if "scores" not in (cal.conformal or {}):
        return s.absent(f"No prediction sets for run {run['run_id']}: "
                        f"{cal.conformal.get('none', 'no conformal scores')}. Its answers are "
                        "one species each (with top-5 probabilities and poison probability), "
                        "with no coverage promise.")
    try:
        found = _batch_source(fs, model, batch, truth) or _heldout_source(fs, model, n_points,
                                                                          seed)
    except SporeprintError as exc:
        return s.absent(f"No prediction-set figures: {exc}")
    if found is None:
        return s.absent("No prediction-set figures: neither the scored batch nor the held-out "
                        "test part has labelled observations with sets (score a batch with "
                        "heads trained with `sporeprint train --calibration holdout`, and pass "
                        "--truth).")
    ranked, y, where = found
    n_cal, n_pois = len(cal.conformal["scores"]), len(cal.conformal["poisonous_scores"])
    levels = [lv for lv in LEVELS if _threshold(cal, lv) is not None
              and _threshold(cal, lv) <= ranked.bound + 1e-12]
    if not levels:
        return s.absent(f"No prediction-set figures: the {n_cal} calibration observations "
                        "promise none of the levels " + ", ".join(map(str, LEVELS)) + ".")
    hits, sizes = {}, {}
    for lv in levels:
        hits[lv], sizes[lv] = _covered(ranked, y, _threshold(cal, lv))
    n = len(y)
    s.blocks.append(Note(
        f"{n:,} labelled observations ({where}); sets fitted on the {n_cal:,} observations of "
        f"the calibration slice ({n_pois:,} of a poisonous species), which promise levels up "
        f"to {n_cal / (n_cal + 1):.4f} for the set and {n_pois / (n_pois + 1):.4f} for the "
        f"poison set (n/(n+1)). Coverage is marginal, over observations exchangeable with the "
        "slice: not for each species, region or photo."))
    covered = [float(hits[lv].mean()) for lv in levels]
    intervals = [clopper_pearson(int(hits[lv].sum()), n) for lv in levels]
    below = [(lv, c, iv) for lv, c, iv in zip(levels, covered, intervals, strict=True)
             if iv[1] < lv]
    words = ("; ".join(f"at {lv:.0%} it is {c:.1%} (95% interval {lo:.1%}–{hi:.1%})"
                       for lv, c, (lo, hi) in below) if below else
             "no level's 95% interval lies below it")
    s.blocks.append(Figure(
        _coverage_figure(levels, covered, intervals), "coverage of the sets by level",
        f"The share of the {n:,} observations whose set holds their true species (or 'not in "
        "the model' for an unseen species), at each level the slice can promise, with exact "
        "95% intervals; the diagonal is the promise.",
        "Points on or above the diagonal keep the promise (the sets are not randomised, so "
        "they cover a little more than the level). Below it, the observations are not "
        f"exchangeable with the calibration slice (another period or region): {words}."))
    main = min(levels, key=lambda lv: (abs(lv - MAIN_LEVEL), lv))  # 0.9, else the nearest
    size = sizes[main]
    s.blocks.append(Figure(
        _size_figure(size, main), "set sizes",
        f"How many options the {main:.0%} sets hold: mean {size.mean():.1f}, median "
        f"{np.median(size):.0f}, largest {int(size.max())}; {float((size == 1).mean()):.0%} "
        "hold one species.",
        "Adaptive sets are small where the model is sure and large where it is not; a long "
        "right tail means many look-alike-rich or unfamiliar observations."))
    s.blocks.append(_group_table(fs, model, y, hits[main], size, main))
    return s


def _threshold(cal, level: float) -> float | None:
    return cal.conformal_threshold(level)[0]


def _covered(ranked, y: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per observation: is its true option (``y``, -1 = not in the model) in its set, and
    the set's size."""
    from sporeprint.scoring.sets import prefix_inside

    inside = prefix_inside(ranked.probs, threshold)
    hit = (inside & (ranked.ids == y[:, None])).any(1)
    return hit, inside.sum(1)


def _option_truth(model, truth: np.ndarray) -> np.ndarray:
    return np.where(np.isin(truth, model.classes), truth, -1).astype(np.int64)


def _batch_source(fs, model, batch: str | None, truth):
    """The batch's ranked options and truth, or None without a labelled batch with sets."""
    from sporeprint.scoring.sets import Ranked

    from .safety import batch_truth

    if batch is None:
        return None
    preds = fs.batch_predictions(batch)
    if "ranked_bound" not in preds.column_names or preds["ranked_bound"].null_count == \
            preds.num_rows or set(preds["run_key"].to_pylist()) != {model.run_key}:
        return None
    bt = batch_truth(preds, truth)
    if bt is None or not len(bt.observation_ids):
        return None
    obs = preds.column("observation_id").to_numpy()
    at = np.searchsorted(obs, bt.observation_ids)
    ids = preds.column("ranked_class_ids").to_pylist()
    probs = preds.column("ranked_probs").to_pylist()
    keep = [i for i, j in enumerate(at) if ids[j] is not None]
    if not keep:
        return None
    bound = float(np.nanmin(preds["ranked_bound"].to_numpy(zero_copy_only=False)))
    ranked = Ranked.from_lists([ids[at[i]] for i in keep], [probs[at[i]] for i in keep], bound)
    return ranked, _option_truth(model, bt.truth[keep]), f"batch {batch!r}, {bt.source}"


def _heldout_source(fs, model, n_points: int, seed: int):
    """A seeded sample of the held-out test part decided by the run, or None."""
    from heads.conformal import with_unknown
    from sporeprint.scoring.sets import ranked_options

    sample = query(fs, "held_out_sample", n_points, seed)
    if sample.num_rows == 0:
        return None
    ids = sample.column("observation_id").to_numpy()
    truth = sample.column("class_id").to_numpy()
    scores, _ = model.scores(fs, ids)
    if scores is None:
        return None
    d = model.decide(scores, coverage=0)
    y = truth[np.argsort(ids)][np.searchsorted(np.sort(ids), scores.observation_ids)]
    cal = model.calibration
    ranked = ranked_options(with_unknown(d.probs, d.unknown_prob), model.classes,
                            cal.conformal_bound(), cal.conformal.get("lam", 0.0),
                            cal.conformal.get("k_reg", 0))
    return ranked, _option_truth(model, y), ("a seeded sample of the held-out test part "
                                             "decided by the run; pass --truth for the batch")


def _group_table(fs, model, y: np.ndarray, hit: np.ndarray, size: np.ndarray,
                 level: float) -> Table:
    poisonous = np.isin(y, fs.poisonous_class_ids()) & (y >= 0)
    counts = fs.training_image_counts(model.classes)
    rare_classes = model.classes[counts <= np.quantile(counts, RARE_SHARE)]
    groups = {"all observations": np.ones(len(y), bool),
              "poisonous species": poisonous,
              "edible species in the model": (y >= 0) & ~poisonous,
              f"rare species (the rarest {RARE_SHARE:.0%} by training images, ≤ "
              f"{int(np.quantile(counts, RARE_SHARE))})": np.isin(y, rare_classes) & (y >= 0),
              "unknown species (not in the model)": y < 0}
    rows, lower = [], []
    for name, m in groups.items():
        k, n = int(hit[m].sum()), int(m.sum())
        if n == 0:
            rows.append([name, 0, "—", "—", "—"])
            continue
        lo, hi = clopper_pearson(k, n)
        rows.append([name, n, f"{k / n:.1%}", f"{lo:.1%}–{hi:.1%}", f"{size[m].mean():.1f}"])
        if name != "all observations" and k / n < level:
            lower.append(f"{name} ({k / n:.1%} of {n:,}{', significantly' if hi < level else ''})")
    said = ("Coverage is lower than the level for " + "; ".join(lower) if lower else
            "No group is covered less than the level here")
    return Table(["group", "observations", "in their set", "95% interval", "mean set size"],
                 rows, f"Coverage per group at the {level:.0%} level. {said} — conformal "
                 "coverage is marginal, so a group may get less than the level while the whole "
                 "keeps it; for poisonous species, score with --poison-coverage.")


def _coverage_figure(levels, covered, intervals) -> bytes:
    plt = figures.plt
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    lv = np.array(levels)
    lo = np.array([c - iv[0] for c, iv in zip(covered, intervals, strict=True)])
    hi = np.array([iv[1] - c for c, iv in zip(covered, intervals, strict=True)])
    ax.plot([0.45, 1.0], [0.45, 1.0], color="#9e9e9e", lw=1, ls="--", label="the promise")
    ax.errorbar(lv, covered, yerr=[lo, hi], fmt="o-", color="#1565c0", capsize=3,
                label="empirical coverage (95% interval)")
    ax.set_xlabel("level of the sets")
    ax.set_ylabel("share holding the true species")
    ax.set_xlim(0.45, 1.0)
    ax.set_ylim(min(0.45, float(np.min(np.array(covered) - lo)) - 0.02), 1.01)
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return figures._png(fig)


def _size_figure(size: np.ndarray, level: float) -> bytes:
    plt = figures.plt
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    top = int(size.max())
    bins = np.arange(0.5, top + 1.5, 1) if top <= 40 else 40
    ax.hist(size, bins=bins, color="#37474f")
    ax.set_xlabel(f"options in the {level:.0%} set")
    ax.set_ylabel("observations")
    ax.grid(alpha=0.3, axis="y")
    return figures._png(fig)

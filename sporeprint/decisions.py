"""Replaying a scored batch's decisions under another cost matrix.

A Track 3-style decision needs only four numbers per observation (the best edible
and best poisonous species' probabilities, the poison mass, the probability of an
unknown species) plus the two classes; scoring stores them with each prediction.
So a forager's stricter 1000:1 matrix, or a survey's softer one, re-decides a batch
without touching the heads, the index or the photos. Each row's answer kind is
decided again with it; rows answered from the training prior alone stay
``prior_only``.

The conformal sets can be given again at another level the same way (``sporeprint
decide --coverage 0.8``): each prediction stores its most probable options with their
probabilities (``ranked_class_ids``, ``ranked_probs``, down to the conformal score
``ranked_bound``), and the calibration record holds the calibration slice's scores, so
the set, the poison check and the answer rank at any level up to that bound are
recomputed from stored values (:func:`set_replay`, :func:`redecide`), equal row by row
to scoring the batch again at that level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from heads.decision import PRIOR_ONLY, Costs, DecisionSummary, decide_summary
from sporeprint.errors import SporeprintError

# Cost matrices shown by the decision analysis: (poisonous called edible, edible called poisonous)
COST_MATRICES = {"forager (1000:1)": (1000.0, 1.0), "FungiCLEF Track 3 (100:1)": (100.0, 1.0),
                 "survey (10:1)": (10.0, 1.0)}
# Below this ratio of the poisonous-as-edible cost to the wrong-answer cost, a poison-risk
# answer needs a poisonous species within that much probability of the best edible answer.
POISON_RISK_MARGIN = 0.01


def poison_risk_warning(costs: Costs) -> str | None:
    """Why no (or almost no) answer can be ``poison_risk`` under ``costs``, or None.

    A poison-risk answer names a poisonous species less probable than the best edible
    answer; it is chosen when ``P(poisonous) > threshold``, and since ``P(poisonous) <= 1``
    that needs the probability gap to be under ``poisonous_as_edible / wrong_answer``
    (:func:`heads.decision.poison_threshold`)."""
    pe, w = costs.poisonous_as_edible, costs.wrong_answer
    if pe == 0:
        return ("calling a poisonous mushroom edible costs 0, so no answer can be flagged as "
                "a poison risk; give --cost-poisonous-as-edible a price (Track 3 uses 100)")
    if w > 0 and pe / w < POISON_RISK_MARGIN:
        return (f"the wrong-answer cost {w:g} dwarfs the poisonous-as-edible cost {pe:g}: a "
                f"poison-risk answer needs a poisonous species within {pe / w:.2g} of the best "
                "edible answer's probability, so almost nothing can be flagged; lower "
                "--cost-wrong or raise --cost-poisonous-as-edible")
    return None


def summary_of(predictions: pa.Table) -> DecisionSummary:
    """The stored four-number summary of prediction rows."""
    cols = ("best_edible_class", "best_edible_prob", "best_poisonous_class",
            "best_poisonous_prob", "poison_prob", "unknown_prob")
    missing = [c for c in cols if c not in predictions.column_names]
    if missing or predictions.column("best_edible_prob").null_count:
        raise SporeprintError("these predictions were stored without the decision summary "
                              "(scored by an older sporeprint); score the batch again")

    def col(name, dtype):
        return predictions.column(name).to_numpy(zero_copy_only=False).astype(dtype)

    return DecisionSummary(col("best_edible_class", np.int64), col("best_edible_prob", np.float64),
                           col("best_poisonous_class", np.int64),
                           col("best_poisonous_prob", np.float64), col("poison_prob", np.float64),
                           col("unknown_prob", np.float64))


@dataclass
class SetReplay:
    """What giving a scored batch its sets again at other levels needs besides its rows:
    the levels, the thresholds from the runs' calibration record, and the store's
    poisonous list and taxonomy."""

    coverage: float
    poison_coverage: float
    threshold: float | None  # None: no set (coverage 0)
    poison_threshold: float | None  # None: the poison check reads the set alone
    lam: float
    k_reg: int
    poisonous_ids: np.ndarray
    genus_of: dict
    names: dict
    note: str = ""  # why the poison check reads the set alone


def set_replay(fs, predictions: pa.Table, coverage: float, poison_coverage: float
               ) -> SetReplay:
    """The :class:`SetReplay` of stored ``predictions`` at ``coverage`` /
    ``poison_coverage`` (0: none), from the calibration record of the runs that scored
    them; refuses, naming the fix, where the record promises no set, was refitted since
    the batch was scored, or the rows were stored without their ranked options."""
    from sporeprint.scoring import calibration as calib

    for name, level in (("--coverage", coverage), ("--poison-coverage", poison_coverage)):
        if level and not 0.0 < level < 1.0:
            raise SporeprintError(f"{name} {level!r} must be between 0 and 1 (e.g. 0.9), or 0 "
                                  "for no prediction set")
    keys = set(predictions.column("run_key").to_pylist())
    run_key = keys.pop() if len(keys) == 1 else None
    if run_key is None:
        raise SporeprintError("these predictions come from several runs; pass --run")
    taxa = fs.species_table()
    ids = taxa.column("class_id").to_pylist()
    base = dict(coverage=coverage, poison_coverage=poison_coverage, lam=0.0, k_reg=0,
                poisonous_ids=np.asarray(fs.poisonous_class_ids(), np.int64),
                genus_of=dict(zip(ids, taxa.column("genus").to_pylist(), strict=True)),
                names={i: n for i, n in zip(ids, taxa.column("species").to_pylist(),
                                            strict=True) if n})
    if not coverage:
        return SetReplay(threshold=None, poison_threshold=None, **base)
    record = fs.get_run(calib.record_id(run_key.split(",")))
    cal = calib.Calibration.from_dict(record["metrics"]) if record else None
    if cal is None:
        raise SporeprintError(f"runs {run_key} have no calibration record of the current "
                              f"format; fit it with `sporeprint calibrate --store {fs.path} "
                              f"--run {run_key}` and score the batch again")
    threshold, why = cal.conformal_threshold(coverage)
    if threshold is None:
        raise SporeprintError(f"no prediction sets to replay: {why}")
    scored = predictions.column("created_at").to_pylist() \
        if "created_at" in predictions.column_names else []
    if scored and record.get("created_at") and record["created_at"] > max(scored):
        raise SporeprintError(f"the calibration of runs {run_key} was refitted after the batch "
                              "was scored, so its stored probabilities are not what the record "
                              "would give now; score the batch again with `sporeprint score`")
    p_threshold, p_why = (cal.conformal_threshold(poison_coverage, poisonous=True)
                          if poison_coverage else (None, ""))
    base.update(lam=float(cal.conformal.get("lam", 0.0)),
                k_reg=int(cal.conformal.get("k_reg", 0)))
    note = (f"poison coverage {poison_coverage}: {p_why}; the poison check reads the "
            f"{coverage} set alone" if p_why else "")
    return SetReplay(threshold=threshold, poison_threshold=p_threshold, note=note, **base)


def _replayed_sets(predictions: pa.Table, replay: SetReplay, class_id, kind, reasons):
    """The sets of the rows that have ranked options, and the decision after their poison
    check; rows without (answered from the training prior) keep theirs, with no set."""
    from sporeprint.scoring.sets import Ranked, sets_from_ranked

    needed = ("ranked_class_ids", "ranked_probs", "ranked_bound")
    if any(c not in predictions.column_names for c in needed):
        raise SporeprintError("these predictions were stored without their ranked options "
                              "(scored by an older sporeprint); score the batch again with "
                              "`sporeprint score` to give it sets at other levels")
    ranked_ids = predictions.column("ranked_class_ids").to_pylist()
    prior = np.asarray(kind, dtype=object) == PRIOR_ONLY
    has = np.array([r is not None for r in ranked_ids])
    if (~has & ~prior).any():
        raise SporeprintError(
            f"{int((~has & ~prior).sum())} scored predictions of this batch have no ranked "
            "options (scored by an older sporeprint, or by heads without a conformal "
            "guarantee); score the batch again with `sporeprint score` (heads trained with "
            "`sporeprint train --calibration holdout`)")
    rows = np.flatnonzero(has)
    if not len(rows):
        return class_id, kind, reasons, None, rows
    bounds = predictions.column("ranked_bound").to_numpy(zero_copy_only=False)[rows]
    probs = predictions.column("ranked_probs").to_pylist()
    ranked = Ranked.from_lists([ranked_ids[i] for i in rows], [probs[i] for i in rows],
                               float(np.min(bounds)))
    out = sets_from_ranked(ranked, replay.poisonous_ids, np.asarray(class_id)[rows],
                           np.asarray(kind, dtype=object)[rows], [reasons[i] for i in rows],
                           replay.threshold, replay.poison_threshold, replay.coverage,
                           replay.lam, replay.k_reg, replay.genus_of, replay.names)
    class_id, kind, reasons = np.array(class_id), np.array(kind, dtype=object), list(reasons)
    class_id[rows], kind[rows] = out.class_id, out.kind
    for j, i in enumerate(rows):
        reasons[i] = out.reason[j]
    return class_id, kind, reasons, out, rows


def _set_columns(n: int, sets, rows: np.ndarray) -> dict[str, pa.Array]:
    def spread(values, type_):
        full = [None] * n
        for j, i in enumerate(rows):
            v = values[j]
            full[i] = v.tolist() if isinstance(v, np.ndarray) else v
        return pa.array(full, type_)

    if sets is None:
        return {"prediction_set": pa.nulls(n, pa.list_(pa.int32())),
                "poison_check": pa.nulls(n, pa.list_(pa.int32())),
                "set_size": pa.nulls(n, pa.int32()), "answer_rank": pa.nulls(n, pa.string()),
                "genus": pa.nulls(n, pa.string())}
    return {"prediction_set": spread(sets.prediction_set, pa.list_(pa.int32())),
            "poison_check": spread(sets.poison_check, pa.list_(pa.int32())),
            "set_size": spread([int(x) for x in sets.set_size], pa.int32()),
            "answer_rank": spread(sets.answer_rank, pa.string()),
            "genus": spread(sets.genus, pa.string())}


def redecide(predictions: pa.Table, costs: Costs, replay: SetReplay | None = None) -> pa.Table:
    """``observation_id, class_id, kind, reason, changed`` under ``costs``; the kind of
    each answer is decided again, and rows stored as ``prior_only`` stay so. Rows scored
    with conformal sets keep their poison check (the stored ``poison_check`` column,
    ``sporeprint.scoring.sets.recheck_stored``): at the levels they were scored with.
    With ``replay`` (:func:`set_replay`) the sets are made again at its levels from the
    stored ranked options instead, and the table adds their columns (``prediction_set``,
    ``poison_check``, ``set_size``, ``answer_rank``, ``genus``)."""
    summary = summary_of(predictions)
    if "kind" not in predictions.column_names or predictions.column("kind").null_count:
        raise SporeprintError("these predictions have no answer kind (a store made by an older "
                              "sporeprint); open the store once for writing (e.g. `sporeprint "
                              "sql --store STORE --write \"SELECT 1\"`) to upgrade it")
    prior = predictions.column("kind").to_numpy(zero_copy_only=False) == PRIOR_ONLY
    d = decide_summary(summary, costs, prior_only=prior)
    reasons = [f"training prior only; {r}" if p else r
               for r, p in zip(d.reason, prior, strict=True)]
    extra: dict[str, pa.Array] = {}
    if replay is not None:
        sets = None
        if replay.threshold is not None:
            d.class_id, d.kind, reasons, sets, rows = _replayed_sets(
                predictions, replay, d.class_id, d.kind, reasons)
        extra = _set_columns(predictions.num_rows, sets, rows if sets is not None else [])
    elif "poison_check" in predictions.column_names:
        from sporeprint.scoring.sets import recheck_stored

        d.class_id, d.kind, reasons = recheck_stored(
            predictions.column("poison_check").to_pylist(), summary.best_poisonous_class,
            d.class_id, d.kind, reasons)
    before = predictions.column("class_id").to_numpy(zero_copy_only=False)
    return pa.table({"observation_id": predictions.column("observation_id"),
                     "class_id": pa.array(d.class_id, pa.int32()),
                     "kind": pa.array(d.kind, pa.string()),
                     "reason": pa.array(reasons, pa.string()),
                     "changed": pa.array(d.class_id != before), **extra})

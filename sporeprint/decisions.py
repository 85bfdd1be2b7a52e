"""Replaying a scored batch's decisions under another cost matrix.

A Track 3-style decision needs only four numbers per observation (the best edible
and best poisonous species' probabilities, the poison mass, the probability of an
unknown species) plus the two classes; scoring stores them with each prediction.
So a forager's stricter 1000:1 matrix, or a survey's softer one, re-decides a batch
without touching the heads, the index or the photos. Each row's answer kind is
decided again with it; rows answered from the training prior alone stay
``prior_only``.
"""

from __future__ import annotations

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


def redecide(predictions: pa.Table, costs: Costs) -> pa.Table:
    """``observation_id, class_id, kind, reason, changed`` under ``costs``; the kind of
    each answer is decided again, and rows stored as ``prior_only`` stay so. Rows scored
    with conformal sets keep their poison check (the stored ``poison_check`` column,
    ``sporeprint.scoring.sets.recheck_stored``): at the levels they were scored with."""
    summary = summary_of(predictions)
    if "kind" not in predictions.column_names or predictions.column("kind").null_count:
        raise SporeprintError("these predictions have no answer kind (a store made by an older "
                              "sporeprint); open the store once for writing (e.g. `sporeprint "
                              "sql --store STORE --write \"SELECT 1\"`) to upgrade it")
    prior = predictions.column("kind").to_numpy(zero_copy_only=False) == PRIOR_ONLY
    d = decide_summary(summary, costs, prior_only=prior)
    reasons = [f"training prior only; {r}" if p else r
               for r, p in zip(d.reason, prior, strict=True)]
    if "poison_check" in predictions.column_names:
        from sporeprint.scoring.sets import recheck_stored

        d.class_id, d.kind, reasons = recheck_stored(
            predictions.column("poison_check").to_pylist(), summary.best_poisonous_class,
            d.class_id, d.kind, reasons)
    before = predictions.column("class_id").to_numpy(zero_copy_only=False)
    return pa.table({"observation_id": predictions.column("observation_id"),
                     "class_id": pa.array(d.class_id, pa.int32()),
                     "kind": pa.array(d.kind, pa.string()),
                     "reason": pa.array(reasons, pa.string()),
                     "changed": pa.array(d.class_id != before)})

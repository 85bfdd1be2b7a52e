"""Conformal prediction sets on top of a decision: the set, the poison check from it, and
the rank a forager can rely on (species, genus or neither).

With the record's conformal scores (``calibration.Calibration.conformal``; mode
``holdout`` only) the set of each observation holds its true option — a known species,
or ``-1`` for a species not in the model — with probability at least ``coverage`` on
observations exchangeable with the calibration slice. The **poison check** answers
poison risk wherever the set, or the poison set (the same scores, thresholded on the
poisonous calibration observations alone at ``poison_coverage``), holds a poisonous
species. So a poisonous mushroom is answered edible (or unknown) only when its species
fell outside both sets:

- at most ``1 - coverage`` of all observations are poisonous and so missed (the set);
- at most ``1 - poison_coverage`` of the poisonous ones are missed (the poison set),
  when the poisonous calibration observations can promise that level (n/(n+1)).

The check only turns answers into poisonous ones; it never makes an answer edible.
The submission keeps one class id per observation (the decided one), so FungiCLEF's
metrics stay comparable; the set, its size and the rank are extra columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heads import conformal as cp
from heads.decision import POISON_RISK
from heads.metrics import UNKNOWN

RANKS = ("species", "genus", "unknown")


@dataclass
class SetAnswers:
    """Per observation: the set (class ids, -1 = not in the model), its size, the rank of
    the answer it allows and its genus; the decision after the poison check."""

    prediction_set: list[np.ndarray]
    poison_check: list[np.ndarray]  # the poisonous species the check found, most probable first
    set_size: np.ndarray
    answer_rank: list[str]
    genus: list[str | None]
    class_id: np.ndarray
    kind: np.ndarray
    reason: list[str]
    note: str  # "" or why the poison check falls back to the set alone


def _name(class_id: int, names: dict[int, str] | None) -> str:
    return (names or {}).get(int(class_id)) or f"class {int(class_id)}"


def apply_sets(probs: np.ndarray, unknown_prob: np.ndarray, classes: np.ndarray,
               poisonous: np.ndarray, class_id: np.ndarray, kind: np.ndarray,
               reason: list[str], threshold: float, poison_threshold: float | None,
               coverage: float, lam: float = 0.0, k_reg: int = 0,
               genus_of: dict[int, str | None] | None = None,
               names: dict[int, str] | None = None) -> SetAnswers:
    """The sets of ``probs`` (n, C; conditional on a known species) and ``unknown_prob``
    at ``threshold``, and the decision (``class_id``, ``kind``, ``reason``) after the
    poison check; ``poison_threshold`` None: the check reads the set alone."""
    options = cp.with_unknown(probs, unknown_prob)
    inside = cp.predict_sets(options, threshold, lam, k_reg)
    check = inside[:, :-1] & poisonous[None, :]
    if poison_threshold is not None:
        check |= cp.predict_sets(options, poison_threshold, lam, k_reg,
                                 keep_top=False)[:, :-1] & poisonous[None, :]
    ids = np.r_[np.asarray(classes, np.int64), UNKNOWN]
    out_class = np.asarray(class_id, np.int64).copy()
    out_kind = np.asarray(kind, dtype=object).copy()
    out_reason = list(reason)
    answered_poisonous = np.isin(out_class, classes[poisonous])
    genus_of = genus_of or {}
    sets, checked, ranks, genera = [], [], [], []
    for i in range(len(options)):
        row = np.flatnonzero(inside[i])
        row = row[np.argsort(-options[i, row], kind="stable")]  # most probable first
        members = ids[row]
        sets.append(members)
        found = {genus_of.get(int(c)) for c in members} if UNKNOWN not in members else {None}
        if len(members) == 1 and members[0] != UNKNOWN:
            ranks.append("species")
            genera.append(genus_of.get(int(members[0])))
        elif len(found) == 1 and None not in found:
            ranks.append("genus")
            genera.append(found.pop())
        else:
            ranks.append("unknown")
            genera.append(None)
        cols = np.flatnonzero(check[i])
        cols = cols[np.argsort(-options[i, cols], kind="stable")]  # most probable first
        checked.append(np.asarray(classes[cols], np.int64))
        if len(cols) and not answered_poisonous[i]:
            out_class[i] = classes[cols[0]]
            out_kind[i] = POISON_RISK
            held = ", ".join(_name(classes[c], names) for c in cols[:5])
            more = f" and {len(cols) - 5} more" if len(cols) > 5 else ""
            out_reason[i] = (f"poison-risk: the {coverage:.0%} conformal set holds poisonous "
                             f"{held}{more}; {reason[i]}")
    poisonous_genera = {genus_of.get(int(c)) for c in classes[poisonous]} - {None}
    for i, g in enumerate(genera):
        if ranks[i] == "genus" and g in poisonous_genera and out_kind[i] != POISON_RISK:
            out_reason[i] += f"; warning: the set lies within genus {g}, which has poisonous species"
    return SetAnswers(sets, checked, inside.sum(1).astype(np.int64), ranks, genera, out_class,
                      out_kind, out_reason, "")



def recheck_stored(poison_check: list, best_poisonous_class: np.ndarray,
                   class_id: np.ndarray, kind: np.ndarray, reason: list[str]) -> tuple:
    """The poison check replayed from stored rows on answers decided again, e.g. under
    other costs (``sporeprint decide``): ``poison_check`` is each row's stored column
    (the poisonous species the sets held, most probable first; None without sets), and
    an answer is poisonous when it is the row's ``best_poisonous_class``. Returns
    ``(class_id, kind, reason)``: as scoring answers at the stored levels."""
    class_id = np.asarray(class_id, np.int64).copy()
    kind = np.asarray(kind, dtype=object).copy()
    reason = list(reason)
    best = np.asarray(best_poisonous_class, np.int64)
    for i, held in enumerate(poison_check):
        if held and (class_id[i] != best[i] or best[i] == UNKNOWN):
            class_id[i], kind[i] = held[0], POISON_RISK
            reason[i] = (f"poison-risk: the stored conformal sets hold poisonous class "
                         f"{', '.join(map(str, held[:5]))}; {reason[i]}")
    return class_id, kind, reason

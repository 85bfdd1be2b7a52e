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

Every set is computed from each observation's **ranked options** (:class:`Ranked`: the
most probable options with their probabilities, down to a conformal score bound), which
the predictions table stores; so :func:`sets_from_ranked` gives a scored batch its sets
at another level from stored values (``sporeprint decide --coverage``), the same code a
fresh score runs, hence the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heads import conformal as cp
from heads.decision import POISON_RISK
from heads.metrics import UNKNOWN
from sporeprint.errors import SporeprintError

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
    ranked: Ranked | None = None  # the options kept for replay at other levels


def _name(class_id: int, names: dict[int, str] | None) -> str:
    return (names or {}).get(int(class_id)) or f"class {int(class_id)}"


# Replay (``sporeprint decide --coverage``) needs the options up to the largest threshold
# it may be asked for: those of this level (or of the highest level the slice can promise,
# if lower), besides the levels a batch is scored with.
REPLAY_COVERAGE = 0.99


@dataclass
class Ranked:
    """Each observation's most probable options, most probable first (ties in class
    order, as the sets list them): ``ids`` (n, L) class ids (``-1`` = a species not in the
    model) and ``probs`` (n, L) their joint probabilities, NaN past a row's end. A row holds
    every option whose conformal score is at most ``bound`` (its whole first tie group when
    none is), so the set at any threshold up to ``bound`` is a prefix of it."""

    ids: np.ndarray
    probs: np.ndarray
    bound: float

    @property
    def lengths(self) -> np.ndarray:
        return (~np.isnan(self.probs)).sum(1)

    def lists(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The rows as ragged ``(ids, probs)`` lists (how the predictions table stores them)."""
        n = self.lengths
        return ([self.ids[i, :n[i]] for i in range(len(n))],
                [self.probs[i, :n[i]] for i in range(len(n))])

    @classmethod
    def from_lists(cls, ids: list, probs: list, bound: float) -> Ranked:
        width = max((len(r) for r in ids), default=0)
        out_ids = np.zeros((len(ids), max(width, 1)), np.int64)
        out_p = np.full((len(ids), max(width, 1)), np.nan)
        for i, (a, b) in enumerate(zip(ids, probs, strict=True)):
            out_ids[i, :len(a)] = a
            out_p[i, :len(b)] = b
        return cls(out_ids, out_p, float(bound))


def prefix_inside(probs: np.ndarray, threshold: float, lam: float = 0.0, k_reg: int = 0,
                  keep_top: bool = True) -> np.ndarray:
    """(n, L) bool: the options of ranked rows (:class:`Ranked`'s ``probs``, most probable
    first, NaN past the end) in the set at ``threshold``: the APS rule of
    ``heads.conformal.predict_sets`` (tied options share the score of their group's end;
    ``keep_top``: the first option is always in), computed on the prefix alone."""
    p = np.asarray(probs, dtype=np.float64)
    n, width = p.shape
    valid = ~np.isnan(p)
    cum = np.cumsum(np.where(valid, p, 0.0), axis=1)
    is_end = np.ones(p.shape, dtype=bool)
    is_end[:, :-1] = p[:, :-1] != p[:, 1:]  # NaN (the row's end) differs from everything
    cols = np.broadcast_to(np.arange(width), p.shape)
    end = np.minimum.accumulate(np.where(is_end, cols, width)[:, ::-1], axis=1)[:, ::-1]
    rank = np.arange(1, width + 1, dtype=np.float64)
    score = np.take_along_axis(cum, end, 1) + lam * np.maximum(0.0, rank - k_reg)
    inside = valid & (score <= threshold + 1e-12)
    if keep_top and width:
        inside[:, 0] |= valid[:, 0]
    return inside


def ranked_options(options: np.ndarray, classes: np.ndarray, bound: float, lam: float = 0.0,
                   k_reg: int = 0) -> Ranked:
    """The :class:`Ranked` prefix up to ``bound`` of the (n, C + 1) options of
    ``heads.conformal.with_unknown`` over ``classes``."""
    p = np.asarray(options, dtype=np.float64)
    n, k = p.shape
    ids = np.r_[np.asarray(classes, np.int64), UNKNOWN]
    # as in heads.conformal.predict_sets: an option of probability at most `floor` has a
    # score above any bound <= 1, so only the options above it need sorting
    floor = 0.5 * (1.0 - min(bound, 1.0)) / k
    rows_i, rows_p = [], []
    for i in range(0, n, cp.CHUNK):
        block = p[i:i + cp.CHUNK]
        if not len(block):
            continue
        m = int((block > floor).sum(1).max())
        m = min(max(m, 1), k)
        top = (np.argpartition(-block, m - 1, axis=1)[:, :m] if m < k
               else np.broadcast_to(np.arange(k), block.shape).copy())
        sub = np.take_along_axis(block, top, 1)
        order = np.lexsort((top, -sub), axis=1)  # most probable first, ties in class order
        top, sub = np.take_along_axis(top, order, 1), np.take_along_axis(sub, order, 1)
        keep = prefix_inside(sub, bound, lam, k_reg, keep_top=False) | (sub == sub[:, :1])
        rows_i.append(np.where(keep, ids[top], 0))
        rows_p.append(np.where(keep, sub, np.nan))
    width = max((r.shape[1] for r in rows_i), default=1)
    pad = lambda a, v: np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=v)  # noqa: E731
    return Ranked(np.concatenate([pad(a, 0) for a in rows_i]) if rows_i else
                  np.zeros((0, 1), np.int64),
                  np.concatenate([pad(a, np.nan) for a in rows_p]) if rows_p else
                  np.zeros((0, 1)), float(bound))


def apply_sets(probs: np.ndarray, unknown_prob: np.ndarray, classes: np.ndarray,
               poisonous: np.ndarray, class_id: np.ndarray, kind: np.ndarray,
               reason: list[str], threshold: float, poison_threshold: float | None,
               coverage: float, lam: float = 0.0, k_reg: int = 0,
               genus_of: dict[int, str | None] | None = None,
               names: dict[int, str] | None = None, bound: float | None = None) -> SetAnswers:
    """The sets of ``probs`` (n, C; conditional on a known species) and ``unknown_prob``
    at ``threshold``, and the decision (``class_id``, ``kind``, ``reason``) after the
    poison check; ``poison_threshold`` None: the check reads the set alone. ``bound``
    (at least both thresholds; default the larger): how far the ranked options kept for
    replay (``SetAnswers.ranked``) reach."""
    bound = max(threshold, poison_threshold or 0.0, bound or 0.0)
    ranked = ranked_options(cp.with_unknown(probs, unknown_prob), classes, bound, lam, k_reg)
    return sets_from_ranked(ranked, np.asarray(classes, np.int64)[poisonous], class_id, kind,
                            reason, threshold, poison_threshold, coverage, lam, k_reg,
                            genus_of, names)


def sets_from_ranked(ranked: Ranked, poisonous_ids: np.ndarray, class_id: np.ndarray,
                     kind: np.ndarray, reason: list[str], threshold: float,
                     poison_threshold: float | None, coverage: float, lam: float = 0.0,
                     k_reg: int = 0, genus_of: dict[int, str | None] | None = None,
                     names: dict[int, str] | None = None) -> SetAnswers:
    """:func:`apply_sets` from ranked options, freshly computed or as stored with a batch
    (``sporeprint decide --coverage`` replays a batch this way); both thresholds must be
    at most ``ranked.bound``."""
    for t in (threshold, poison_threshold):
        if t is not None and t > ranked.bound + 1e-12:
            raise SporeprintError(
                f"a set threshold of {t:.6f} needs options beyond the {ranked.bound:.6f} of "
                "probability mass stored with these predictions; score the batch again with "
                "`sporeprint score --coverage LEVEL` at the level wanted")
    inside = prefix_inside(ranked.probs, threshold, lam, k_reg)
    is_poisonous = np.isin(ranked.ids, np.asarray(poisonous_ids, np.int64)) & ~np.isnan(
        ranked.probs)
    check = inside & is_poisonous
    if poison_threshold is not None:
        check |= prefix_inside(ranked.probs, poison_threshold, lam, k_reg,
                               keep_top=False) & is_poisonous
    out_class = np.asarray(class_id, np.int64).copy()
    out_kind = np.asarray(kind, dtype=object).copy()
    out_reason = list(reason)
    answered_poisonous = np.isin(out_class, poisonous_ids)
    genus_of = genus_of or {}
    sets, checked, ranks, genera = [], [], [], []
    for i in range(len(ranked.ids)):
        members = ranked.ids[i][inside[i]]  # a prefix: most probable first
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
        held = ranked.ids[i][check[i]]  # most probable first
        checked.append(np.asarray(held, np.int64))
        if len(held) and not answered_poisonous[i]:
            out_class[i] = held[0]
            out_kind[i] = POISON_RISK
            named = ", ".join(_name(c, names) for c in held[:5])
            more = f" and {len(held) - 5} more" if len(held) > 5 else ""
            out_reason[i] = (f"poison-risk: the {coverage:.0%} conformal set holds poisonous "
                             f"{named}{more}; {reason[i]}")
    poisonous_genera = {genus_of.get(int(c)) for c in poisonous_ids} - {None}
    for i, g in enumerate(genera):
        if ranks[i] == "genus" and g in poisonous_genera and out_kind[i] != POISON_RISK:
            out_reason[i] += f"; warning: the set lies within genus {g}, which has poisonous species"
    return SetAnswers(sets, checked, inside.sum(1).astype(np.int64), ranks, genera, out_class,
                      out_kind, out_reason, "", ranked)


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

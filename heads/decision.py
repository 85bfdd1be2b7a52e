"""Turn calibrated probabilities into one answer per observation.

Three rules, compared in the README's decision analysis:

- ``argmax``: the most probable known species; never "unknown".
- ``argmax_unknown``: ``argmax``, but "unknown" (``-1``) when the caller's
  open-set flag says the observation is of a species never seen.
- ``track3``: the answer with the lowest *expected* Track 3 cost (DESIGN §5).
  With ``q`` the probabilities over known species and "unknown", and ``P`` the
  probability mass on poisonous species, an edible answer ``e`` (or unknown,
  which counts as edible) costs ``1 - q_e + 100·P`` and a poisonous answer
  ``p`` costs ``1 - q_p + (1 - P)``. So the best poisonous species wins
  whenever ``P > (1 + q_best_edible - q_best_poisonous) / 101`` — a poison
  probability of a percent or two is enough to refuse "edible" or "unknown".

Every answer also has a *kind*, one of :data:`KINDS`, carried as data beside the
class id (the ``reason`` is text for people, never parsed):

- ``species``: a species named because it is the most probable answer;
- ``poison_risk``: a poisonous species named although it is not the most probable
  answer, because the poison mass crossed the break-even point;
- ``unknown``: "a species never seen" (class ``-1``);
- ``prior_only``: the answer of a row decided from a prior alone (the caller says
  which, e.g. an observation with no usable photo), whatever it names.

:func:`answer_mix` counts the kinds of a batch's answers.

The ``track3`` rule needs four numbers per observation, the
:class:`DecisionSummary` from :func:`summarise`: the best edible species and
its probability, the best poisonous species and its probability, the poison
mass and the unknown probability. :func:`decide_summary` replays the decision
from them under any :class:`Costs` (e.g. a stricter 1000:1 for foragers)
without recomputing the probabilities.

Example:
    >>> import numpy as np
    >>> q = np.array([[0.90, 0.03, 0.07]])        # classes 10, 11 and "unknown"
    >>> d = decide(q[:, :2], q[:, 2], class_ids=np.array([10, 11]),
    ...            poisonous=np.array([False, True]), rule="track3")
    >>> int(d.class_id[0]), str(d.kind[0])
    (11, 'poison_risk')
    >>> s = summarise(q[:, :2], q[:, 2], np.array([10, 11]), np.array([False, True]))
    >>> int(decide_summary(s, Costs(poisonous_as_edible=1.0)).class_id[0])  # a lenient survey
    10
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from heads.metrics import COST_EDIBLE_AS_POISONOUS, COST_POISONOUS_AS_EDIBLE, UNKNOWN

RULES = ("argmax", "argmax_unknown", "track3")
# The kinds of answer, in the order answer mixes list them.
KINDS = ("species", "poison_risk", "unknown", "prior_only")
SPECIES, POISON_RISK, UNKNOWN_KIND, PRIOR_ONLY = KINDS


@dataclass
class Decision:
    """Per-row answers: ``class_id`` (-1 = unknown), the poison probability the
    rule saw, the threshold it compared against, a short human reason and the
    answer's ``kind`` (one of :data:`KINDS`)."""

    class_id: np.ndarray  # (n,) int64
    poison_prob: np.ndarray  # (n,) float64
    poison_threshold: np.ndarray  # (n,) float64; nan for rules that ignore poison
    reason: list[str]
    kind: np.ndarray  # (n,) str, one of KINDS


@dataclass(frozen=True)
class Costs:
    """The price of each kind of mistake; the defaults make the expected cost Track 3.

    Every wrong answer costs ``wrong_answer`` (Track 1); a poison error adds
    ``poisonous_as_edible`` (a poisonous mushroom answered with an edible species
    or "unknown") or ``edible_as_poisonous`` (an edible one answered with a
    poisonous species) on top (Track 2). So ``wrong_answer`` alone is the cost of
    an answer that is wrong but not a poison error.
    """

    poisonous_as_edible: float = float(COST_POISONOUS_AS_EDIBLE)
    edible_as_poisonous: float = float(COST_EDIBLE_AS_POISONOUS)
    wrong_answer: float = 1.0

    def __post_init__(self) -> None:
        for name in ("poisonous_as_edible", "edible_as_poisonous", "wrong_answer"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"cost {name}={v!r} must be a finite number >= 0")
        if self.poisonous_as_edible + self.edible_as_poisonous <= 0:
            raise ValueError("poisonous_as_edible and edible_as_poisonous cannot both be 0; "
                             "the poison errors need a price to weigh against each other")


@dataclass
class DecisionSummary:
    """The four numbers (plus the two class ids) per observation that decide the answer.

    Probabilities are joint: ``best_edible_prob + ... + unknown_prob`` never exceed 1.
    A class id is -1 with probability 0 where no column of that kind exists.
    """

    best_edible_class: np.ndarray  # (n,) int64
    best_edible_prob: np.ndarray  # (n,) float64, the most probable edible species
    best_poisonous_class: np.ndarray  # (n,) int64
    best_poisonous_prob: np.ndarray  # (n,) float64, the most probable poisonous species
    poison_prob: np.ndarray  # (n,) float64, mass on all poisonous species
    unknown_prob: np.ndarray  # (n,) float64, probability of a species never seen

    def __len__(self) -> int:
        return len(self.poison_prob)


def poison_threshold(q_best_edible: np.ndarray, q_best_poisonous: np.ndarray,
                     costs: Costs | None = None) -> np.ndarray:
    """The break-even poison probability above which the best poisonous species beats the
    best edible answer: ``(c_ep + w·q_be - w·q_bp) / (c_pe + c_ep)``; with the default
    costs the Track 3 ``(1 + q_be - q_bp) / 101``."""
    c = costs or Costs()
    w = c.wrong_answer
    return (c.edible_as_poisonous + w * q_best_edible - w * q_best_poisonous) / (
        c.poisonous_as_edible + c.edible_as_poisonous)


def _check_columns(probs: np.ndarray, class_ids: np.ndarray, poisonous: np.ndarray) -> None:
    if probs.ndim != 2:
        raise ValueError(f"species_probs must be (n, C), got shape {probs.shape}")
    c = probs.shape[1]
    if class_ids.shape != (c,) or poisonous.shape != (c,):
        raise ValueError(
            f"class_ids and poisonous must have one entry per column ({c}), got "
            f"{class_ids.shape} and {poisonous.shape}"
        )


def summarise(species_probs: np.ndarray, unknown_prob: np.ndarray | None, class_ids: np.ndarray,
              poisonous: np.ndarray) -> DecisionSummary:
    """The :class:`DecisionSummary` of each row; arguments as for :func:`decide`."""
    probs = np.asarray(species_probs, dtype=np.float64)
    class_ids = np.asarray(class_ids, dtype=np.int64)
    poisonous = np.asarray(poisonous, dtype=bool)
    _check_columns(probs, class_ids, poisonous)
    n = len(probs)
    q_unknown = np.zeros(n) if unknown_prob is None else np.clip(
        np.asarray(unknown_prob, dtype=np.float64), 0.0, 1.0)
    if q_unknown.shape != (n,):
        raise ValueError(f"unknown_prob must have one entry per row ({n},), got {q_unknown.shape}")
    known = 1.0 - q_unknown  # joint probability of a species = its probability * known
    # Columns regrouped once, poisonous first (each group in its own order, so ties still
    # go to the lower column): each group is then a view, not a masked copy.
    cols = np.r_[np.flatnonzero(poisonous), np.flatnonzero(~poisonous)]
    grouped = probs[:, cols]
    n_poisonous = int(poisonous.sum())
    rows = np.arange(n)

    def best(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        if start == stop:
            return np.full(n, UNKNOWN, dtype=np.int64), np.zeros(n)
        j = np.argmax(grouped[:, start:stop], axis=1) + start
        return class_ids[cols[j]], grouped[rows, j] * known

    be_class, be_prob = best(n_poisonous, len(cols))
    bp_class, bp_prob = best(0, n_poisonous)
    p_poison = ((grouped[:, :n_poisonous] * known[:, None]).sum(axis=1) if n_poisonous
                else np.zeros(n))
    return DecisionSummary(be_class, be_prob, bp_class, bp_prob, p_poison, q_unknown)


def _kinds(codes: np.ndarray, prior_only: np.ndarray | None) -> np.ndarray:
    """Kind names of ``codes`` (indices into KINDS); rows in ``prior_only`` are prior-only."""
    codes = np.asarray(codes, dtype=np.int64)
    if prior_only is not None:
        mask = np.asarray(prior_only, dtype=bool)
        if mask.shape != codes.shape:
            raise ValueError(f"prior_only must have one entry per row ({len(codes)},), got "
                             f"{mask.shape}")
        codes = np.where(mask, KINDS.index(PRIOR_ONLY), codes)
    return np.asarray(KINDS, dtype=object)[codes]


def decide_summary(summary: DecisionSummary, costs: Costs | None = None,
                   prior_only: np.ndarray | None = None) -> Decision:
    """The answer of least expected cost per row: the best edible species, "unknown"
    (which counts as edible) or the best poisonous species.

    An edible answer ``e`` costs ``w·(1 - q_e) + c_pe·P`` in expectation, the best
    poisonous ``p`` costs ``w·(1 - q_p) + c_ep·(1 - P)``; ties go to the edible answer,
    and between an edible species and "unknown" to "unknown". ``prior_only``: (n,) bool,
    rows whose summary comes from a prior alone; their kind is ``prior_only``.
    """
    s = summary
    q_unknown = np.asarray(s.unknown_prob, dtype=np.float64)
    q_bes = np.asarray(s.best_edible_prob, dtype=np.float64)
    q_bp = np.asarray(s.best_poisonous_prob, dtype=np.float64)
    p_poison = np.asarray(s.poison_prob, dtype=np.float64)
    edible_is_unknown = q_unknown >= q_bes
    q_be = np.maximum(q_unknown, q_bes)
    thr = poison_threshold(q_be, q_bp, costs)
    choose_pois = p_poison > thr
    out = np.where(choose_pois, s.best_poisonous_class,
                   np.where(edible_is_unknown, UNKNOWN, s.best_edible_class)).astype(np.int64)
    # a poisonous species that is not the most probable answer is a poison-risk answer
    risk = choose_pois & (q_bp < q_be)
    codes = np.where(risk, KINDS.index(POISON_RISK),
                     np.where(~choose_pois & edible_is_unknown, KINDS.index(UNKNOWN_KIND),
                              KINDS.index(SPECIES)))
    reasons = []
    for i in range(len(out)):
        if choose_pois[i]:
            reasons.append(
                f"poison-risk: P(poisonous)={p_poison[i]:.3f} > {thr[i]:.3f}" if risk[i] else
                f"argmax: p={q_bp[i]:.3f} (poisonous)")
        elif edible_is_unknown[i]:
            reasons.append(f"unknown: P(unknown)={q_unknown[i]:.3f}, "
                           f"P(poisonous)={p_poison[i]:.3f} <= {thr[i]:.3f}")
        else:
            reasons.append(f"argmax: p={q_be[i]:.3f}, P(poisonous)={p_poison[i]:.3f} <= {thr[i]:.3f}")
    return Decision(out, p_poison, thr, reasons, _kinds(codes, prior_only))


def answer_mix(kind) -> dict[str, int]:
    """Answers per kind, every kind of :data:`KINDS` in that order (0 where none).

    ``kind``: the kinds of a batch's answers (a sequence, numpy or Arrow array).

    >>> answer_mix(["species", "unknown", "species"])
    {'species': 2, 'poison_risk': 0, 'unknown': 1, 'prior_only': 0}
    """
    values = kind.to_pylist() if hasattr(kind, "to_pylist") else \
        np.asarray(kind, dtype=object).ravel().tolist()
    counts = dict.fromkeys(KINDS, 0)
    for v in values:
        if v not in counts:
            raise ValueError(f"answer kind {v!r} is not one of {', '.join(KINDS)}; decide the "
                             "rows with heads.decision (or rescore an older batch)")
        counts[v] += 1
    return counts


def decide(
    species_probs: np.ndarray,
    unknown_prob: np.ndarray | None,
    class_ids: np.ndarray,
    poisonous: np.ndarray,
    rule: str = "track3",
    unknown_flag: np.ndarray | None = None,
    costs: Costs | None = None,
    prior_only: np.ndarray | None = None,
) -> Decision:
    """Pick one class id per row.

    Args:
        species_probs: (n, C) calibrated probabilities over the known classes.
            When ``unknown_prob`` is given they are taken as conditional on the
            observation being of a known species and scaled by ``1 - unknown_prob``.
        unknown_prob: (n,) calibrated probability of an unseen species, or None.
        class_ids: (C,) the class id of each column.
        poisonous: (C,) bool, the official poisonous flag of each column.
        rule: one of ``RULES``.
        unknown_flag: (n,) bool, the open-set detector's verdict (``argmax_unknown`` only).
        costs: the cost matrix of ``track3`` (default: Track 3's).
        prior_only: (n,) bool, rows whose probabilities are a prior alone (no evidence of
            their own, e.g. no usable photo): their answer's kind is ``prior_only``.
    """
    if rule not in RULES:
        raise ValueError(f"unknown decision rule {rule!r}; choose one of {', '.join(RULES)}")
    probs = np.asarray(species_probs, dtype=np.float64)
    class_ids = np.asarray(class_ids, dtype=np.int64)
    poisonous = np.asarray(poisonous, dtype=bool)
    n = len(probs)
    _check_columns(probs, class_ids, poisonous)
    q_unknown = np.zeros(n) if unknown_prob is None else np.clip(
        np.asarray(unknown_prob, dtype=np.float64), 0.0, 1.0)
    q = probs * (1.0 - q_unknown)[:, None]  # joint probabilities over known species
    p_poison = q[:, poisonous].sum(axis=1) if poisonous.any() else np.zeros(n)
    rows = np.arange(n)
    best = np.argmax(q, axis=1)

    if rule == "argmax":
        return Decision(class_ids[best], p_poison, np.full(n, np.nan),
                        [f"argmax: p={q[i, best[i]]:.3f}" for i in rows],
                        _kinds(np.full(n, KINDS.index(SPECIES)), prior_only))

    if rule == "argmax_unknown":
        if unknown_flag is None:
            raise ValueError("rule 'argmax_unknown' needs unknown_flag from the open-set detector")
        flag = np.asarray(unknown_flag, dtype=bool)
        out = np.where(flag, UNKNOWN, class_ids[best])
        reasons = ["unknown: open-set score above threshold" if flag[i]
                   else f"argmax: p={q[i, best[i]]:.3f}" for i in rows]
        codes = np.where(flag, KINDS.index(UNKNOWN_KIND), KINDS.index(SPECIES))
        return Decision(out, p_poison, np.full(n, np.nan), reasons, _kinds(codes, prior_only))

    # track3: the least expected cost among the best edible species, "unknown"
    # and the best poisonous species
    return decide_summary(summarise(probs, q_unknown, class_ids, poisonous), costs, prior_only)

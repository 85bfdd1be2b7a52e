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

Example:
    >>> import numpy as np
    >>> q = np.array([[0.90, 0.03, 0.07]])        # classes 10, 11 and "unknown"
    >>> d = decide(q[:, :2], q[:, 2], class_ids=np.array([10, 11]),
    ...            poisonous=np.array([False, True]), rule="track3")
    >>> int(d.class_id[0]), d.reason[0].split(":")[0]
    (11, 'poison-risk')
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heads.metrics import COST_EDIBLE_AS_POISONOUS, COST_POISONOUS_AS_EDIBLE, UNKNOWN

RULES = ("argmax", "argmax_unknown", "track3")


@dataclass
class Decision:
    """Per-row answers: ``class_id`` (-1 = unknown), the poison probability the
    rule saw, the threshold it compared against, and a short human reason."""

    class_id: np.ndarray  # (n,) int64
    poison_prob: np.ndarray  # (n,) float64
    poison_threshold: np.ndarray  # (n,) float64; nan for rules that ignore poison
    reason: list[str]


def poison_threshold(q_best_edible: np.ndarray, q_best_poisonous: np.ndarray) -> np.ndarray:
    """The Track 3 break-even poison probability: ``(1 + q_be - q_bp) / 101``."""
    a, b = COST_POISONOUS_AS_EDIBLE, COST_EDIBLE_AS_POISONOUS
    return (b + q_best_edible - q_best_poisonous) / (a + b)


def decide(
    species_probs: np.ndarray,
    unknown_prob: np.ndarray | None,
    class_ids: np.ndarray,
    poisonous: np.ndarray,
    rule: str = "track3",
    unknown_flag: np.ndarray | None = None,
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
    """
    if rule not in RULES:
        raise ValueError(f"unknown decision rule {rule!r}; choose one of {', '.join(RULES)}")
    probs = np.asarray(species_probs, dtype=np.float64)
    class_ids = np.asarray(class_ids, dtype=np.int64)
    poisonous = np.asarray(poisonous, dtype=bool)
    n, c = probs.shape
    if class_ids.shape != (c,) or poisonous.shape != (c,):
        raise ValueError(
            f"class_ids and poisonous must have one entry per column ({c}), got "
            f"{class_ids.shape} and {poisonous.shape}"
        )
    q_unknown = np.zeros(n) if unknown_prob is None else np.clip(
        np.asarray(unknown_prob, dtype=np.float64), 0.0, 1.0)
    q = probs * (1.0 - q_unknown)[:, None]  # joint probabilities over known species
    p_poison = q[:, poisonous].sum(axis=1) if poisonous.any() else np.zeros(n)
    rows = np.arange(n)
    best = np.argmax(q, axis=1)

    if rule == "argmax":
        return Decision(class_ids[best], p_poison, np.full(n, np.nan),
                        [f"argmax: p={q[i, best[i]]:.3f}" for i in rows])

    if rule == "argmax_unknown":
        if unknown_flag is None:
            raise ValueError("rule 'argmax_unknown' needs unknown_flag from the open-set detector")
        flag = np.asarray(unknown_flag, dtype=bool)
        out = np.where(flag, UNKNOWN, class_ids[best])
        reasons = ["unknown: open-set score above threshold" if flag[i]
                   else f"argmax: p={q[i, best[i]]:.3f}" for i in rows]
        return Decision(out, p_poison, np.full(n, np.nan), reasons)

    # track3: compare the best edible answer (edible species or "unknown")
    # with the best poisonous species by expected cost.
    q_edible = np.where(poisonous[None, :], -np.inf, q)
    best_edible = np.argmax(q_edible, axis=1)
    q_best_edible_species = q_edible[rows, best_edible] if (~poisonous).any() else np.full(n, -np.inf)
    edible_is_unknown = q_unknown >= q_best_edible_species
    q_be = np.maximum(q_unknown, q_best_edible_species)
    if poisonous.any():
        q_pois = np.where(poisonous[None, :], q, -np.inf)
        best_pois = np.argmax(q_pois, axis=1)
        q_bp = q_pois[rows, best_pois]
    else:
        best_pois, q_bp = np.zeros(n, dtype=np.int64), np.full(n, -np.inf)
    thr = poison_threshold(q_be, q_bp)
    choose_pois = p_poison > thr

    out = np.where(choose_pois, class_ids[best_pois],
                   np.where(edible_is_unknown, UNKNOWN, class_ids[best_edible]))
    reasons = []
    for i in rows:
        if choose_pois[i]:
            top_is_pois = poisonous[best[i]] and q[i, best[i]] >= q_be[i]
            reasons.append(
                f"argmax: p={q_bp[i]:.3f} (poisonous)" if top_is_pois else
                f"poison-risk: P(poisonous)={p_poison[i]:.3f} > {thr[i]:.3f}")
        elif edible_is_unknown[i]:
            reasons.append(f"unknown: P(unknown)={q_unknown[i]:.3f}, P(poisonous)={p_poison[i]:.3f} <= {thr[i]:.3f}")
        else:
            reasons.append(f"argmax: p={q_be[i]:.3f}, P(poisonous)={p_poison[i]:.3f} <= {thr[i]:.3f}")
    return Decision(out.astype(np.int64), p_poison, thr, reasons)

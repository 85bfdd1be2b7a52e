"""The decision analysis: every decision rule on the same labelled observations.

One set of calibrated scores and one kNN search feed every rule, so the rules differ
only in how they answer. ``sporeprint demo`` prints the official scores per rule;
``sporeprint report`` draws them and reuses the decisions for its held-out figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heads.decision import RULES
from heads.metrics import fungiclef_scores
from sporeprint.errors import SporeprintError
from sporeprint.scoring.model import Decided, ScoringModel
from sporeprint.scoring.observations import ObservationScores

# How each rule is named where people read it.
RULE_LABELS = {"argmax": "argmax", "argmax_unknown": "argmax + unknown",
               "track3": "Track 3 rule"}


@dataclass
class RuleComparison:
    """The same observations decided by each rule (``decided``) and the official scores
    of each (``scores``). ``truth`` is aligned with ``observations.observation_ids``:
    the observations of the request that have vectors in the model's space."""

    observations: ObservationScores
    truth: np.ndarray
    decided: dict[str, Decided]
    scores: dict[str, dict[str, float]]


def decide_every_rule(fs, model: ScoringModel, observation_ids: np.ndarray,
                      truth: np.ndarray, rules: tuple[str, ...] = RULES) -> RuleComparison:
    """Decide labelled stored observations with every rule in ``rules``.

    >>> c = decide_every_rule(fs, model, ids, truth)            # doctest: +SKIP
    >>> c.scores["track3"]["track2"], c.decided["argmax"].class_id
    """
    ids = np.asarray(observation_ids, np.int64)
    scores, _ = model.scores(fs, ids)
    if scores is None:
        raise SporeprintError(f"none of these {len(ids):,} observations has a vector in space "
                              f"{model.space!r}; embed or ingest their vectors first")
    order = np.argsort(ids)
    y = np.asarray(truth)[order][np.searchsorted(ids[order], scores.observation_ids)]
    poison = fs.poisonous_class_ids()
    near = model.neighbours.search(scores.queries, 5, model.calibration.detector["k"])
    decided = {rule: model.decide(scores, rule, near.unknown_score) for rule in rules}
    return RuleComparison(scores, y, decided,
                          {rule: fungiclef_scores(y, d.class_id, poison)
                           for rule, d in decided.items()})


def compare_rules(fs, model: ScoringModel, observation_ids: np.ndarray,
                  truth: np.ndarray) -> dict[str, dict[str, float]]:
    """Official scores of every decision rule on labelled observations."""
    return decide_every_rule(fs, model, observation_ids, truth).scores

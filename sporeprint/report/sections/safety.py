"""The top panel: how safe the scored batch's answers are. Answer kinds come from the
``kind`` column of ``predictions`` (never from reason text); poisonous mushrooms answered
as edible need the truth (``--truth`` or labels stored with the observations); the decision
rule is the one that reproduces the stored answers from what was stored with them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from heads.decision import POISON_RISK, PRIOR_ONLY, UNKNOWN_KIND, Costs, answer_mix

from ..page import Note, Section, Tiles
from .common import share
from .species import poisonous_recall_table


@dataclass
class BatchTruth:
    """The batch's answers of the observations that have a true class."""

    observation_ids: np.ndarray
    truth: np.ndarray
    answer: np.ndarray
    source: str
    unmatched: int  # answered observations without a truth row


@dataclass
class SafetyCounts:
    """What the panel shows (``missed`` etc. are None without the truth)."""

    answers: int
    poison_risk: int
    unknown: int
    prior_only: int
    rules: list[str]  # rules that reproduce every stored answer
    checked: int  # answers the rules were checked on (not prior-only)
    poisonous: int | None = None  # truly poisonous observations
    called_edible: int | None = None
    called_unknown: int | None = None


def batch_truth(predictions: pa.Table, truth: str | Path | None) -> BatchTruth | None:
    """The truth of a batch's answered observations: from the ``truth`` CSV when given, else
    the labels stored with the observations (None when there are none)."""
    obs = predictions.column("observation_id").to_numpy()
    answer = _class_ids(predictions.column("class_id"))
    if truth is not None:
        from sporeprint.evaluation import read_labels

        t_obs, t_cls = read_labels(truth, "truth")
        common, ia, it = np.intersect1d(obs, t_obs, return_indices=True)
        return BatchTruth(common, t_cls[it], answer[ia], f"truth from {Path(truth).name}",
                          int(len(obs) - len(common)))
    stored = predictions.column("true_class_id")
    has = ~np.asarray(stored.is_null().to_numpy(zero_copy_only=False))
    if not has.any():
        return None
    return BatchTruth(obs[has], _class_ids(stored)[has], answer[has],
                      "labels stored with the observations", int((~has).sum()))


def reproducing_rules(predictions: pa.Table) -> tuple[list[str], int]:
    """``(rules, n)``: the decision rules whose answers equal every stored answer of the ``n``
    rows not answered from the training prior alone. Argmax answers the first of the stored
    top five; argmax + unknown that or 'unknown'; the Track 3 rule is replayed from the stored
    decision summary (``sporeprint.decisions.redecide``)."""
    from sporeprint.decisions import redecide
    from sporeprint.errors import SporeprintError

    kinds = np.asarray(predictions.column("kind").to_pylist(), dtype=object)
    scored = kinds != PRIOR_ONLY
    answer = _class_ids(predictions.column("class_id"))
    top = np.array([t[0] if t else -2 for t in predictions.column("top5_class_ids").to_pylist()],
                   np.int64)
    rules = []
    try:
        replay = _class_ids(redecide(predictions, Costs()).column("class_id"))
        if np.array_equal(replay[scored], answer[scored]):
            rules.append("track3")
    except SporeprintError:  # stored without the decision summary
        pass
    if np.all(((answer == top) | ((answer < 0) & (kinds == UNKNOWN_KIND)))[scored]):
        rules.append("argmax_unknown")
    if np.all((answer == top)[scored]):
        rules.append("argmax")
    return rules, int(scored.sum())


def safety_counts(predictions: pa.Table, truth: BatchTruth | None,
                  poison: np.ndarray) -> SafetyCounts:
    mix = answer_mix(predictions.column("kind"))
    rules, checked = reproducing_rules(predictions)
    c = SafetyCounts(sum(mix.values()), mix[POISON_RISK], mix[UNKNOWN_KIND], mix[PRIOR_ONLY], rules,
                     checked)
    if truth is not None:
        pois = np.isin(truth.truth, poison)
        c.poisonous = int(pois.sum())
        c.called_edible = int((pois & (truth.answer >= 0) & ~np.isin(truth.answer, poison)).sum())
        c.called_unknown = int((pois & (truth.answer < 0)).sum())
    return c


def section(fs, batch: str | None, truth: str | Path | None) -> Section:
    s = Section("safety", "Safety: poisonous mushrooms in the scored batch")
    if batch is None:
        return s.absent("No scored batch in the predictions table: score one with "
                        "`sporeprint score`, then pass --batch.")
    predictions = fs.batch_predictions(batch)
    bt = batch_truth(predictions, truth)
    poison = fs.poisonous_class_ids()
    c = safety_counts(predictions, bt, poison)
    run_key = predictions.column("run_key")[0].as_py() if predictions.num_rows else "?"
    tiles = []
    if c.poisonous is not None:
        missed = c.called_edible + c.called_unknown
        tiles.append(("poisonous_missed", f"{missed:,}",
                      f"of {c.poisonous:,} poisonous observations answered edible "
                      f"({c.called_edible:,}) or unknown ({c.called_unknown:,})"))
    tiles += [("poison_risk", f"{c.poison_risk:,}",
               f"poison-risk answers ({share(c.poison_risk, c.answers)} of {c.answers:,})"),
              ("unknown", share(c.unknown, c.answers),
               f"answered 'unknown species' ({c.unknown:,} of {c.answers:,})"),
              ("rule", _rule_words(c.rules), _rule_note(c))]
    s.blocks.append(Tiles(tiles))
    lines = [f"Batch {batch!r}, scored by {run_key}: {c.answers:,} answers, "
             f"{c.prior_only:,} of them from the training prior alone (no usable image)."]
    if bt is None:
        lines.append("No truth for this batch: pass --truth with its truth CSV (observation "
                     "id, class_id) to count poisonous mushrooms answered as edible.")
    else:
        lines.append(f"Truth: {bt.source}, {len(bt.truth):,} answered observations"
                     + (f"; {bt.unmatched:,} answered observations have no truth and are left out"
                        if bt.unmatched else "") + ". 'Unknown' counts as a miss, as in Track 2.")
    s.blocks.append(Note(" ".join(lines)))
    if bt is not None:
        table = poisonous_recall_table(fs, bt.truth, bt.answer, poison,
                                       f"Recall per poisonous species in batch {batch!r} "
                                       f"({bt.source})")
        s.blocks.append(table or Note("No observation of this batch is of a poisonous species.",
                                      "omitted"))
    return s


def _rule_words(rules: list[str]) -> str:
    from sporeprint.scoring import RULE_LABELS

    return RULE_LABELS[rules[0]] if rules else "not reproduced"


def _rule_note(c: SafetyCounts) -> str:
    from sporeprint.scoring import RULE_LABELS

    if not c.rules:
        return (f"decision rule: none of the rules gives the stored answers of the {c.checked:,} "
                "scored observations (the rule is not stored with predictions)")
    also = f"; {', '.join(RULE_LABELS[r] for r in c.rules[1:])} give the same answers here" \
        if len(c.rules) > 1 else ""
    cost = " with the Track 3 costs (100:1)" if c.rules[0] == "track3" else ""
    return (f"decision rule: its answers{cost} equal all {c.checked:,} stored answers decided "
            f"from photos{also} (the rule is not stored with predictions; this one reproduces them)")


def _class_ids(column) -> np.ndarray:
    """Class ids as int64, NULL as -1 (an answer of no class is 'unknown')."""
    v = column.to_numpy(zero_copy_only=False)
    return np.where(np.isnan(v.astype(float)), -1, v).astype(np.int64)

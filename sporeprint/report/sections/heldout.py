"""Held-out decisions: a seeded sample of the held-out test part decided by the run as
`sporeprint score` decides, every rule from the same calibrated scores
(``sporeprint.scoring.decide_every_rule``); reliability, unknown scores, and the
poisonous species answered wrongly."""

from __future__ import annotations

import numpy as np

from heads.metrics import reliability_bins
from store import StoreError

from .. import figures
from ..page import Figure, Note, Section, Table
from .common import members, query
from .species import poisonous_recall_table, species_names

# Without a saved training index the held-out section searches exactly; past this many
# training images that alone would take the report over a minute on 2 cores.
HELDOUT_EXACT_MAX = 100_000


def section(fs, run: dict | None, n_points: int, seed: int) -> Section:
    s = Section("heldout", "Held-out decisions: rules, calibration, unknown detector")
    if run is None:
        return s.absent("No trained run: the held-out figures need a run's heads and "
                        "calibration (`sporeprint train`).")
    from sporeprint.scoring.calibration import record_id

    cal_id = record_id(members(run))
    if query(fs, "run_record", cal_id).num_rows == 0:
        return s.absent(f"No held-out figures: run {run['run_id']} has no calibration record "
                        f"{cal_id!r}; fit it with `sporeprint calibrate --store {fs.path} "
                        f"--run {run['run_id']}`.")
    sample = query(fs, "held_out_sample", n_points, seed)
    if sample.num_rows == 0:
        return s.absent("No held-out figures: the store has no labelled observations in the "
                        "held-out test part (`sporeprint train` makes the splits).")
    ids = sample.column("observation_id").to_numpy()
    truth = sample.column("class_id").to_numpy()
    too_slow = _too_slow_without_index(fs, run)
    if too_slow:
        return s.absent(too_slow)
    from heads import HeadsError
    from retrieval import RetrievalError
    from sporeprint.errors import SporeprintError
    from sporeprint.scoring import ScoringModel, decide_every_rule

    try:
        model = ScoringModel.load(fs, members(run))
    except (SporeprintError, StoreError, HeadsError, RetrievalError) as exc:
        return s.absent(f"No held-out figures: run {run['run_id']} could not be loaded ({exc}).")
    try:
        comparison = decide_every_rule(fs, model, ids, truth)
    except SporeprintError:
        return s.absent(f"No held-out figures: none of the {len(ids):,} sampled held-out "
                        f"observations has a vector in space {model.space!r}.")
    y = comparison.truth
    cal = model.calibration
    calibration = (f"calibrated: temperature "
                   f"{cal.temperature_scaler.temperature_:.3g}, poison log-odds shift "
                   f"{cal.fitted_prior.bias_:+.3g}"
                   + ("" if cal.poison_shift else " (fitted, not applied)"))
    n, n_unknown = len(y), int((~np.isin(y, model.classes)).sum())
    s.blocks.append(Note(
        f"{n:,} labelled observations of the held-out test part (a seeded sample of at most "
        f"{n_points:,}; {n_unknown:,} of unknown species), decided by run {run['run_id']} as "
        f"`sporeprint score` decides, with its calibration record {cal_id!r} ({calibration})."))
    _rules_block(s, comparison.scores, calibration)
    decided = comparison.decided["track3"]
    poison = fs.poisonous_class_ids()
    recall = poisonous_recall_table(fs, y, decided.class_id, poison,
                                    "Recall per poisonous species in the held-out sample, "
                                    f"decided by the Track 3 rule ({calibration})")
    if recall is not None:
        s.blocks.append(recall)
    _reliability_block(s, model, comparison.observations, y)
    _unknown_block(s, model, decided, y)
    _poison_confusion_block(fs, s, decided, y, poison)
    return s


def _too_slow_without_index(fs, run: dict) -> str | None:
    from sporeprint.indexing import index_dir
    from sporeprint.scoring.index import SAVED_INDEX_KINDS

    saved = any((index_dir(fs.path, run["space"], kind, "train") / "manifest.json").is_file()
                for kind in SAVED_INDEX_KINDS)
    n_train = fs.selection_image_ids(run["space"], "train").size
    if saved or n_train <= HELDOUT_EXACT_MAX:
        return None
    return (f"No held-out figures: the unknown score needs a search over {n_train:,} training "
            "images, too slow without a saved index; build one with `sporeprint index build "
            f"--store {fs.path} --space {run['space']} --where train --kind ivf_flat`.")


def _rules_block(s: Section, per_rule: dict[str, dict[str, float]], calibration: str) -> None:
    from sporeprint.scoring import RULE_LABELS

    rules = list(per_rule)
    keys = ("track1", "track2", "track3", "macro_f1")
    values = {k: [float(per_rule[r].get(k, np.nan)) for r in rules] for k in keys}
    best = {k: RULE_LABELS.get(rules[int(np.nanargmin(values[k]))], "?") for k in keys[:3]}
    missed = {RULE_LABELS.get(r, r): int(per_rule[r]["poisonous_as_edible"]) for r in rules}
    s.blocks.append(Figure(
        figures.rule_metrics([RULE_LABELS.get(r, r) for r in rules], values),
        "Track 1-3 and macro F1 per decision rule",
        "The same held-out observations decided by each rule from the same probabilities "
        f"({calibration}): argmax (always the most probable species), argmax + "
        "unknown (answer 'unknown species' when the unknown score crosses its threshold) and "
        "the Track 3 rule (the decision that minimises the expected Track 3 cost, which raises "
        "a poisonous species when P(poisonous) is high enough). Track 2 counts 100 per "
        "poisonous mushroom answered edible or unknown. Poisonous answered edible or unknown: "
        + ", ".join(f"{k} {v}" for k, v in missed.items()) + ".",
        f"Here the lowest Track 1 is {best['track1']}'s, the lowest Track 2 {best['track2']}'s "
        f"and the lowest Track 3 {best['track3']}'s. The Track 3 rule trades wrong species "
        "names for fewer missed poisonous mushrooms; if argmax + unknown does not lower "
        "Track 1 against argmax, the unknown detector is not earning its keep on this data."))
    s.blocks.append(Table(["decision rule", "Track 1", "Track 2", "Track 3", "macro F1"],
                          [[RULE_LABELS.get(r, r)] + [values[k][i] for k in keys]
                           for i, r in enumerate(rules)],
                          f"Scores per decision rule ({calibration})"))


def _reliability_block(s: Section, model, scores, y: np.ndarray) -> None:
    known = np.isin(y, model.classes)
    if not known.any():
        s.blocks.append(Note("No reliability diagram: no held-out observation is of a known "
                             "species.", "omitted"))
        return
    lp = scores.log_probs[known]
    before = np.exp(lp)
    before /= before.sum(1, keepdims=True)
    after = model.calibration.species_probs(lp, model.poisonous)
    curves = {}
    for name, p in (("before calibration", before), ("after calibration", after)):
        top = p.argmax(1)
        curves[name] = reliability_bins(p[np.arange(len(p)), top], model.classes[top] == y[known])
    (cb, ab, nb, eb), (ca, aa, na, ea) = curves.values()
    over = {name: int(((a < c) & (n > 0)).sum()) for name, (c, a, n, _) in curves.items()}
    s.blocks.append(Figure(
        figures.reliability(curves), "reliability diagram before and after calibration",
        f"{int(known.sum()):,} held-out observations of known species: the probability of the "
        "top species (10 equal-width bins) against how often it is the true species. Left: the "
        "ensemble's raw mean probabilities; right: after temperature scaling and the poison "
        "prior shift fitted on the validation parts. Grey bars: observations per bin. ECE is "
        f"the expected calibration error (bin-weighted mean gap to the diagonal): {eb:.3f} "
        f"before, {ea:.3f} after.",
        f"Points below the diagonal are over-confidence: {over['before calibration']} of the "
        f"occupied bins before calibration, {over['after calibration']} after. Calibration "
        f"{'lowered' if ea < eb else 'did not lower'} the ECE on this sample; the poison-risk "
        "rule and the unknown probability both rely on these probabilities being honest. Bins "
        "with few observations are noisy."))


def _unknown_block(s: Section, model, decided, y: np.ndarray) -> None:
    is_unknown = ~np.isin(y, model.classes)
    score = np.asarray(decided.unknown_score, float)
    threshold = float(model.calibration.detector["threshold"])
    if is_unknown.all() or not is_unknown.any():
        s.blocks.append(Note("No unknown-score figure: the held-out sample needs both known and "
                             "unknown species.", "omitted"))
        return
    from heads.metrics import roc_auc_score

    auroc = float(roc_auc_score(is_unknown, score))
    caught = float((score[is_unknown] > threshold).mean())
    false = float((score[~is_unknown] > threshold).mean())
    s.blocks.append(Figure(
        figures.unknown_scores(score[~is_unknown], score[is_unknown], threshold),
        "unknown score for known and unknown species",
        f"The unknown score of each held-out observation (the detector fuses the distance to "
        f"its nearest training observations with the heads' uncertainty), for known species "
        f"(grey) and species absent from training (amber), each normalised to its own area; "
        f"the red line is the threshold calibrated on the validation parts. AUROC {auroc:.3f}; "
        f"above the threshold: {caught:.0%} of unknown and {false:.0%} of known observations.",
        "The further apart the two humps, the better 'unknown species' answers are; AUROC 0.5 "
        "is chance. Known observations to the right of the line are answered 'unknown' (a "
        "Track 1 error, and for a poisonous species a Track 2 miss); unknown ones to the left "
        "receive a wrong species name."))


def _poison_confusion_block(fs, s: Section, decided, y: np.ndarray, poison: np.ndarray,
                            rows: int = 8, columns: int = 12) -> None:
    pred = np.asarray(decided.class_id, np.int64)
    wrong = np.isin(y, poison) & (pred != y)
    if not wrong.any():
        s.blocks.append(Note("No poisonous held-out observation was answered wrongly, so there "
                             "is no poisonous-species confusion to show.", "omitted"))
        return
    true_ids, errors = np.unique(y[wrong], return_counts=True)
    order = np.lexsort((true_ids, -errors))[:rows]
    true_ids, errors = true_ids[order], errors[order]
    sel = wrong & np.isin(y, true_ids)
    called, n_called = np.unique(pred[sel], return_counts=True)
    called = called[np.lexsort((called, -n_called))][:columns]
    names = species_names(fs, np.concatenate([true_ids, called]))

    def tox(c):
        return None if c < 0 else names.poisonous(c)

    # columns grouped by toxicity (poisonous, edible, unknown), then genus, then species
    called = np.array(sorted(called, key=lambda c: ({True: 0, False: 1, None: 2}[tox(c)],
                                                     names.genus(c), names.species(c))), np.int64)
    m = np.zeros((len(true_ids), len(called)), dtype=np.int64)
    for i, t in enumerate(true_ids):
        for j, c in enumerate(called):
            m[i, j] = int(np.sum(sel & (y == t) & (pred == c)))
    answer = ["unknown species" if c < 0 else
              f"{names.species(c)} ({names.genus(c)}, {'poisonous' if tox(c) else 'edible'})"
              for c in called]
    if m.shape == (1, 1):
        s.blocks.append(Note(
            f"No poisonous-species confusion figure: one poisonous species was answered wrongly, "
            f"always the same way: {names.species(true_ids[0])} ({names.genus(true_ids[0])}) "
            f"called {answer[0]} {int(m[0, 0])} of {int((y == true_ids[0]).sum())} times.",
            "omitted"))
    else:
        row_labels = [f"{names.species(t)} ({names.genus(t)}) {e}/{int((y == t).sum())} wrong"
                      for t, e in zip(true_ids, errors, strict=True)]
        missed = int(m[:, [tox(c) is not True for c in called]].sum())
        s.blocks.append(Figure(
            figures.group_confusion(row_labels, answer, m, [tox(c) for c in called]),
            "poisonous species most often confused",
            f"The held-out poisonous species with the most wrong answers under the Track 3 rule "
            f"(rows, at most {rows}: errors / observations) and what they were called (columns, "
            f"the {columns} most frequent answers, grouped poisonous, edible, unknown and then "
            f"by genus). Column labels give the genus and the toxicity of the answer. Wrong "
            f"answers shown: {int(m.sum())}, of which edible or unknown: {missed}.",
            "Answers in grey or amber columns are the dangerous ones: a poisonous mushroom called "
            "an edible species or 'unknown' (both count as a miss in Track 2). Red columns are "
            "look-alikes within the poisonous list: a wrong name but a safe answer. Confusions "
            "within one genus are look-alikes; across genera they point at poor photos or "
            "labels."))

    def same_genus(mask) -> int:
        return int(sum(int(m[i, j]) for i, t in enumerate(true_ids) for j in np.flatnonzero(mask)
                       if called[j] >= 0 and names.genus(called[j]) == names.genus(t)))

    masks = (("poisonous (safe)", np.array([tox(c) is True for c in called])),
             ("edible (missed)", np.array([tox(c) is False for c in called])),
             ("unknown (missed)", called < 0))
    same = same_genus(np.ones(len(called), bool))
    s.blocks.append(Table(
        ["toxicity of the answer", "wrong answers", "of which in the same genus"],
        [[label, int(m[:, mask].sum()), same_genus(mask)] for label, mask in masks],
        f"Wrong answers of the poisonous species above under the Track 3 rule ({same} within "
        "the true species' genus)"))

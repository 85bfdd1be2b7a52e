"""The trained run: the Track scores recorded at training (each named with its rule and
calibration), per-epoch training curves of each fold, and the calibration record."""

from __future__ import annotations

import json

import numpy as np

from .. import figures
from ..page import Figure, Note, Section, Table
from .common import members, query

# What the scores recorded at training time are: `heads.train.evaluate` (fold heads, on
# their validation part) and `sporeprint.training.scores_of` (the ensemble, on the
# held-out test part) both answer the most probable species of the raw probabilities.
TRAINING_RULE = "argmax, uncalibrated (never 'unknown')"
KEYS = ("track1", "track2", "track3", "macro_f1")


def section(fs, run: dict | None) -> Section:
    s = Section("run", "Trained run: scores recorded at training, training curves, calibration")
    if run is None:
        return s.absent("No trained run in the store: train heads with `sporeprint train`, "
                        "then pass --run.")
    folds = members(run)
    records = {m: query(fs, "run_record", m).to_pylist() for m in folds}
    s.blocks.append(Note(f"Run {run['run_id']} ({run['kind']}, space {run['space']}, head "
                         f"{run['head']}); members: {', '.join(folds)}."))
    _scores(s, run, records)
    _curves(s, records)
    _calibration(fs, s, run, folds)
    return s


def _scores(s: Section, run: dict, records: dict[str, list[dict]]) -> None:
    labels, table = [], []
    for member, rows in records.items():
        if not rows:
            continue
        m, fold = json.loads(rows[0]["metrics"] or "{}"), rows[0]["fold"]
        if "track3" in m:
            name = f"fold{fold}" if fold is not None else member
            labels.append(f"{name} (validation)")
            epoch = f", epoch {m['epoch']}" if "epoch" in m else ""
            table.append(_metric_row(labels[-1], m, "", "n_observations",
                                     f"{TRAINING_RULE}; the fold head{epoch}"))
    if run["kind"] == "ensemble" and "test_track3" in run["metrics"]:
        labels.append("ensemble (held-out test part)")
        table.append(_metric_row(labels[-1], run["metrics"], "test_", "test_n",
                                 f"{TRAINING_RULE}; the ensemble's mean probabilities"))
    if not table:
        s.absent(f"Run {run['run_id']} has no Track metrics recorded.")
        return
    values = {k: [np.nan if row[1 + i] is None else row[1 + i] for row in table]
              for i, k in enumerate(KEYS)}
    worst = int(np.nanargmax(values["track2"])) if np.isfinite(values["track2"]).any() else 0
    s.blocks.append(Figure(
        figures.run_metrics(labels, values), "Track 1-3 and macro F1 recorded at training",
        "The official FungiCLEF costs per observation as recorded when the run was trained: "
        "Track 1 = classification error, Track 2 = 100 × poisonous answered as edible + 1 × "
        "edible answered as poisonous, Track 3 = their sum; and macro F1 (×100). Decision rule: "
        f"{TRAINING_RULE}: each fold head on its validation part, the ensemble on the "
        "held-out test part. These are not the scores of the calibrated Track 3 rule that "
        "`sporeprint score` answers with; the held-out section below gives those.",
        f"The highest Track 2 here is {labels[worst]} ({values['track2'][worst]:.3f}). Track 2 "
        "dominated by the ×100 term means poisonous mushrooms are being answered edible. A "
        "large gap between folds, or between validation and held-out scores, means the "
        "numbers are noisy or the heads overfit."))
    s.blocks.append(Table(["evaluated on", "Track 1", "Track 2", "Track 3", "macro F1",
                           "observations", "decision rule; calibration; model"], table))


def _metric_row(label: str, m: dict, prefix: str, n_key: str, rule: str) -> list:
    def g(k):
        v = m.get(prefix + k)
        return None if v is None else float(v)
    n = m.get(n_key)
    return [label, *(g(k) for k in KEYS), None if n is None else int(n), rule]


def _curves(s: Section, records: dict[str, list[dict]]) -> None:
    curves = {}
    for member, rows in records.items():
        if not rows:
            continue
        m, fold = json.loads(rows[0]["metrics"] or "{}"), rows[0]["fold"]
        history = m.get("history") or []
        if history:
            curves[f"fold{fold}" if fold is not None else member] = (history, m.get("epoch"))
    if not curves:
        s.blocks.append(Note("No training curves: these fold runs were recorded without "
                             "per-epoch history (trained by an older sporeprint).", "omitted"))
        return
    epochs = max(len(h) for h, _ in curves.values())
    if epochs < 2:
        s.blocks.append(Note(f"No training curves: every fold was trained for {epochs} epoch, "
                             "so each curve would be a single point.", "omitted"))
        return
    stopped = ", ".join(f"{name}: {len(h)} epochs, kept epoch {best}"
                        for name, (h, best) in curves.items())
    s.blocks.append(Figure(
        figures.training_curves(curves), "training curves per fold",
        "Per fold head and epoch: the training loss and the validation loss (left), and the "
        "validation Track 3 (right; argmax of the head's uncalibrated probabilities). The "
        f"dotted line marks the epoch whose weights were kept. {stopped}.",
        "A validation loss that turns up while the training loss keeps falling is "
        "over-fitting; the kept epoch should sit near the validation minimum. Folds whose "
        "curves differ much point at a small or uneven validation part."))


def _calibration(fs, s: Section, run: dict, folds: list[str]) -> None:
    from sporeprint.scoring.calibration import record_id

    cal_id = record_id(folds)
    cal = query(fs, "run_record", cal_id).to_pylist()
    if not cal:
        s.absent(f"No calibration record {cal_id!r}: `sporeprint train` records it for the "
                 f"runs it trains; fit it with `sporeprint calibrate --store {fs.path} --run "
                 f"{run['run_id']}`.")
        return
    c = json.loads(cal[0]["metrics"] or "{}")
    m = c.get("metrics", {})
    shift = (c.get("poison_prior") or {}).get("bias")
    rows = [["calibration mode", c.get("mode", "oof")],
            ["temperature", (c.get("temperature") or {}).get("temperature")],
            ["poison log-odds shift" + ("" if c.get("poison_shift", True)
                                        else " (fitted, not applied)"), shift],
            ["unknown threshold (fused score)", (c.get("detector") or {}).get("threshold")],
            ["unknown rate in validation", c.get("unknown_rate")]]
    rows += [[k.replace("_", " "), v] for k, v in m.items()]
    s.blocks.append(Table(["calibration on the validation parts", "value"],
                          [[k, _num(v)] for k, v in rows], f"Calibration record {cal_id}"))
    s.blocks.append(Note("Calibration: nll before/after shows what temperature scaling gained; "
                         "val track1 open set vs never unknown shows what answering 'unknown' "
                         "saves; auroc is how well the unknown score separates unseen species."))


def _num(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v

"""The poisonous / edible / unknown confusion of a batch's answers against its truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import figures
from ..page import Figure, Section
from .common import query

TOXICITY = ["poisonous", "edible", "unknown"]


def section(fs, batch: str | None, truth: str | Path | None) -> Section:
    s = Section("confusion", "Poisonous / edible / unknown confusion")
    if truth is not None:
        if batch is None:
            return s.absent("A truth file was given but the store has no scored batch to "
                            "compare it with.")
        m, n_unmatched = truth_confusion(fs, batch, truth)
        use, source = batch, f"labels from {Path(truth).name}"
        if n_unmatched:
            source += f"; {n_unmatched:,} answered observations have no truth row and are left out"
    else:
        batches = query(fs, "prediction_batches").to_pylist()
        labelled = [b["batch"] for b in batches if b["labelled"] > 0]
        use = batch if batch in labelled else (labelled[0] if labelled else None)
        if use is None:
            return s.absent("No labelled held-out predictions: the scored batches' observations "
                            "carry no class labels (pass --truth with the batch's truth CSV, or "
                            "score a labelled held-out file).")
        m = np.zeros((3, 3), dtype=np.int64)
        for r in query(fs, "labelled_outcomes", use).to_pylist():
            m[TOXICITY.index(r["truth"]), TOXICITY.index(r["answer"])] += r["observations"]
        source = "labels stored with the observations"
    if m.sum() == 0:
        return s.absent(f"No observation of batch {use!r} has a label to compare with.")
    missed = int(m[0, 1] + m[0, 2])
    unseen = int(m[2].sum())
    recognised = (f"{int(m[2, 2])} of the {unseen} unseen species were answered 'unknown'"
                  if unseen else "the batch has no observation of an unseen species")
    s.blocks.append(Figure(
        figures.confusion(TOXICITY, m), "poisonous/edible/unknown confusion",
        f"Batch {use!r} ({source}): {int(m.sum()):,} labelled observations, truth (rows) against "
        "the answer's group (columns): a poisonous species, an edible species, or 'unknown "
        "species'. Each cell gives the count and the share of its row.",
        f"The top row's edible and unknown cells are poisonous mushrooms answered as safe "
        f"({missed} of {int(m[0].sum())} here); each costs 100 in Track 2, since 'unknown' "
        f"counts as edible. The bottom row is the unseen species: {recognised}."))
    return s


def truth_confusion(fs, batch: str, truth: str | Path) -> tuple[np.ndarray, int]:
    """3x3 counts of a batch's answers against a truth CSV, and how many answers had no truth."""
    from sporeprint.evaluation import read_labels

    t_obs, t_cls = read_labels(truth, "truth")
    answers = query(fs, "batch_answers", batch)
    a_obs = answers.column("observation_id").to_numpy()
    a_cls = answers.column("class_id").to_numpy(zero_copy_only=False)
    a_cls = np.where(np.isnan(a_cls.astype(float)), -1, a_cls).astype(np.int64)
    common, ia, it = np.intersect1d(a_obs, t_obs, return_indices=True)
    poison = query(fs, "poisonous_classes").column("class_id").to_numpy()

    def group(c):
        return np.where(c < 0, 2, np.where(np.isin(c, poison), 0, 1))

    m = np.zeros((3, 3), dtype=np.int64)
    np.add.at(m, (group(t_cls[it]), group(a_cls[ia])), 1)
    return m, int(len(a_obs) - len(common))

"""Score a submission file against a truth file with the official definitions."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from heads.metrics import fungiclef_scores
from sporeprint.errors import SporeprintError
from store.reference import poisonous_class_ids

log = logging.getLogger(__name__)



def _key(name: str) -> str:
    """Column names compare case- and underscore-insensitively (observationID, ObservationId
    and observation_id are one column)."""
    return name.replace("_", "").lower()


def read_labels(path: str | Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(observation_ids, class_ids)`` from a CSV with an observation id column
    (``observationID`` or ``observation_id``) and ``class_id``; first row per observation."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    try:
        table = pacsv.read_csv(path)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise SporeprintError(f"{what} file {path} is not a readable CSV: {exc}") from exc
    id_col = next((c for c in table.column_names if _key(c) == "observationid"), None)
    cls_col = next((c for c in table.column_names if _key(c) == "classid"), None)
    if id_col is None or cls_col is None:
        raise SporeprintError(
            f"{what} file {path} needs columns observationID (or observation_id) and "
            f"class_id; it has {', '.join(table.column_names)}"
        )
    try:
        obs = table[id_col].cast(pa.int64()).to_numpy(zero_copy_only=False)
        cls = table[cls_col].cast(pa.int64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SporeprintError(f"{what} file {path}: ids and class_id must be integers with no "
                         f"blanks ({exc})") from exc
    _, first = np.unique(obs, return_index=True)
    keep = np.sort(first)
    return obs[keep], cls[keep]


def evaluate_files(predictions: str | Path, truth: str | Path,
                   missing_as_unknown: bool = False) -> dict[str, float]:
    """Join predictions to truth by observation id and compute the official scores."""
    p_obs, p_cls = read_labels(predictions, "predictions")
    t_obs, t_cls = read_labels(truth, "truth")
    order = np.argsort(p_obs)
    pos = np.searchsorted(p_obs[order], t_obs)
    pos = np.clip(pos, 0, max(len(p_obs) - 1, 0))
    found = (len(p_obs) > 0) & (p_obs[order][pos] == t_obs) if len(p_obs) else np.zeros(len(t_obs), bool)
    missing = int((~found).sum())
    if missing and not missing_as_unknown:
        examples = ", ".join(str(x) for x in t_obs[~found][:5])
        raise SporeprintError(
            f"{missing} of {len(t_obs)} truth observations have no prediction (e.g. {examples}); "
            "score the missing observations, or pass --missing-as-unknown to count them as 'unknown'"
        )
    y_pred = np.where(found, p_cls[order][pos] if len(p_obs) else -1, -1)
    extra = len(np.setdiff1d(p_obs, t_obs))
    if extra:
        log.warning("%d predicted observations are not in the truth file and are ignored", extra)
    scores = fungiclef_scores(t_cls, y_pred, poisonous_class_ids())
    scores["missing_predictions"] = missing
    scores["ignored_predictions"] = extra
    return scores


def format_scores(scores: dict[str, float]) -> str:
    """A two-column table: scores, then the poisonous confusion counts."""
    rows = [
        ("observations", f"{scores['n']:d}"),
        ("accuracy", f"{100 * scores['accuracy']:.2f} %"),
        ("macro F1", f"{scores['macro_f1']:.2f}"),
        ("Track 1 (classification error)", f"{scores['track1']:.4f}"),
        ("Track 2 (poison cost)", f"{scores['track2']:.4f}"),
        ("Track 3 (1 + 2)", f"{scores['track3']:.4f}"),
        ("Track 4 (unknown-aware cost)", f"{scores['track4']:.4f}"),
        ("poisonous called edible/unknown", f"{scores['poisonous_as_edible']:d}"),
        ("edible called poisonous", f"{scores['edible_as_poisonous']:d}"),
        ("poisonous called poisonous", f"{scores['poisonous_correct_flag']:d}"),
        ("unknown called a species", f"{scores['unknown_as_species']:d}"),
        ("species called unknown", f"{scores['species_as_unknown']:d}"),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{width}}  {v:>10}" for k, v in rows)

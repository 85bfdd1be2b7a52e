"""The predictions table and the files written for a scored batch.

Columns of the table (and of the store's ``predictions`` rows): observation_id,
class_id (-1 = unknown species), kind (the kind of answer, one of
``heads.decision.KINDS``: species / poison_risk / unknown / prior_only), status
(scored / no_usable_image / rejected), reason (text for people), poison_prob,
unknown_score, unknown_prob, top5_class_ids, top5_probs, evidence_observation_ids, and
the decision summary that ``sporeprint decide`` replays under other costs:
best_edible_class, best_edible_prob, best_poisonous_class, best_poisonous_prob (joint
probabilities: already scaled by 1 - unknown_prob); the conformal set
(``sporeprint.scoring.sets``; null where the calibration promises none):
prediction_set (class ids, most probable first, -1 = a species not in the model),
poison_check (the poisonous species the poison check found in the sets, most
probable first; what ``sporeprint decide`` replays), set_size, answer_rank (species /
genus / unknown) and genus; and what ``sporeprint decide --coverage`` replays the sets
from at other levels: ranked_class_ids and ranked_probs (the most probable options, -1 =
a species not in the model, with their joint probabilities, down to the conformal score
ranked_bound).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from heads.decision import answer_mix
from sporeprint.errors import SporeprintError

TOP = 5
# The id column's name in the submission CSV: FungiCLEF 2024 files say observation_id,
# the 2023 evaluator reads observationID, many entries write ObservationId.
SUBMISSION_HEADERS = ("observation_id", "observationID", "ObservationId")


def top_columns(values: np.ndarray, k: int) -> np.ndarray:
    """(n, k) columns of each row's ``k`` largest values, largest first, ties to the lower
    column: ``k`` argmax passes (for a handful of columns, faster than a partition)."""
    work = np.array(values, dtype=np.float64)
    rows = np.arange(len(work))
    out = np.empty((len(work), k), dtype=np.int64)
    for j in range(k):
        out[:, j] = col = work.argmax(axis=1)
        work[rows, col] = -np.inf
    return out


def _list_column(values: np.ndarray, valid: np.ndarray | None, type_) -> pa.Array:
    """A list<type> column from a rectangular (n, w) array; ``valid`` masks entries out."""
    n, w = values.shape
    if valid is None:
        offsets = np.arange(0, n * w + 1, w, dtype=np.int32)
        flat = values.ravel()
    else:
        offsets = np.r_[0, np.cumsum(valid.sum(1))].astype(np.int32)
        flat = values[valid]
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(flat, type_))


def predictions_table(parts: list) -> pa.Table:
    """``parts``: ``(Decided, status)`` pairs -> one table sorted by observation id."""
    tables = []
    for d, status in parts:
        n = len(d.class_id)
        if n == 0:
            continue
        k = min(TOP, d.probs.shape[1])
        top = top_columns(d.probs, k)
        top_p = np.round(np.take_along_axis(d.probs, top, 1) * (1.0 - d.unknown_prob)[:, None], 6)
        evidence = d.evidence if d.evidence is not None else np.full((n, 1), -1, np.int64)
        tables.append(pa.table({
            "observation_id": pa.array(d.observation_ids, pa.int64()),
            "class_id": pa.array(d.class_id, pa.int32()),
            "kind": pa.array(d.kind, pa.string()),
            "status": pa.array([status] * n, pa.string()),
            "reason": pa.array(d.reason, pa.string()),
            "poison_prob": pa.array(d.poison_prob, pa.float64()),
            "unknown_score": pa.array(d.unknown_score, pa.float64(),
                                      mask=np.isnan(d.unknown_score)),
            "unknown_prob": pa.array(d.unknown_prob, pa.float64()),
            "top5_class_ids": _list_column(d.classes[top], None, pa.int32()),
            "top5_probs": _list_column(top_p, None, pa.float64()),
            "evidence_observation_ids": _list_column(evidence, evidence >= 0, pa.int64()),
            **_summary_columns(d.summary, n),
            **_set_columns(d.sets, n, d.ranked),
        }))
    if not tables:
        raise SporeprintError("nothing to write: the batch has no observations")
    return pa.concat_tables(tables).sort_by("observation_id")


def _summary_columns(summary, n: int) -> dict[str, pa.Array]:
    if summary is None:
        return {}
    return {"best_edible_class": pa.array(summary.best_edible_class, pa.int32()),
            "best_edible_prob": pa.array(summary.best_edible_prob, pa.float64()),
            "best_poisonous_class": pa.array(summary.best_poisonous_class, pa.int32()),
            "best_poisonous_prob": pa.array(summary.best_poisonous_prob, pa.float64())}


def _ragged(rows: list[np.ndarray]) -> pa.Array:
    """A list<int32> column from one id array per row."""
    offsets = np.r_[0, np.cumsum([len(m) for m in rows])].astype(np.int32)
    flat = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(flat, pa.int32()))


def _ranked_columns(ranked, n: int) -> dict[str, pa.Array]:
    if ranked is None:
        return {"ranked_class_ids": pa.nulls(n, pa.list_(pa.int32())),
                "ranked_probs": pa.nulls(n, pa.list_(pa.float64())),
                "ranked_bound": pa.nulls(n, pa.float64())}
    ids, probs = ranked.lists()
    offsets = np.r_[0, np.cumsum([len(r) for r in probs])].astype(np.int32)
    flat = np.concatenate(probs) if probs else np.zeros(0)
    return {"ranked_class_ids": _ragged(ids),
            "ranked_probs": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()),
                                                     pa.array(flat, pa.float64())),
            "ranked_bound": pa.array(np.full(n, ranked.bound), pa.float64())}


def _set_columns(sets, n: int, ranked=None) -> dict[str, pa.Array]:
    """The set columns, null for every row without a set (one schema for all parts), and
    the ranked options behind them (``ranked``: those of rows with none at this level)."""
    if sets is None:
        return {"prediction_set": pa.nulls(n, pa.list_(pa.int32())),
                "poison_check": pa.nulls(n, pa.list_(pa.int32())),
                "set_size": pa.nulls(n, pa.int32()), "answer_rank": pa.nulls(n, pa.string()),
                "genus": pa.nulls(n, pa.string()), **_ranked_columns(ranked, n)}
    return {"prediction_set": _ragged(sets.prediction_set),
            "poison_check": _ragged(sets.poison_check),
            "set_size": pa.array(sets.set_size, pa.int32()),
            "answer_rank": pa.array(sets.answer_rank, pa.string()),
            "genus": pa.array(sets.genus, pa.string()), **_ranked_columns(sets.ranked, n)}


def answer_counts(table: pa.Table) -> dict[str, int]:
    """The answer mix of a predictions table (:func:`heads.decision.answer_mix`)."""
    return answer_mix(table.column("kind"))


def write_outputs(table: pa.Table, out: str | Path,
                  submission_header: str = "observation_id") -> dict[str, str]:
    """Submission CSV (``<id column>,class_id``) at ``out`` and the full table beside it as
    ``<out stem>.full.parquet`` and ``<out stem>.full.csv``."""
    if submission_header not in SUBMISSION_HEADERS:
        raise SporeprintError(f"submission header {submission_header!r} is not one of "
                              f"{', '.join(SUBMISSION_HEADERS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    submission = table.select(["observation_id", "class_id"]).rename_columns(
        [submission_header, "class_id"])
    pacsv.write_csv(submission, out)
    full_pq = out.with_name(out.stem + ".full.parquet")
    pq.write_table(table, full_pq)
    flat = table
    for name in ("top5_class_ids", "top5_probs", "evidence_observation_ids", "prediction_set",
                 "poison_check", "ranked_class_ids", "ranked_probs"):
        joined = pc.binary_join(pc.cast(table.column(name),
                                                        pa.list_(pa.string())), " ")
        flat = flat.set_column(flat.column_names.index(name), name, joined)
    full_csv = out.with_name(out.stem + ".full.csv")
    pacsv.write_csv(flat, full_csv)
    return {"submission": str(out), "full (parquet)": str(full_pq), "full (csv)": str(full_csv)}

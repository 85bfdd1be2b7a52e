"""Batch scoring: new observations in, species + poison risk + unknown flag out.

``score_batch``:

1. check every input before anything is written (the rule, the metadata file, the
   vector file's columns, dimension and image paths);
2. ingest the metadata as role ``new`` (with a vector file, in one transaction with
   its vectors, which the store checks: a NaN/inf/all-zero vector changes nothing)
   and encode its features; rows the store rejects are reported, and an observation
   none of whose rows was accepted (bad rows, or an id that is already a
   training/validation observation) is answered from the training prior only, with
   status ``rejected`` — never from photos stored under another role;
3. get vectors in the runs' space: the precomputed Parquet, or the photos embedded
   with the space's own model;
4. score with :class:`~sporeprint.scoring.model.ScoringModel` (ensemble averaged per
   observation, calibrated, open-set unknown score from one kNN search that also
   gives the evidence, Track 3-optimal decision on the official poisonous list);
5. replace this batch's predictions for these runs in the store, and write the
   submission CSV plus a richer CSV/Parquet beside it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sporeprint.errors import SporeprintError
from sporeprint.rows import load_rows
from sporeprint.scoring.model import ScoringModel, check_levels
from sporeprint.scoring.observations import observation_scores
from sporeprint.scoring.outputs import answer_counts, predictions_table, write_outputs

log = logging.getLogger(__name__)

NO_ROW = "no accepted metadata row"
INT64 = (-(2**63), 2**63 - 1)


@dataclass
class ScoreReport:
    batch: str
    run_key: str
    rows_read: int = 0
    rows_rejected: int = 0
    observations: int = 0
    scored: int = 0
    no_usable_image: int = 0
    rejected_observations: int = 0
    vectors_skipped: int = 0
    embedded: int = 0
    embedding_failures: int = 0
    answers: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    sets: list[str] = field(default_factory=list)  # what the prediction sets promise

    def lines(self) -> list[str]:
        out = [
            f"batch {self.batch!r} scored with {self.run_key}",
            f"  metadata rows read {self.rows_read}, rejected {self.rows_rejected}",
            f"  observations {self.observations}: scored from images {self.scored}, "
            f"no usable image {self.no_usable_image} (prior-only answer), "
            f"no accepted row {self.rejected_observations} (prior-only answer)",
        ]
        if self.vectors_skipped:
            out.append(f"  vectors skipped {self.vectors_skipped} (their image rows were "
                       "rejected or belong to stored observations; not stored)")
        if self.embedded or self.embedding_failures:
            out.append(f"  images embedded {self.embedded}, failed {self.embedding_failures}")
        out.append("  answers: " + ", ".join(f"{k} {v}" for k, v in sorted(self.answers.items())))
        out += [f"  {line}" for line in self.sets]
        out += [f"  {k}: {v}" for k, v in self.outputs.items()]
        return out


def _metadata_ids_and_paths(path: Path) -> tuple[np.ndarray, set[str]]:
    """Observation ids (parsable ones) and image paths (the store's keys) named by a
    metadata file, its columns read by the store's metadata contract."""
    from store import contract
    from store.ingest import read_metadata_table

    table = read_metadata_table(path)
    found = contract.resolve_columns(table.column_names, what=repr(str(path)))
    ids = np.zeros(0, np.int64)
    if "observation_id" in found:
        text = pc.utf8_trim_whitespace(pc.cast(table[found["observation_id"]], pa.string()))
        as_int = [int(v) for v in text.to_pylist() if v is not None and v.lstrip("-").isdigit()]
        as_int = [v for v in as_int if INT64[0] <= v <= INT64[1]]  # others: rejected rows
        ids = np.unique(np.asarray(as_int, dtype=np.int64))
    paths = set()
    if "image_path" in found:
        paths = {contract.image_key(p.strip()) for p in
                 pc.cast(table[found["image_path"]], pa.string()).to_pylist() if p}
    return ids, paths


def check_embedding_file(path: str | Path, dim: int, space: str,
                         image_paths: set[str] | None = None, fs=None) -> None:
    """Refuse, before anything is written, a vector file that does not fit the runs: columns
    the store cannot ingest, no rows, another dimension than the runs' space, image paths
    that neither the batch's metadata nor the store (``fs``) knows. Reads the file's schema,
    first vector and key column only: the vectors themselves are checked once, by the store
    as it ingests them (``FeatureStore.ingest_batch``: one transaction with the batch's
    metadata, so a bad vector leaves the batch out too)."""
    from store import embedding_file_info

    path = Path(path)
    if not path.is_file():
        raise SporeprintError(f"embeddings file {path} does not exist")
    info = embedding_file_info(path)
    if info.dim != dim:
        raise SporeprintError(
            f"{path} holds {info.dim}-d vectors but the runs' embedding space {space!r} is "
            f"{dim}-d; embed the batch with that space's model or score with heads trained "
            "on your vectors' space")
    if info.key != "image_path" or image_paths is None:
        return
    keys = pq.read_table(path, columns=["image_path"]).column(0)
    unknown_paths = [p for p in dict.fromkeys(keys.to_pylist()) if p not in image_paths]
    if unknown_paths and fs is not None:
        stored = set(fs.stored_image_paths(unknown_paths))
        unknown_paths = [p for p in unknown_paths if p not in stored]
    if unknown_paths:
        raise SporeprintError(f"{path} names {len(unknown_paths)} image paths that neither the "
                              f"batch's metadata nor the store lists (e.g. {unknown_paths[:3]}); "
                              "score the metadata file those vectors belong to")


def embed_locally(fs, model: ScoringModel, workers: int | None = None) -> tuple[int, int]:
    """Embed the store's pending photos with the space's own model in this process;
    ``(embedded, failed)``."""
    from sporeprint.embedding import embed_store, embedder_for_space

    er = embed_store(fs, embedder_for_space(fs.require_space(model.space)), model.space,
                     workers=workers)
    return er.embedded, er.failed


def decide_locally(model: ScoringModel, rows, rule: str) -> pa.Table:
    """The predictions table of image ``rows`` decided in this process."""
    return predictions_table([(model.decide(observation_scores(model.ensemble, rows), rule),
                               "scored")])


def _check_writable(out: Path) -> None:
    """Refuse, before the batch is stored, an output path the submission cannot be written
    to."""
    if out.is_dir():
        raise SporeprintError(f"--out {str(out)!r} is a folder; pass the submission CSV's "
                              "file name (e.g. predictions.csv)")
    folder = next((p for p in [out.parent, *out.parent.parents] if p.exists()), Path("."))
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise SporeprintError(f"cannot write the submission {str(out)!r}: {str(folder)!r} is "
                              "not a writable folder; pass --out in a folder you can write to")


def _left_out_decision(model: ScoringModel, observation_ids: np.ndarray,
                       reasons: dict[int, str]):
    """Prior-only answers of observations with no accepted row, each naming why."""
    d = model.prior_decision(observation_ids, NO_ROW)
    whys = [reasons.get(int(i), "its rows were rejected") for i in observation_ids]
    return replace(d, reason=[r.replace(NO_ROW, f"{NO_ROW} ({why})", 1)
                              for r, why in zip(d.reason, whys, strict=True)])


def _set_lines(table: pa.Table) -> list[str]:
    """The sets' sizes and ranks over a scored table (none without sets)."""
    size = table.column("set_size").drop_null().to_numpy()
    if not len(size):
        return []
    ranks = dict(zip(*np.unique(table.column("answer_rank").drop_null().to_numpy(
        zero_copy_only=False), return_counts=True), strict=True))
    return [f"set size mean {size.mean():.1f}, median {np.median(size):.0f}, max "
            f"{size.max()}; answer rank: " + ", ".join(
                f"{r} {int(ranks.get(r, 0))}" for r in ("species", "genus", "unknown"))]


def score_batch(fs, metadata: str | Path, run_ids: list[str],
                images_dir: str | Path | None = None, embeddings: str | Path | None = None,
                out: str | Path | None = None, batch: str | None = None, rule: str = "track3",
                workers: int | None = None, model: ScoringModel | None = None,
                submission_header: str = "observation_id",
                embed_images=None, decide_rows=None, coverage: float | None = None,
                poison_coverage: float | None = None) -> ScoreReport:
    """Score every observation of ``metadata``; see the module docstring. ``model``
    (loaded for ``run_ids``) saves reloading the heads and index when scoring again.
    ``coverage`` / ``poison_coverage`` (default 0.90 / 0.99; 0: none): the levels of
    the conformal sets and of the poison check (``sporeprint.scoring.sets``).
    ``embed_images(fs, model) -> (embedded, failed)`` and ``decide_rows(model, rows, rule)
    -> predictions table`` replace the in-process steps (the Ray engine passes its own)."""
    from heads.decision import RULES

    if rule not in RULES:
        raise SporeprintError(f"unknown decision rule {rule!r}; choose one of {', '.join(RULES)}")
    check_levels(coverage, poison_coverage)
    metadata = Path(metadata)
    batch_ids, batch_paths = _metadata_ids_and_paths(metadata)
    model = model or ScoringModel.load(fs, run_ids)
    if coverage is not None:
        model.coverage = coverage
    if poison_coverage is not None:
        model.poison_coverage = poison_coverage
    if embeddings is not None:
        check_embedding_file(embeddings, model.index.dim, model.space, batch_paths, fs)
    batch = batch or metadata.stem
    out = Path(out or metadata.with_name(f"{batch}.predictions.csv"))
    _check_writable(out)
    report = ScoreReport(batch=batch, run_key=model.run_key)

    # one transaction: metadata and vectors; a bad vector file leaves the metadata out too
    ingested = fs.ingest_batch(metadata, embeddings, model.space, role="new",
                               images_dir=images_dir)
    ingest = ingested.metadata
    report.rows_read, report.rows_rejected = ingest.read, ingest.rejected
    report.vectors_skipped = ingested.vectors_skipped
    accepted = np.sort(np.asarray(ingest.observation_ids, dtype=np.int64))
    rejected = np.setdiff1d(np.union1d(batch_ids,
                                       np.asarray(ingest.rejected_observation_ids, np.int64)),
                            accepted)
    report.observations = len(np.union1d(accepted, rejected))
    report.rejected_observations = len(rejected)

    if len(accepted) and embeddings is None and images_dir is not None:
        embed = embed_images or (lambda fs_, model_: embed_locally(fs_, model_, workers))
        report.embedded, report.embedding_failures = embed(fs, model)

    if len(accepted) and model.encoder is not None:  # the batch's metadata as just ingested
        fs.encode_observations(accepted)
    tables = []
    rows = load_rows(fs, model.space, accepted, labelled_only=False)[0] if len(accepted) \
        else None
    if rows is not None and len(rows):
        tables.append((decide_rows or decide_locally)(model, rows, rule))
    imageless = np.setdiff1d(accepted, rows.observation_ids if rows is not None else [])
    report.scored, report.no_usable_image = len(accepted) - len(imageless), len(imageless)
    prior = []
    if len(imageless):
        prior.append((model.prior_decision(imageless, "no usable image"), "no_usable_image"))
    if len(rejected):
        prior.append((_left_out_decision(model, rejected, ingested.left_out), "rejected"))
    if prior:
        tables.append(predictions_table(prior))
    if not tables:
        raise SporeprintError("nothing to write: the batch has no observations")
    table = pa.concat_tables(tables).sort_by("observation_id")
    fs.write_predictions(model.run_key, batch, table)
    report.answers = answer_counts(table)
    report.sets = [model.sets_line()] + _set_lines(table)
    report.outputs = write_outputs(table, out, submission_header)
    return report

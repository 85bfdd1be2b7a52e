"""``score --engine ray``: the head forward and the open-set kNN on a Ray actor pool.

Everything :func:`sporeprint.scoring.score_batch` does around the model stays on the
driver, with the same functions (metadata ingest, the prior-only answers, the
predictions table, the store write and the files). What moves to Ray is the part
that grows with the batch: per observation, the ensemble's probabilities over its
images, the kNN search in the training index and the calibrated decision.

The loaded :class:`~sporeprint.scoring.ScoringModel` (heads, training index,
calibration, image -> observation map) is put in the object store once and fetched
once per actor. The batch travels as one row per observation (its image vectors and
encoded metadata), so no block ever splits an observation's images.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from sporeprint.distributed.cluster import RayOptions, connect, model_actors
from sporeprint.errors import SporeprintError
from sporeprint.rows import Rows
from sporeprint.scoring.model import ScoringModel
from sporeprint.scoring.outputs import predictions_table
from sporeprint.scoring.pipeline import ScoreReport, score_batch

if TYPE_CHECKING:
    from store import FeatureStore

log = logging.getLogger(__name__)


def observation_table(rows: Rows) -> pa.Table:
    """One row per observation: ``observation_id``, ``n_images``, ``vectors`` (its image
    vectors, flattened, in ``rows`` order) and ``metadata`` (its encoded metadata)."""
    order = np.argsort(rows.observation_ids, kind="stable")
    obs = rows.observation_ids[order]
    uniq, first, counts = np.unique(obs, return_index=True, return_counts=True)
    dim = rows.embeddings.shape[1]
    vec_offsets = np.r_[0, np.cumsum(counts) * dim].astype(np.int64)
    flat = np.ascontiguousarray(rows.embeddings[order], dtype=np.float32).ravel()
    cols = {"observation_id": pa.array(uniq, pa.int64()),
            "n_images": pa.array(counts, pa.int64()),
            "vectors": pa.LargeListArray.from_arrays(pa.array(vec_offsets),
                                                     pa.array(flat, pa.float32()))}
    if rows.metadata is not None:
        meta = np.asarray(rows.metadata, dtype=np.float32)[order][first]
        width = meta.shape[1]
        cols["metadata"] = pa.FixedSizeListArray.from_arrays(
            pa.array(meta.ravel(), pa.float32()), width) if width else \
            pa.array([[]] * len(uniq), pa.list_(pa.float32()))
    return pa.table(cols)


def table_rows(table: pa.Table, dim: int) -> Rows:
    """The image rows of an :func:`observation_table` block (class ids unknown, -1)."""
    counts = table.column("n_images").to_numpy()
    obs = np.repeat(table.column("observation_id").to_numpy(), counts)
    flat = table.column("vectors").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    vectors = flat.astype(np.float32, copy=False).reshape(-1, dim)
    meta = None
    if "metadata" in table.column_names:
        col = table.column("metadata").combine_chunks()
        width = col.type.list_size if hasattr(col.type, "list_size") else 0
        m = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        meta = np.repeat(m.reshape(len(counts), width), counts, axis=0)
    n = len(obs)
    return Rows(np.arange(n, dtype=np.int64), obs.astype(np.int64), np.full(n, -1, np.int64),
                vectors, meta)


def portable(model: ScoringModel) -> ScoringModel:
    """A copy of ``model`` whose training index holds no device copies (a FAISS GPU index
    or torch tensors made by earlier searches on the driver cannot be pickled, and belong
    to the driver's devices anyway); the CPU index itself is shared, not copied."""
    index = copy.copy(model.index)
    for cache in ("_gpu_index", "_torch"):
        if hasattr(index, cache):
            setattr(index, cache, None)
    neighbours = copy.copy(model.neighbours)
    neighbours.index = index
    out = copy.copy(model)
    out.index, out.neighbours = index, neighbours
    return out


def _use_local_gpus(index) -> None:
    """Search on this actor's GPUs when FAISS sees any (the driver decided for its own)."""
    from retrieval.gpu import gpu_count

    if getattr(index, "_allow_gpu", False) and gpu_count() > 0:
        index.use_gpu = True


class ScoreActor:
    """Fetches the broadcast model once; scores blocks of observations."""

    def __init__(self, model_ref: list, rule: str):
        import ray

        self.model: ScoringModel = ray.get(model_ref[0])
        _use_local_gpus(self.model.index)
        self.rule = rule

    def __call__(self, table: pa.Table) -> pa.Table:
        from sporeprint.scoring.observations import observation_scores

        rows = table_rows(table, self.model.index.dim)
        scores = observation_scores(self.model.ensemble, rows)
        return predictions_table([(self.model.decide(scores, self.rule), "scored")])


def decide_on_ray(ray, model: ScoringModel, rows: Rows, rule: str,
                  options: RayOptions) -> pa.Table:
    """The ``scored`` rows of the predictions table for ``rows``, computed on Ray."""
    table = observation_table(rows)
    concurrency, gpus = model_actors(ray, options)
    per_block = max(1, -(-table.num_rows // max(2, 2 * concurrency)))
    blocks = [table.slice(i, per_block) for i in range(0, table.num_rows, per_block)]
    ref = ray.put(portable(model))
    ds = ray.data.from_arrow(blocks).map_batches(
        ScoreActor, batch_size=options.batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=concurrency), num_gpus=gpus,
        fn_constructor_kwargs={"model_ref": [ref], "rule": rule})
    parts = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    return pa.concat_tables(parts)


def score_batch_ray(fs: FeatureStore, metadata: str | Path, run_ids: list[str],
                    images_dir: str | Path | None = None,
                    embeddings: str | Path | None = None, out: str | Path | None = None,
                    batch: str | None = None, rule: str = "track3",
                    model: ScoringModel | None = None, submission_header: str = "observation_id",
                    options: RayOptions | None = None, coverage: float | None = None,
                    poison_coverage: float | None = None) -> ScoreReport:
    """:func:`sporeprint.scoring.score_batch` with the scoring (and, with ``images_dir``,
    the embedding) on Ray; the same predictions table, store rows and files."""
    from heads.decision import RULES

    if rule not in RULES:
        raise SporeprintError(f"unknown decision rule {rule!r}; choose one of {', '.join(RULES)}")
    options = options or RayOptions()
    ray = connect(options)

    def embed(fs_, model_: ScoringModel) -> tuple[int, int]:
        from sporeprint.distributed.embedding import embed_store_ray

        spec = fs_.require_space(model_.space)
        er = embed_store_ray(fs_, spec.model_id, model_.space, pooling=spec.pooling,
                             dtype=spec.dtype,
                             draft=bool(spec.preprocessing.get("jpeg_draft", False)),
                             options=options)
        return er.embedded, er.failed

    def decide(model_: ScoringModel, rows: Rows, rule_: str) -> pa.Table:
        return decide_on_ray(ray, model_, rows, rule_, options)

    return score_batch(fs, metadata, run_ids, images_dir=images_dir, embeddings=embeddings,
                       out=out, batch=batch, rule=rule, model=model,
                       submission_header=submission_header, embed_images=embed,
                       decide_rows=decide, coverage=coverage, poison_coverage=poison_coverage)

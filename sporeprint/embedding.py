"""Embedding a feature store's images: the store's pending images go through an
:class:`embedder.ImageEmbedder` and come back as vectors or recorded failures.

Vectors and failures are committed in transactional chunks, so an interrupted run
resumes with no image missing or duplicated.

>>> from embedder import ImageEmbedder
>>> from store import FeatureStore
>>> with FeatureStore("fungi.duckdb") as fs:                             # doctest: +SKIP
...     print(embed_store(fs, ImageEmbedder("facebook/dinov2-large"), "dinov2_large"))
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from embedder import ImageEmbedder, default_workers
from sporeprint.errors import SporeprintError
from store import EmbeddingSpace

logger = logging.getLogger(__name__)


@dataclass
class EmbedReport:
    """What one :func:`embed_store` run did.

    ``skipped`` counts images without a ``file_path`` (ingest them with
    ``--images DIR``) plus vectors another writer stored first.
    """

    space: str
    embedded: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return (self.embedded + self.failed) / self.seconds if self.seconds > 0 else 0.0


def embedder_for_space(space: EmbeddingSpace, device: str = "auto",
                       max_pixels: int | None = None) -> ImageEmbedder:
    """The embedder that made ``space``'s vectors: its recorded model, pooling, dtype and
    JPEG draft setting, so that :func:`embed_store` adds vectors of the same kind."""
    if space.pooling == "precomputed":
        raise SporeprintError(
            f"space {space.name!r} holds precomputed vectors (model {space.model_id!r}); no model "
            "here turns a photo into one of them: embed photos into a space made by "
            "`sporeprint embed`, or query by observation id or vector")
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    return ImageEmbedder(space.model_id, pooling=space.pooling, device=device, dtype=space.dtype,
                         draft=bool(space.preprocessing.get("jpeg_draft", False)), **kwargs)


def embed_store(
    fs,
    embedder: ImageEmbedder,
    space: str | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    chunk_size: int = 2048,
    progress: bool = True,
) -> EmbedReport:
    """Embed every image of ``fs`` with no vector and no recorded failure in ``space``
    (default: named after the model), creating the space or checking that it was made
    with the same model and settings.

    Vectors and failures are committed every ``chunk_size`` images, so a run killed
    at any moment and started again stores each image exactly once.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")
    spec = fs.ensure_space(EmbeddingSpace(**embedder.space_spec(space)))
    pending = fs.pending_images(spec.name)
    ids = pending.column("image_id").to_numpy().astype(np.int64)
    paths = pending.column("file_path").to_pylist()
    report = EmbedReport(space=spec.name)
    no_path = np.array([p is None for p in paths], dtype=bool)
    report.skipped = int(no_path.sum())
    if report.skipped:
        logger.warning("%d images have no file_path (ingest them with --images DIR); skipped",
                       report.skipped)
    ids, paths = ids[~no_path], [p for p in paths if p is not None]
    workers = default_workers(embedder.device) if workers is None else workers
    logger.info("embedding %d images into space %r (%s, batch %d, %d workers)",
                len(ids), spec.name, embedder.device, batch_size, workers)

    start = time.perf_counter()
    buf_ids: list[np.ndarray] = []
    buf_vecs: list[np.ndarray] = []
    buf_failed: list[np.ndarray] = []
    buf_reasons: list[str] = []

    def flush() -> None:
        if buf_ids:
            chunk_ids = np.concatenate(buf_ids)
            added = fs.add_embeddings(spec.name, chunk_ids, np.concatenate(buf_vecs))
            report.embedded += int(added)
            report.skipped += len(chunk_ids) - int(added)
        if buf_failed:
            failed_ids = np.concatenate(buf_failed)
            fs.record_embedding_failures(spec.name, failed_ids, list(buf_reasons))
            report.failed += len(failed_ids)
        logger.info("committed chunk: %d embedded, %d failed so far",
                    report.embedded, report.failed)
        buf_ids.clear(), buf_vecs.clear(), buf_failed.clear(), buf_reasons.clear()

    buffered = 0
    for batch in embedder.iter_batches(paths, batch_size=batch_size, workers=workers,
                                       progress=progress):
        if len(batch.positions):
            buf_ids.append(ids[batch.positions])
            buf_vecs.append(batch.vectors)
        if len(batch.failed_positions):
            buf_failed.append(ids[batch.failed_positions])
            buf_reasons.extend(batch.reasons)
        buffered += len(batch.positions) + len(batch.failed_positions)
        if buffered >= chunk_size:
            flush()
            buffered = 0
    if buffered:
        flush()
    report.seconds = time.perf_counter() - start
    return report

"""``embed --engine ray``: the store's pending images through a Ray Data pipeline.

1. The driver exports the pending images (``image_id, file_path``) to Parquet.
2. CPU tasks decode and preprocess them with the embedder's own functions
   (:class:`embedder.batches.ImageItems`: ``load_rgb`` then the checkpoint's resize
   and centre crop), so each image gets the pixels the single-process path gives it.
3. An actor pool runs the model (``map_batches`` with a callable class; one GPU per
   actor where the cluster has GPUs, CPU actors otherwise) and writes Parquet shards
   of ``image_id, vector, reason`` (``reason`` is null for a vector, else why the
   image failed).
4. The driver adds each shard to the store in one transaction: vectors, and the
   failures with their reasons. A rerun embeds only what is still pending.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sporeprint.distributed.cluster import RayOptions, connect, model_actors
from sporeprint.embedding import EmbedReport
from store import EmbeddingSpace

if TYPE_CHECKING:
    from store import FeatureStore

log = logging.getLogger(__name__)

DECODE_BATCH = 16  # images per decode task call
# CPU share of a decode task beside CPU model actors: a request unlike the actors' own
# keeps Ray Data from fusing decoding into the model actors (it fuses maps whose resource
# requests match), so decoding overlaps the forward passes as in the single-process path.
DECODE_CPUS_BESIDE_CPU_ACTORS = 0.5
NO_PATH = "no file path recorded for this image"


def _decode(batch: dict, preprocess, max_pixels: int, draft_size) -> dict:
    """Decode + preprocess one block of ``image_id, file_path`` rows (a CPU task).

    Returns ``image_id``, ``pixels`` (the preprocessed image; zeros for a failure) and
    ``reason`` ("" for success)."""
    from embedder.batches import ImageItems

    paths = [None if p is None else str(p) for p in batch["file_path"]]
    items = ImageItems(paths, preprocess, max_pixels, draft_size)
    decoded = [items[k] for k in range(len(items))]
    good = next((x for _, x, _ in decoded if x is not None), None)
    if good is None:  # a block of failures only: any pixel shape will do
        from PIL import Image

        good = preprocess(Image.new("RGB", (64, 48)))
    blank = np.zeros(tuple(good.shape), dtype=good.numpy().dtype)
    pixels = np.stack([blank if x is None else x.numpy() for _, x, _ in decoded])
    reasons = np.array(["" if x is not None else str(r) for _, x, r in decoded], dtype=object)
    return {"image_id": np.asarray(batch["image_id"], dtype=np.int64), "pixels": pixels,
            "reason": reasons}


class EmbedActor:
    """Holds one copy of the model; turns preprocessed pixels into vectors."""

    def __init__(self, model_id: str, pooling: str, dtype: str, max_pixels: int, draft: bool):
        import torch

        from embedder import ImageEmbedder

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.embedder = ImageEmbedder(model_id, pooling=pooling, device=device, dtype=dtype,
                                      max_pixels=max_pixels, draft=draft)

    def __call__(self, batch: dict) -> pa.Table:
        import torch

        ids = np.asarray(batch["image_id"], dtype=np.int64)
        reasons = [str(r) for r in batch["reason"]]
        ok = np.array([r == "" for r in reasons], dtype=bool)
        dim = self.embedder.dim
        vectors = np.zeros((len(ids), dim), dtype=np.float32)
        if ok.any():
            pixels = torch.from_numpy(np.ascontiguousarray(batch["pixels"][ok]))
            vectors[ok] = self.embedder.embed_pixels(pixels).cpu().numpy()
        return pa.table({
            "image_id": pa.array(ids, pa.int64()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()),
                                                        dim),
            "reason": pa.array([None if k else r for k, r in zip(ok, reasons, strict=True)], pa.string()),
        })


def _resolve_dtype(dtype: str, gpus: int) -> str:
    """The dtype the actors run in: ``auto`` is bfloat16 on a GPU cluster, float32 on CPUs."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if gpus else "float32"


def embed_store_ray(fs: FeatureStore, model: str, space: str | None = None, pooling: str = "cls",
                    dtype: str = "auto", max_pixels: int | None = None, draft: bool = False,
                    options: RayOptions | None = None) -> EmbedReport:
    """Embed every pending image of ``fs`` in ``space`` on Ray; see the module docstring.

    The space is created (or checked) on the driver from a CPU copy of the model, with
    the dtype the actors use, so that single-process and Ray runs can fill one space.
    """
    from embedder import DEFAULT_MAX_PIXELS, ImageEmbedder

    options = options or RayOptions()
    max_pixels = max_pixels or DEFAULT_MAX_PIXELS
    ray = connect(options)
    concurrency, gpus_per_actor = model_actors(ray, options)
    dtype = _resolve_dtype(dtype, int(gpus_per_actor))
    # The driver's copy gives the space's spec and the preprocessing for the decode tasks.
    local = ImageEmbedder(model, pooling=pooling, device="cpu", dtype=dtype,
                          max_pixels=max_pixels, draft=draft)
    spec = fs.ensure_space(EmbeddingSpace(**local.space_spec(space)))
    report = EmbedReport(space=spec.name)
    start = time.perf_counter()

    pending = fs.pending_images(spec.name)
    no_path = pending.column("file_path").is_null().to_numpy(zero_copy_only=False)
    report.skipped = int(no_path.sum())
    if report.skipped:
        log.warning("%d images have no file_path (ingest them with --images DIR); skipped",
                    report.skipped)
    pending = pending.filter(pa.array(~no_path))
    if pending.num_rows == 0:
        report.seconds = time.perf_counter() - start
        return report

    keep = options.work_dir is not None
    root = Path(options.work_dir) if keep else Path(fs.path).resolve().parent / ".sporeprint-ray"
    work = root / f"embed-{spec.name}-{uuid.uuid4().hex[:8]}"
    (work / "pending").mkdir(parents=True)
    per_file = max(options.batch_size, -(-pending.num_rows // max(2, 2 * concurrency)))
    for k, first in enumerate(range(0, pending.num_rows, per_file)):
        pq.write_table(pending.slice(first, per_file), work / "pending" / f"part-{k:05d}.parquet")
    log.info("embedding %d images on Ray into space %r (%d model actors, %s, batch %d)",
             pending.num_rows, spec.name, concurrency,
             "1 GPU each" if gpus_per_actor else "CPU", options.batch_size)

    ds = ray.data.read_parquet(str(work / "pending"))
    ds = ds.map_batches(_decode, batch_size=DECODE_BATCH, batch_format="numpy",
                        num_cpus=1 if gpus_per_actor else DECODE_CPUS_BESIDE_CPU_ACTORS,
                        fn_kwargs={"preprocess": local.preprocess, "max_pixels": max_pixels,
                                   "draft_size": local.draft_size()})
    ds = ds.map_batches(EmbedActor, batch_size=options.batch_size, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=concurrency),
                        num_gpus=gpus_per_actor,
                        fn_constructor_kwargs={"model_id": local.model_id, "pooling": pooling,
                                               "dtype": dtype, "max_pixels": max_pixels,
                                               "draft": local.draft})
    ds.write_parquet(str(work / "vectors"))

    for shard in sorted((work / "vectors").glob("*.parquet")):
        added, skipped, failed = ingest_shard(fs, spec.name, shard)
        report.embedded += added
        report.skipped += skipped
        report.failed += failed
    report.seconds = time.perf_counter() - start
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return report


def ingest_shard(fs: FeatureStore, space: str, path: str | Path) -> tuple[int, int, int]:
    """Add one shard of ``image_id, vector, reason`` in one transaction; returns
    ``(vectors added, vectors already stored, failures recorded)``."""
    from store.spaces import add_embeddings, record_embedding_failures

    table = pq.read_table(path)
    ids = table.column("image_id").to_numpy().astype(np.int64)
    failed = table.column("reason").is_valid().to_numpy(zero_copy_only=False)
    vec = table.column("vector").combine_chunks()
    dim = vec.type.list_size
    flat = vec.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    vectors = flat.reshape(len(ids), dim)
    with fs.transaction() as con:  # all of the shard or none of it
        if failed.any():
            reasons = table.column("reason").filter(pa.array(failed)).to_pylist()
            record_embedding_failures(con, space, ids[failed], reasons)
        added = add_embeddings(con, space, ids[~failed], vectors[~failed]) if (~failed).any() \
            else 0
    log.info("shard %s: %d vectors added, %d failures recorded", Path(path).name, added,
             int(failed.sum()))
    return int(added), int((~failed).sum()) - int(added), int(failed.sum())

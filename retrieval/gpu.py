"""Moving a CPU FAISS index onto the GPU(s), when FAISS sees any.

Every function here is only called after :func:`gpu_count` returned a
positive number, so a CPU-only FAISS build never reaches GPU symbols.
"""

from __future__ import annotations

import logging

import faiss

logger = logging.getLogger(__name__)

# Largest k a GPU index answers in one search (FAISS's k-selection limit).
GPU_MAX_K = 2048


def gpu_count() -> int:
    """Number of GPUs FAISS can use (0 for a CPU build or a machine without one)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


_NOTED = False


def note_no_gpu() -> None:
    """Say once per process that a GPU was asked for but FAISS has none."""
    global _NOTED
    if not _NOTED:
        _NOTED = True
        logger.warning("no GPU: using the CPU index (this FAISS build or machine has no GPU)")


def supports_gpu(cpu_index: faiss.Index) -> bool:
    """Whether FAISS has a GPU version of this index type (HNSW and refine wrappers do not)."""
    return isinstance(cpu_index, (faiss.IndexFlat, faiss.IndexIVFFlat, faiss.IndexIVFPQ))


def to_gpus(cpu_index: faiss.Index, shard: bool = False, nprobe: int | None = None) -> faiss.Index:
    """Copy ``cpu_index`` onto every visible GPU, replicated (default) or sharded.

    Sharding splits the vectors across GPUs (for indexes larger than one card's
    memory); replication copies the whole index to each GPU and splits the queries.
    """
    options = faiss.GpuMultipleClonerOptions()
    options.shard = shard
    options.useFloat16LookupTables = False
    if isinstance(cpu_index, faiss.IndexIVFPQ):
        # Large PQ codes need float16 lookup tables' shared memory otherwise.
        options.useFloat16 = cpu_index.pq.M > 48
        options.usePrecomputed = False
    gpu_index = faiss.index_cpu_to_all_gpus(cpu_index, co=options)
    if nprobe is not None:
        faiss.GpuParameterSpace().set_index_parameter(gpu_index, "nprobe", int(nprobe))
    logger.info("index copied to %d GPU(s) (%s)", gpu_count(), "sharded" if shard else "replicated")
    return gpu_index

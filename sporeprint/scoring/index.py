"""The index of the training images that scoring and calibration search: a fresh
saved one (`sporeprint index build --where train`), else an exact one in memory."""

from __future__ import annotations

import logging

from retrieval import RetrievalError, VectorIndex
from sporeprint.indexing import index_dir, load_index, memory_index

log = logging.getLogger(__name__)

# Saved training-image indexes tried first (fastest first); exact in memory otherwise.
SAVED_INDEX_KINDS = ("ivf_flat", "hnsw", "ivf_pq", "exact")
# The unknown score needs the distance to the 10th neighbour, not an exact top list:
# scoring probes 1/64 of an IVF index's lists (at least 8).
SCORING_NPROBE_SHARE, SCORING_MIN_NPROBE = 64, 8


def training_index(fs, space: str) -> VectorIndex:
    """The index of the training images: a fresh saved one (`sporeprint index build
    --where train`), else an exact one built in memory."""
    for kind in SAVED_INDEX_KINDS:
        if (index_dir(fs.path, space, kind, "train") / "manifest.json").is_file():
            try:
                index = load_index(fs, space, kind, "train")
            except RetrievalError as exc:  # stale or foreign: say so, fall through
                log.warning("%s", exc)
                continue
            if kind.startswith("ivf"):
                index.set_search_params(nprobe=max(
                    SCORING_MIN_NPROBE, int(index.params["nlist"]) // SCORING_NPROBE_SHARE))
            log.info("using the saved %s index of training images (%d vectors)", kind, len(index))
            return index
    return memory_index(fs, space, "train")

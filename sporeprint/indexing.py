"""Build and load the FAISS indexes of a store's embedding spaces.

An index covers the images of one *selection* (``where``: a role, a split part or
a fold's training set; see ``store.SELECTIONS``) that have a vector in one space.
It is saved beside the store, in ``<store>.indexes/<space>-<kind>-<where>/``, with
a manifest recording the store's identity (``store_id``), the split seed, and the
checksum of its image ids. Loading checks all three against the store, compares a
sample of the index's vectors with the store's vectors of the same ids, and refuses
an index that is stale, was built from another store, or whose files were changed.

Example:
    >>> with FeatureStore("fungi.duckdb") as fs:                     # doctest: +SKIP
    ...     build_index(fs, "dinov2_l", kind="hnsw", where="train")
    ...     index = load_index(fs, "dinov2_l", kind="hnsw", where="train")
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from retrieval import RetrievalError, VectorIndex, choose_plan, id_checksum
from sporeprint.errors import SporeprintError
from store import SPLIT_SELECTIONS

logger = logging.getLogger(__name__)


class StaleIndexError(RetrievalError):
    """The saved index no longer matches the store's vectors for its selection."""


def index_dir(store_path: str | Path, space: str, kind: str = "exact", where: str = "all") -> Path:
    """Where ``build_index`` saves: ``<store>.indexes/<space>-<kind>-<where>``."""
    return Path(str(store_path) + ".indexes") / f"{space}-{kind}-{where}"


def _vectors(fs, space: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    ids = fs.selection_image_ids(space, where)
    if ids.size == 0:
        raise SporeprintError(f"no vectors in space {space!r} for selection {where!r}; "
                              "ingest or embed images first (sporeprint embed / ingest)")
    return fs.fetch_embeddings(space, ids)


def memory_index(fs, space: str, where: str = "all", kind: str = "exact") -> VectorIndex:
    """An index of the selection built in memory, not saved."""
    spec = fs.require_space(space)
    ids, vectors = _vectors(fs, space, where)
    index = VectorIndex(spec.dim, kind=kind)
    index.add(ids, vectors)
    return index


def build_index(fs, space: str, kind: str = "exact", where: str = "all",
                directory: str | Path | None = None, **params) -> VectorIndex:
    """Build an index of the ``where`` selection's vectors in ``space`` and save it."""
    spec = fs.require_space(space)
    ids, vectors = _vectors(fs, space, where)
    index = VectorIndex(spec.dim, kind=kind, **params)
    index.add(ids, vectors)
    directory = Path(directory) if directory else index_dir(fs.path, space, kind, where)
    index.save(directory, space=space, extra={
        "where": where, "model_id": spec.model_id, "revision": spec.revision,
        "store_id": fs.store_id, "split_seed": _split_seed(fs, where),
    })
    return index


def _split_seed(fs, where: str) -> int | None:
    return fs.split_seed() if where in SPLIT_SELECTIONS else None


def load_index(fs, space: str, kind: str = "exact", where: str = "all",
               directory: str | Path | None = None) -> VectorIndex:
    """Load a saved index; :class:`StaleIndexError` when it does not match this store now."""
    index, directory, rebuild, selection = _load_same_store(fs, space, kind, where, directory)
    current = fs.selection_image_ids(space, selection)
    m = index.manifest
    if id_checksum(current) != m["id_checksum"]:
        raise StaleIndexError(
            f"index is stale: {directory} holds {m['count']} vectors but the store now has "
            f"{current.size} for that selection (or different ones); add the new ones with: "
            f"{rebuild.replace(' build ', ' update ')} (or rebuild with: {rebuild})")
    _check_sample(fs, index, space, directory, rebuild)
    return index


def update_index(fs, space: str, kind: str = "exact", where: str = "all",
                 directory: str | Path | None = None) -> tuple[VectorIndex, int, int]:
    """Grow a saved index to the selection's vectors now without rebuilding it: add the
    vectors of images it lacks, remove those of images no longer in the selection (kinds
    that cannot remove, such as HNSW, refuse: rebuild them), save it; ``(index, added,
    removed)``. The manifest then records how much it grew since the build, and
    ``VectorIndex.rebuild_advice`` says when a rebuild would pay off."""
    index, directory, rebuild, selection = _load_same_store(fs, space, kind, where, directory)
    _check_sample(fs, index, space, directory, rebuild)
    current = fs.selection_image_ids(space, selection)
    held = index.ids
    gone = np.setdiff1d(held, current)
    new = np.setdiff1d(current, held)
    if gone.size:
        try:
            index.remove(gone)
        except RetrievalError as exc:
            raise StaleIndexError(f"{directory}: {gone.size} of its images left the selection "
                                  f"and {exc}; rebuild with: {rebuild}") from exc
    if new.size:
        ids, vectors = fs.fetch_embeddings(space, new)
        index.add(ids, vectors)
    if new.size or gone.size:
        index.save(directory, space=space, extra=index.manifest.get("extra", {}))
    return index, int(new.size), int(gone.size)


def _load_same_store(fs, space: str, kind: str, where: str, directory: str | Path | None):
    """A saved index checked to be of this store, space, model and split (not yet that it
    holds the selection's images now): ``(index, directory, rebuild command, selection)``."""
    spec = fs.require_space(space)
    directory = Path(directory) if directory else index_dir(fs.path, space, kind, where)
    rebuild = (f"sporeprint index build --store {fs.path} --space {space} --kind {kind} "
               f"--where {where}")
    if not (directory / "manifest.json").is_file():
        raise RetrievalError(f"no index at {directory}; build it with: {rebuild}")
    index = VectorIndex.load(directory)
    m = index.manifest
    extra = m.get("extra", {})
    if extra.get("store_id") != fs.store_id:
        raise StaleIndexError(
            f"index {directory} was built from another store (store id "
            f"{extra.get('store_id')!r}, this store is {fs.store_id!r}); rebuild with: {rebuild}")
    if m.get("space") != space or m.get("dim") != spec.dim or extra.get("model_id") != spec.model_id:
        raise StaleIndexError(
            f"index is stale: {directory} was built for space {m.get('space')!r} "
            f"(model {extra.get('model_id')!r}, dim {m.get('dim')}), the store's space {space!r} is "
            f"model {spec.model_id!r}, dim {spec.dim}; rebuild with: {rebuild}")
    selection = extra.get("where", where)
    if extra.get("split_seed") != _split_seed(fs, selection):
        raise StaleIndexError(f"index is stale: {directory} was built on split seed "
                              f"{extra.get('split_seed')}, the store's splits are now seed "
                              f"{_split_seed(fs, selection)}; rebuild with: {rebuild}")
    return index, directory, rebuild, selection


SAMPLE_VECTORS = 64  # vectors of a loaded index compared with the store's


def _check_sample(fs, index: VectorIndex, space: str, directory: Path, rebuild: str) -> None:
    """Compare up to SAMPLE_VECTORS of the index's vectors, spread over its rows, with the
    store's vectors of the same image ids: an index whose ids were shuffled, or whose
    files come from another store, answers with the wrong images, and is refused."""
    ids = index.ids
    rows = np.unique(np.linspace(0, ids.size - 1, num=min(SAMPLE_VECTORS, ids.size)).astype(int))
    found, stored = fs.fetch_embeddings(space, ids[rows])
    if found.size < rows.size:
        raise StaleIndexError(f"index is stale: {directory} holds image ids the store has no "
                              f"vector for in space {space!r}; rebuild with: {rebuild}")
    held = index.reconstruct(found)
    wrong = ~np.isclose(held, index.stored_form(stored), atol=1e-5).all(axis=1)
    if wrong.any():
        raise StaleIndexError(
            f"index {directory} does not hold the store's vectors for image ids "
            f"{found[wrong][:5].tolist()} (its files were changed, or come from another "
            f"store); rebuild with: {rebuild}")


def planned_kind(fs, space: str, where: str = "all") -> tuple[str, str]:
    """``(kind, why)``: the index kind :func:`retrieval.choose_plan` picks for the
    selection's size (exact for small stores, HNSW, then IVF-PQ)."""
    plan = choose_plan(int(fs.selection_image_ids(space, where).size))
    return plan.kind, plan.why


def ensure_index(fs, space: str, kind: str = "auto", where: str = "all"
                 ) -> tuple[VectorIndex, str]:
    """``(index, why)``: the saved index of ``kind`` (``auto``: the planned kind) when it is
    fresh; otherwise an exact one built in memory (kept by the caller), so search works
    without a prebuilt index and never answers from a stale one."""
    why = f"--kind {kind}"
    if kind == "auto":
        kind, why = planned_kind(fs, space, where)
    if kind != "exact":
        try:
            return load_index(fs, space, kind, where), why
        except RetrievalError as exc:
            logger.warning("%s; searching exactly instead", exc)
            why += f"; no fresh saved {kind} index, so an exact one built in memory"
    else:
        try:
            return load_index(fs, space, kind, where), why + "; the saved exact index"
        except RetrievalError as exc:
            if "no index at" not in str(exc):
                logger.warning("%s", exc)
    return memory_index(fs, space, where), why

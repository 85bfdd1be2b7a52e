"""``VectorIndex``: a FAISS index over one embedding space, keyed by store ids.

Vectors are L2-normalised on the way in (queries too), so the score of a hit
is the cosine similarity, an inner product in [-1, 1]; higher is closer.
Results are ``(distances, ids)`` arrays of shape ``(n_queries, k)``; an empty
slot (fewer than k vectors, or fewer than k allowed by the filter) holds id
``-1`` and score ``-inf``.

The kinds (``exact``, ``hnsw``, ``ivf_flat``, ``ivf_pq``) and their defaults are
described in :mod:`retrieval.kinds`: one small class per kind owns its parameters,
how its FAISS index is built and trained, its search parameters and what it
stores; :class:`VectorIndex` asks the one it holds and does the rest the same way
for every kind. :func:`retrieval.choose_plan` picks a kind from the store size.

Filtering (``allowed_ids``) happens before ranking: a small allowed set
(at most ``retrieval.plan.EXACT_FILTER_MAX``) is scored exactly from its
stored vectors; a large one goes through a FAISS
``IDSelectorBatch`` on the CPU (widening ``ef_search``/``nprobe`` and finally
falling back to exact scoring when the approximate search found fewer than k
allowed hits), or on the GPU through over-fetching and filtering, doubling k
until k hits or the candidates are exhausted. Without FAISS GPU support but
with a CUDA device visible to PyTorch, exact search runs through
:mod:`retrieval.torch_search` (filters as masks). :attr:`VectorIndex.last_search`
reports which of these paths ran.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

from . import gpu, plan, torch_search
from .errors import InvalidVectorsError, RetrievalError
from .kinds import DEFAULT_PARAMS, KINDS, make_kind
from .manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    REBUILD,
    file_digest,
    id_checksum,
    ids_digest,
    one_line,
    read_manifest,
    write_manifest,
)
from .plan import SearchReport

if TYPE_CHECKING:
    from .torch_search import TorchExactSearch

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_PARAMS", "KINDS", "VectorIndex"]

# Query batches smaller than this run FAISS on one thread.
SMALL_BATCH = 8
# Exact search scores up to EXACT_QUERY_BLOCK queries at a time against chunks of at
# most EXACT_BLOCK_SCORES scores (float32: 128 MiB) per block.
EXACT_QUERY_BLOCK, EXACT_BLOCK_SCORES = 1024, 2**25
# IVF-Flat batches of at least LIST_ORDER_MIN_QUERIES queries against an index whose
# vectors outgrow the CPU caches (LIST_ORDER_MIN_BYTES, twice a 32 MiB L3) run in
# inverted-list order, in chunks of LIST_ORDER_CHUNK queries (same answers; see
# docs/retrieval.md for the measurements). An index that fits in cache gains nothing.
LIST_ORDER_MIN_QUERIES = 256
LIST_ORDER_MIN_BYTES = 64 * 2**20
LIST_ORDER_CHUNK = 65_536

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.npy"
# A filtered approximate search short of k allowed hits widens its effort 4x at a
# time up to this factor, then scores the allowed vectors exactly.
MAX_WIDEN = 16


class VectorIndex:
    """Nearest-neighbour index over L2-normalised float32 vectors with int64 ids.

    Example:
        >>> index = VectorIndex(4, kind="exact")
        >>> index.add(np.array([10, 11]), np.eye(2, 4, dtype=np.float32))
        >>> index.search(np.eye(1, 4, dtype=np.float32), k=3)[1]
        array([[10, 11, -1]])
    """

    def __init__(self, dim: int, kind: str = "exact", use_gpu: bool | None = None,
                 shard: bool = False, torch_device: str | None = None, **params):
        if not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise InvalidVectorsError(f"dim must be a positive integer, got {dim!r}")
        self._kind = make_kind(kind, int(dim), params)  # what depends on the kind
        if torch_device is not None and not self._kind.exact:
            raise RetrievalError(
                f"torch_device={torch_device!r} runs exact search only; use kind 'exact' or drop it")
        self.dim = int(dim)
        self.kind = kind
        n_gpus = gpu.gpu_count()
        if (use_gpu or shard) and n_gpus == 0:
            gpu.note_no_gpu()
        self.use_gpu = n_gpus > 0 and use_gpu is not False
        self.shard = shard
        # Exact search through PyTorch: an explicit device, or None = CUDA when FAISS
        # has no GPU but torch has one (decided at the first search, importing torch then).
        self.torch_device = torch_device
        self._allow_gpu = use_gpu is not False
        self._torch: TorchExactSearch | None = None
        self.last_search: SearchReport | None = None  # what the latest search did
        self._counts: dict = {}
        self.manifest: dict = {}
        self._ids = np.empty(0, dtype=np.int64)  # ids of stored vectors, in insertion order
        self._index: faiss.Index | None = None  # CPU index; None until the first add (IVF trains then)
        self._gpu_index: faiss.Index | None = None
        # what the index holds beyond its vectors: how many its lists were trained on
        # (IVF kinds) and how many it held when first saved (vectors added since then
        # grew it incrementally); recorded in the manifest
        self.trained_on: int | None = None
        self.built_count: int | None = None
        if not self._kind.trains:
            self._index = self._kind.new_index(0, None)

    # ------------------------------------------------------------------ building
    def __len__(self) -> int:
        return int(self._ids.size)

    @property
    def ids(self) -> np.ndarray:
        """Ids of the stored vectors (a copy), in insertion order."""
        return self._ids.copy()

    @property
    def params(self) -> dict:
        """The kind's parameters, with the values building chose (``nlist``, ``nprobe``, ``m``)."""
        return self._kind.params

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` (n, dim) float32 under int64 ``ids`` (n,); ids must be new."""
        ids = _check_ids(ids)
        x = self._check_vectors(vectors, "vectors")
        if ids.size != x.shape[0]:
            raise InvalidVectorsError(
                f"{ids.size} ids for {x.shape[0]} vectors; pass one id per vector row"
            )
        if ids.size == 0:
            return
        if np.unique(ids).size != ids.size:
            dup = ids[np.argsort(ids)][np.flatnonzero(np.diff(np.sort(ids)) == 0)][:5]
            raise InvalidVectorsError(f"ids repeat within one add call (e.g. {dup.tolist()}); "
                                      "ids must be unique")
        clash = np.intersect1d(ids, self._ids)
        if clash.size:
            raise InvalidVectorsError(
                f"{clash.size} id(s) already in the index (e.g. {clash[:5].tolist()}); "
                "remove them first or add only new ids"
            )
        if self._index is None:
            self._index = self._kind.new_index(x.shape[0], x)
            self.trained_on = int(x.shape[0]) if self._kind.trains else None
        if self._kind.native_ids:
            self._index.add_with_ids(x, ids)
        else:
            self._index.add(x)
        self._ids = np.concatenate([self._ids, ids])
        self._gpu_index = None
        self._torch = None
        logger.debug("added %d vectors to %s index (now %d)", ids.size, self.kind, len(self))

    def remove(self, ids: np.ndarray) -> int:
        """Remove the vectors with these ids; returns how many were present."""
        ids = _check_ids(ids)
        self._kind.check_remove()
        present = np.isin(self._ids, ids)
        if not present.any() or self._index is None:
            return 0
        if self._kind.native_ids:  # IVF with a hashtable direct map takes an IDSelectorArray
            sel_ids = np.ascontiguousarray(self._ids[present])
            selector = faiss.IDSelectorArray(sel_ids.size, faiss.swig_ptr(sel_ids))
        else:
            sel_ids = np.flatnonzero(present).astype(np.int64)  # IndexFlat compacts, keeping order
            selector = faiss.IDSelectorBatch(sel_ids.size, faiss.swig_ptr(sel_ids))
        removed = self._index.remove_ids(selector)
        self._ids = self._ids[~present]
        self._gpu_index = None
        self._torch = None
        return int(removed)

    # ----------------------------------------------------------------- searching
    def search(self, queries: np.ndarray, k: int = 10, allowed_ids: np.ndarray | None = None,
               explain: bool = False):
        """The ``k`` nearest stored vectors of each query row.

        Returns ``(distances float32 (n, k), ids int64 (n, k))`` sorted by
        decreasing similarity; ``-inf`` / ``-1`` fill empty slots. With
        ``allowed_ids`` only those ids are ranked (ids not in the index are ignored).
        Every search leaves a :class:`SearchReport` in :attr:`last_search` (which
        path ran, the filter's selectivity, rows returned vs requested);
        ``explain=True`` returns it as a third element.
        """
        q = self._check_vectors(queries, "queries")
        if not isinstance(k, (int, np.integer)) or k <= 0:
            raise RetrievalError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        if len(self) == 0:
            raise RetrievalError("the index is empty: add vectors (or build it from the store) "
                                 "before searching")
        self._counts = {"widened": 0, "exact_fallback": 0}
        allowed = None
        if allowed_ids is None:
            path, backend = self._path_all(k)
            D, ids = self._search_all(q, k)
        else:
            allowed = np.intersect1d(_check_ids(allowed_ids, "allowed_ids"), self._ids)
            if self._torch_device() is not None:
                path, backend = "torch", f"torch:{self._torch_device()}"
                D, ids = self._torch_search().search(q, k, allowed)
            elif allowed.size <= plan.EXACT_FILTER_MAX or allowed.size <= k:
                path, backend = "exact-subset", "numpy"
                D, ids = self._search_exact_subset(q, k, allowed)
            elif self._on_gpu():
                path, backend = "gpu+filter", "faiss-gpu"
                D, ids = self._search_gpu_filtered(q, k, allowed)
            else:
                path = "scan+filter" if self._kind.exact else "approximate+filter"
                backend = "faiss-cpu"
                D, ids = self._search_cpu_filtered(q, k, allowed)
        self.last_search = SearchReport(
            plan=path, kind=self.kind, backend=backend, params=self._search_params(),
            n_queries=int(q.shape[0]), k=k, n_vectors=len(self),
            n_allowed=None if allowed is None else int(allowed.size),
            returned=int((ids >= 0).sum()), requested=int(ids.size), **self._counts)
        logger.debug("search: %s", self.last_search)
        return (D, ids, self.last_search) if explain else (D, ids)

    def _path_all(self, k: int) -> tuple[str, str]:
        if self._on_gpu() and k <= gpu.GPU_MAX_K:
            return "gpu", "faiss-gpu"
        if self._torch_device() is not None:
            return "torch", f"torch:{self._torch_device()}"
        if self._kind.exact:
            return "scan", "numpy"
        return "approximate", "faiss-cpu"

    def _search_params(self) -> dict:
        return {key: self.params[key] for key in self._kind.search_keys}

    def _search_all(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._on_gpu() and k <= gpu.GPU_MAX_K:
            D, labels = self._gpu().search(q, k)
        elif self._torch_device() is not None:
            return self._torch_search().search(q, k)
        elif self._kind.exact:
            # Blocked BLAS matmul over FAISS's own storage (no copy): as fast as a
            # hand-written numpy scan, with the same (-inf, -1) conventions.
            return _exact_topk(q, self._kind.stored_rows(self._index), self._ids, k)
        elif self.searches_in_list_order(q.shape[0]):
            D, labels = self._search_in_list_order(q, k)
        else:
            with _threads(q.shape[0]):
                D, labels = self._index.search(q, k, params=self._params(None, k))
        return self._finish(D, labels)

    def searches_in_list_order(self, n_queries: int) -> bool:
        """Whether an unfiltered CPU batch of ``n_queries`` runs in inverted-list order:
        IVF-Flat, at least LIST_ORDER_MIN_QUERIES queries, vectors that outgrow the caches."""
        return (self._kind.list_order and n_queries >= LIST_ORDER_MIN_QUERIES
                and len(self) * self.dim * 4 >= LIST_ORDER_MIN_BYTES)

    def _search_in_list_order(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """A large IVF batch with the same answers as one ``search`` call, faster: each
        query is first assigned its ``nprobe`` lists, then the queries run sorted by those
        lists, so queries that scan the same lists follow one another and find them
        still in cache instead of reading them from memory again."""
        ivf = faiss.extract_index_ivf(self._index)
        nprobe = int(self.params["nprobe"])
        D = np.empty((q.shape[0], k), dtype=np.float32)
        labels = np.empty((q.shape[0], k), dtype=np.int64)
        for start in range(0, q.shape[0], LIST_ORDER_CHUNK):
            part = q[start:start + LIST_ORDER_CHUNK]
            coarse_d, lists = ivf.quantizer.search(part, nprobe)
            order = np.lexsort(lists[:, :2].T[::-1])  # by first list, then second
            d, lab = ivf.search_preassigned(np.ascontiguousarray(part[order]), k,
                                            lists[order], coarse_d[order])
            D[start + order], labels[start + order] = d, lab
        return D, labels

    def _search_exact_subset(self, q, k, allowed):
        D = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        ids = np.full((q.shape[0], k), -1, dtype=np.int64)
        if allowed.size == 0:
            return D, ids
        vectors = self._reconstruct(allowed)
        return _exact_topk(q, vectors, allowed, k)

    def _search_cpu_filtered(self, q, k, allowed):
        labels_allowed = allowed if self._kind.native_ids else self._positions(allowed)
        selector = faiss.IDSelectorBatch(labels_allowed.size, faiss.swig_ptr(labels_allowed))
        widen = 1
        with _threads(q.shape[0]):
            D, labels = self._index.search(q, k, params=self._params(selector, k, widen))
        D, ids = self._finish(D, labels)
        want = min(k, allowed.size)
        short = np.flatnonzero((ids >= 0).sum(1) < want)
        while short.size and not self._kind.exact and widen < MAX_WIDEN:
            widen *= 4
            D2, L2 = self._index.search(q[short], k, params=self._params(selector, k, widen))
            D[short], ids[short] = self._finish(D2, L2)
            self._counts["widened"] = int(short.size)
            short = short[(ids[short] >= 0).sum(1) < want]
        if short.size:  # approximate search still short of k allowed hits
            self._counts["exact_fallback"] = int(short.size)
            D[short], ids[short] = _exact_topk(q[short], self._reconstruct(allowed), allowed, k)
        return D, ids

    def _search_gpu_filtered(self, q, k, allowed):
        index = self._gpu()
        n = q.shape[0]
        D = np.full((n, k), -np.inf, dtype=np.float32)
        ids = np.full((n, k), -1, dtype=np.int64)
        want = min(k, allowed.size)
        todo = np.arange(n)
        fetch = min(max(4 * k, k + 64), gpu.GPU_MAX_K, len(self))
        while todo.size:
            d_all, lab = index.search(q[todo], fetch)
            d_all, id_all = self._finish(d_all, lab)
            keep = np.isin(id_all, allowed)
            for row, r in enumerate(todo):  # per row: first k allowed hits, already sorted
                hit = np.flatnonzero(keep[row])[:k]
                D[r, : hit.size], ids[r, : hit.size] = d_all[row, hit], id_all[row, hit]
            short = (ids[todo] >= 0).sum(1) < want
            exhausted = fetch >= len(self)
            if not short.any() or exhausted:
                break
            todo = todo[short]
            if fetch >= gpu.GPU_MAX_K:  # past the GPU's k limit: finish on the CPU
                D[todo], ids[todo] = self._search_cpu_filtered(q[todo], k, allowed)
                break
            fetch = min(fetch * 4, gpu.GPU_MAX_K, len(self))
        return D, ids

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Trade recall for speed at search time: ``nprobe`` (IVF kinds) or
        ``ef_search`` (HNSW); recorded in ``params``."""
        if self._kind.set_search_params(self._index, nprobe, ef_search):
            self._gpu_index = None

    def _params(self, selector, k: int, widen: int = 1):
        return self._kind.search_parameters(self._index, selector, k, widen)

    def _finish(self, D: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels = np.asarray(labels, dtype=np.int64)
        empty = labels < 0
        if self._kind.native_ids:
            ids = labels.copy()
        else:
            ids = np.where(empty, -1, self._ids[np.where(empty, 0, labels)])
        D = np.where(empty, -np.inf, D).astype(np.float32)
        return D, ids

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        order = np.argsort(self._ids, kind="stable")
        return order[np.searchsorted(self._ids, ids, sorter=order)].astype(np.int64)

    def _reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of present ``ids`` (decoded codes for ivf_pq without re-ranking)."""
        keys = ids if self._kind.native_ids else self._positions(ids)
        return self._kind.reconstruct(self._index, keys)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Stored (normalised) vectors for ``ids``; every id must be in the index."""
        ids = _check_ids(ids)
        missing = np.setdiff1d(ids, self._ids)
        if missing.size:
            raise RetrievalError(f"{missing.size} id(s) not in the index (e.g. {missing[:5].tolist()})")
        return self._reconstruct(ids)

    def stored_form(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` as this index holds them: normalised, and for ivf_pq without
        re-ranking encoded and decoded; what :meth:`reconstruct` returns for their ids."""
        x = self._check_vectors(vectors, "vectors")
        return self._kind.stored_form(self._index, x) if len(self) else x

    # ----------------------------------------------------------------------- gpu
    def _on_gpu(self) -> bool:
        return self.use_gpu and gpu.supports_gpu(self._index)

    def _torch_device(self) -> str | None:
        """The torch device exact searches run on, or None for FAISS/numpy."""
        if not self._kind.exact or self.use_gpu:
            return None
        if self.torch_device is None and self._allow_gpu and torch_search.cuda_available():
            self.torch_device = "cuda"
            logger.info("FAISS sees no GPU; exact search runs through PyTorch on cuda")
        return self.torch_device

    def _torch_search(self) -> TorchExactSearch:
        if self._torch is None:
            self._torch = torch_search.TorchExactSearch(
                self._kind.stored_rows(self._index), self._ids, self._torch_device())
        return self._torch

    def _gpu(self) -> faiss.Index:
        if self._gpu_index is None:
            nprobe = self.params.get("nprobe")
            self._gpu_index = gpu.to_gpus(self._index, shard=self.shard, nprobe=nprobe)
        return self._gpu_index

    # ------------------------------------------------------------- persistence
    def save(self, directory: str | Path, space: str | None = None, extra: dict | None = None) -> Path:
        """Write ``index.faiss``, ``ids.npy`` and ``manifest.json`` into ``directory``."""
        if self._index is None:
            raise RetrievalError("the index is empty: add vectors before saving it")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._index, str(directory / INDEX_FILE))
        np.save(directory / IDS_FILE, self._ids)
        if self.built_count is None:
            self.built_count = len(self)
        self.manifest = {
            "format_version": FORMAT_VERSION,
            "space": space,
            "kind": self.kind,
            "params": dict(self.params),
            "dim": self.dim,
            "count": len(self),
            "id_checksum": id_checksum(self._ids),
            "ids_digest": ids_digest(self._ids),
            "index_digest": file_digest(directory / INDEX_FILE),
            "faiss_version": faiss.__version__,
            "built_count": int(self.built_count),
            "added_since_build": int(len(self) - self.built_count),
            "trained_on": self.trained_on,
            "extra": dict(extra or {}),
        }
        write_manifest(directory, self.manifest)
        logger.info("saved %s index of %d vectors to %s", self.kind, len(self), directory)
        return directory

    @classmethod
    def load(cls, directory: str | Path, use_gpu: bool | None = None) -> VectorIndex:
        """Read an index written by :meth:`save`, checking its ids against the manifest.

        A missing, truncated or garbled file raises :class:`RetrievalError` with
        one line naming the file and saying to rebuild the index.
        """
        directory = Path(directory)
        manifest = read_manifest(directory)
        where = directory / MANIFEST_NAME
        for name in (INDEX_FILE, IDS_FILE):
            if not (directory / name).is_file():
                raise RetrievalError(f"{directory / name} is missing; {REBUILD}")
        try:
            self = cls(manifest["dim"], manifest["kind"], use_gpu=use_gpu, **manifest["params"])
        except RetrievalError as exc:
            raise RetrievalError(f"{where}: {one_line(exc)}; {REBUILD}") from exc
        index_path = directory / INDEX_FILE
        try:
            self._index = faiss.read_index(str(index_path))
        except (RuntimeError, MemoryError, OSError) as exc:  # FAISS reports corrupt files as RuntimeError
            raise RetrievalError(
                f"{index_path} is not a readable FAISS index (truncated or corrupt: "
                f"{one_line(exc)}); {REBUILD}") from exc
        expected = self._kind.saved_type()
        if not isinstance(self._index, expected) or self._index.d != self.dim:
            raise RetrievalError(
                f"{index_path} holds a {type(self._index).__name__} of dim {self._index.d}, but "
                f"{where} describes a {self.kind!r} index of dim {self.dim}; {REBUILD}")
        ids_path = directory / IDS_FILE
        try:
            ids = np.load(ids_path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise RetrievalError(
                f"{ids_path} is not a readable .npy id array ({one_line(exc)}); {REBUILD}") from exc
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise RetrievalError(
                f"{ids_path} holds a {ids.dtype} array of shape {ids.shape}, not 1-D integer ids; {REBUILD}")
        self._ids = ids.astype(np.int64)
        if id_checksum(self._ids) != manifest["id_checksum"] or self._index.ntotal != len(self):
            raise RetrievalError(
                f"{directory}: ids do not match the manifest (files from different builds?); {REBUILD}"
            )
        if ids_digest(self._ids) != manifest["ids_digest"]:
            raise RetrievalError(
                f"{ids_path}: the ids are not in the order the index was built with (reordered "
                f"or replaced; rows would answer with other images' ids); {REBUILD}")
        if file_digest(index_path) != manifest["index_digest"]:
            raise RetrievalError(
                f"{index_path} is not the file the index was built with (its bytes changed "
                f"since it was saved); {REBUILD}")
        self.manifest = manifest
        # manifests written before these keys: built as they are, IVF lists trained on all
        built = manifest.get("built_count")
        self.built_count = int(built) if isinstance(built, int) else len(self)
        trained = manifest.get("trained_on")
        self.trained_on = int(trained) if isinstance(trained, int) else (
            len(self) if self._kind.trains else None)
        return self

    # Grown past this multiple of the vectors its lists were trained on, an IVF index is
    # worth rebuilding: the lists get longer (slower searches at the same nprobe) and
    # the centroids describe the old vectors only.
    REBUILD_GROWTH = 2.0

    def rebuild_advice(self) -> tuple[bool, str]:
        """``(pays_off, why)``: whether building the index again from its vectors would
        pay off after incremental growth (``add`` to a saved index)."""
        n, added = len(self), len(self) - (self.built_count or len(self))
        grown = f"holds {n:,} vectors, {added:,} added since it was built"
        if self._kind.trains and self.trained_on and n > self.REBUILD_GROWTH * self.trained_on:
            return True, (f"{grown}; its lists were trained on {self.trained_on:,}: rebuild to "
                          "retrain them for the vectors it holds now")
        if self._kind.exact and n > plan.EXACT_MAX_VECTORS:
            planned = plan.choose_plan(n)
            return True, (f"{grown}; at this size the planned kind is {planned.kind!r} "
                          f"({planned.why}): rebuild with that kind for faster searches")
        if self._kind.trains:
            return False, (f"{grown}; its lists were trained on {self.trained_on:,} (rebuild "
                           f"when it holds more than {self.REBUILD_GROWTH:g}x that)")
        return False, (f"{grown}; a {self.kind!r} index holds added vectors as a build "
                       "would: no rebuild needed")

    # ---------------------------------------------------------------- checking
    def _check_vectors(self, x, name: str) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InvalidVectorsError(
                f"{name} have shape {x.shape}, expected (n, {self.dim}); "
                "use vectors from the embedding space this index was built on"
            )
        if x.dtype != np.float32:
            raise InvalidVectorsError(f"{name} are {x.dtype}, expected float32; pass x.astype(np.float32)")
        if not np.isfinite(x).all():
            bad = np.flatnonzero(~np.isfinite(x).all(1))[:5]
            raise InvalidVectorsError(f"{name} rows {bad.tolist()} hold NaN or inf; drop or re-embed them")
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if (norms == 0).any():
            bad = np.flatnonzero(norms[:, 0] == 0)[:5]
            raise InvalidVectorsError(f"{name} rows {bad.tolist()} are all zeros and have no direction")
        return np.ascontiguousarray(x / norms, dtype=np.float32)


def _check_ids(ids, name: str = "ids") -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        arr = arr.ravel() if arr.ndim == 0 else arr
        if arr.ndim != 1:
            raise InvalidVectorsError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidVectorsError(f"{name} must be integers, got {arr.dtype}; pass int64 store ids")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise InvalidVectorsError(f"{name} must be non-negative (-1 means 'no result'), got {arr.min()}")
    return arr


def _exact_topk(q: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int):
    """Top-k inner products of ``q`` against ``vectors`` (both normalised), ties by id.

    Up to ``EXACT_QUERY_BLOCK`` queries at a time against chunks of the stored rows
    (each block of scores at most ``EXACT_BLOCK_SCORES`` floats): the stored matrix is
    read once per block of queries, not once per few dozen, and each chunk's best
    ``k`` are merged at the end."""
    n, m = q.shape[0], ids.size
    D = np.full((n, k), -np.inf, dtype=np.float32)
    out = np.full((n, k), -1, dtype=np.int64)
    kk = min(k, m)
    if kk == 0 or n == 0:
        return D, out
    # the merged candidates (queries x chunks x k) stay within the same bound
    qblock = max(1, min(n, EXACT_QUERY_BLOCK, int(EXACT_BLOCK_SCORES / math.sqrt(m * kk))))
    chunk = max(kk, min(m, EXACT_BLOCK_SCORES // qblock))
    for start in range(0, n, qblock):
        qb = q[start:start + qblock]
        tops, cols = [], []
        for c0 in range(0, m, chunk):
            scores = qb @ vectors[c0:c0 + chunk].T  # (b, c)
            width = scores.shape[1]
            kc = min(kk, width)
            if kc < width:  # the kc largest, unordered, at the end of each row
                part = np.argpartition(scores, width - kc, axis=1)[:, width - kc:]
            else:
                part = np.broadcast_to(np.arange(width), scores.shape)
            tops.append(np.take_along_axis(scores, part, 1))
            cols.append(part + c0)
        top, col = np.concatenate(tops, 1), np.concatenate(cols, 1)
        order = np.lexsort((ids[col], -top), axis=1)[:, :kk]
        D[start:start + qblock, :kk] = np.take_along_axis(top, order, 1)
        out[start:start + qblock, :kk] = ids[np.take_along_axis(col, order, 1)]
    return D, out


@contextlib.contextmanager
def _threads(n_queries: int):
    """One OpenMP thread for a handful of queries: FAISS's parallel loops cost more
    than they save there, and spin badly when the cores are busy."""
    if n_queries >= SMALL_BATCH:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)

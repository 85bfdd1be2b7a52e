"""What each index kind does differently: one small class per kind.

A :class:`retrieval.VectorIndex` holds one :class:`IndexKind` and asks it
everything that depends on the kind: its parameters and their defaults, how the
FAISS index is built (and trained), the FAISS search parameters (widened for a
filtered search), what ``stored_form`` returns, whether vectors can be removed
and which FAISS class a saved file must hold. Everything else (ids, filtering,
exact scoring, GPU and PyTorch paths, save/load) is the same for every kind and
stays in :mod:`retrieval.index`.

Kinds and their defaults (tuned with ``benchmarks/bench_knn.py`` on two
families of 1,024-d vectors of low intrinsic dimension, as real image
embeddings have; docs/retrieval.md holds the curves):

========== ================================================================
exact      ``IndexFlatIP``: brute force, exact.
hnsw       ``IndexHNSWFlat``, ``M=32``, ``ef_construction=80``,
           ``ef_search=32``. Cannot remove vectors.
ivf_flat   ``IndexIVFFlat``, ``nlist=clip(4*sqrt(n), 1, n/39)`` chosen at the
           first ``add`` (which trains the quantizer), ``nprobe=max(16, nlist/64)``.
ivf_pq     ``IndexIVFPQ`` with ``m`` sub-quantizers of ``nbits=8`` (``m`` = the
           largest divisor of dim at most max(dim/8, min(16, dim/2))), same ``nlist``/``nprobe``
           rules, re-ranked by exact scores of the top ``refine_factor * k``
           (``refine_factor=4``; 0 disables re-ranking, keeps only the codes and
           allows ``remove``).
========== ================================================================
"""

from __future__ import annotations

import logging
import math
from typing import ClassVar

import faiss
import numpy as np

from .errors import RetrievalError

logger = logging.getLogger(__name__)


class IndexKind:
    """The kind-specific part of a :class:`retrieval.VectorIndex`.

    ``params`` holds the kind's parameters (defaults filled in); building an
    index records the values it chose (``nlist``, ``nprobe``, ``m``) there.

    Example:
        >>> kind = make_kind("hnsw", 64, {"ef_search": 48})
        >>> kind.params["ef_search"], kind.search_keys
        (48, ('ef_search',))
    """

    name: ClassVar[str]
    defaults: ClassVar[dict] = {}
    # parameters a SearchReport shows
    search_keys: ClassVar[tuple[str, ...]] = ()
    # answers are exact: searches are plain scans, PyTorch can run them, filters never widen
    exact: ClassVar[bool] = False
    # the FAISS index is made at the first add, trained on its vectors
    trains: ClassVar[bool] = False
    # large unfiltered batches may run sorted by inverted list (same answers)
    list_order: ClassVar[bool] = False

    def __init__(self, dim: int, params: dict):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise RetrievalError(
                f"unknown parameter(s) {sorted(unknown)} for kind {self.name!r}; "
                f"it takes {sorted(self.defaults) or 'none'}"
            )
        self.dim = dim
        self.params = {**self.defaults, **params}

    @property
    def native_ids(self) -> bool:
        """True when FAISS labels are store ids; else labels are row positions."""
        return False

    def new_index(self, n: int, train: np.ndarray | None) -> faiss.Index:
        """An empty FAISS index (trained on ``train``, ``n`` rows, for kinds that train)."""
        raise NotImplementedError

    def check_remove(self) -> None:
        """Raise RetrievalError when this kind cannot remove vectors."""

    def search_parameters(self, index: faiss.Index, selector, k: int, widen: int = 1):
        """FAISS search parameters for ``k`` hits, ``widen`` times the usual effort."""
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def set_search_params(self, index: faiss.Index, nprobe: int | None,
                          ef_search: int | None) -> bool:
        """Apply the search-time settings this kind has; True when a GPU copy is stale."""
        return False

    def stored_form(self, index: faiss.Index, x: np.ndarray) -> np.ndarray:
        """Normalised ``x`` as ``index`` (holding vectors) stores it."""
        return x

    def reconstruct(self, index: faiss.Index, keys: np.ndarray) -> np.ndarray:
        """Stored vectors under FAISS labels ``keys``."""
        return index.reconstruct_batch(keys)

    def saved_type(self) -> type:
        """The FAISS class a saved index file of this kind must hold."""
        raise NotImplementedError


class ExactKind(IndexKind):
    """``IndexFlatIP``: every stored vector scored, exact."""

    name = "exact"
    exact = True

    def new_index(self, n: int, train: np.ndarray | None) -> faiss.Index:
        return faiss.IndexFlatIP(self.dim)

    def saved_type(self) -> type:
        return faiss.IndexFlat

    @staticmethod
    def stored_rows(index: faiss.Index) -> np.ndarray:
        """The stored vectors (ntotal, d) as a view of FAISS's own storage (no copy)."""
        xb = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d)
        return xb.reshape(index.ntotal, index.d)


class HNSWKind(IndexKind):
    """``IndexHNSWFlat``: a graph walk of ``ef_search`` candidates; cannot remove."""

    name = "hnsw"
    defaults = {"M": 32, "ef_construction": 80, "ef_search": 32}
    search_keys = ("ef_search",)

    def new_index(self, n: int, train: np.ndarray | None) -> faiss.Index:
        p = self.params
        index = faiss.IndexHNSWFlat(self.dim, int(p["M"]), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(p["ef_construction"])
        index.hnsw.efSearch = int(p["ef_search"])
        return index

    def check_remove(self) -> None:
        raise RetrievalError(
            f"a {self.name!r} index cannot remove vectors (FAISS does not support it); "
            "rebuild it without those ids, or use kind 'exact' or 'ivf_flat'")

    def search_parameters(self, index: faiss.Index, selector, k: int, widen: int = 1):
        ef = max(int(self.params["ef_search"]) * widen, k)
        return faiss.SearchParametersHNSW(sel=selector, efSearch=ef)

    def set_search_params(self, index, nprobe, ef_search) -> bool:
        if ef_search is not None:
            index.hnsw.efSearch = int(ef_search)
            self.params["ef_search"] = int(ef_search)
        return False

    def saved_type(self) -> type:
        return faiss.IndexHNSW


class _IVFKind(IndexKind):
    """Inverted lists: ``nlist`` k-means cells trained at the first add, ``nprobe`` searched."""

    trains = True

    @property
    def native_ids(self) -> bool:
        return True

    def new_index(self, n: int, train: np.ndarray | None) -> faiss.Index:
        p = self.params
        nlist = int(p["nlist"]) if p["nlist"] else max(1, min(int(4 * math.sqrt(n)), n // 39))
        if n < nlist:
            raise RetrievalError(
                f"{self.name} with nlist={nlist} needs at least {nlist} vectors in its first add "
                f"(got {n}) to train; add more vectors at once, lower nlist, or use kind 'exact'"
            )
        p["nlist"] = nlist
        if not p["nprobe"]:
            p["nprobe"] = min(nlist, max(16, nlist // 64))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = self._ivf(quantizer, nlist, n)
        index.own_fields = True
        quantizer.this.disown()
        index.cp.max_points_per_centroid = 64  # k-means on a sample: 64 points per list suffice
        logger.info("training %s (nlist=%d) on %d vectors", self.name, nlist, n)
        index.train(train)
        index.nprobe = int(p["nprobe"])
        return self._finish_index(index)

    def _ivf(self, quantizer: faiss.Index, nlist: int, n: int) -> faiss.Index:
        """The untrained IVF index over ``quantizer``."""
        raise NotImplementedError

    def _finish_index(self, index: faiss.Index) -> faiss.Index:
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct/remove by store id
        return index

    def search_parameters(self, index: faiss.Index, selector, k: int, widen: int = 1):
        nprobe = min(int(self.params["nprobe"]) * widen, int(self.params["nlist"]))
        return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)

    def set_search_params(self, index, nprobe, ef_search) -> bool:
        if nprobe is None:
            return False
        nprobe = max(1, min(int(nprobe), int(self.params["nlist"])))
        faiss.extract_index_ivf(index).nprobe = nprobe
        self.params["nprobe"] = nprobe
        return True


class IVFFlatKind(_IVFKind):
    """``IndexIVFFlat``: full vectors in inverted lists; exact scores within the lists."""

    name = "ivf_flat"
    defaults = {"nlist": None, "nprobe": None}
    search_keys = ("nlist", "nprobe")
    list_order = True

    def _ivf(self, quantizer: faiss.Index, nlist: int, n: int) -> faiss.Index:
        return faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)

    def saved_type(self) -> type:
        return faiss.IndexIVFFlat


class IVFPQKind(_IVFKind):
    """``IndexIVFPQ`` codes, re-ranked by exact scores (``IndexRefineFlat``) unless
    ``refine_factor=0``, which keeps only the codes and allows ``remove``."""

    name = "ivf_pq"
    defaults = {"nlist": None, "nprobe": None, "m": None, "nbits": 8, "refine_factor": 4}
    search_keys = ("nlist", "nprobe", "m", "refine_factor")

    @property
    def native_ids(self) -> bool:
        return not self.params["refine_factor"]

    def _ivf(self, quantizer: faiss.Index, nlist: int, n: int) -> faiss.Index:
        p = self.params
        m = int(p["m"]) if p["m"] else _largest_divisor_at_most(
            self.dim, max(1, self.dim // 8, min(16, self.dim // 2)))
        if self.dim % m:
            raise RetrievalError(f"ivf_pq m={m} must divide dim={self.dim}; pick a divisor of {self.dim}")
        nbits = int(p["nbits"])
        if n < 2 ** nbits:
            raise RetrievalError(
                f"ivf_pq with nbits={nbits} needs at least {2 ** nbits} vectors in its first add "
                f"(got {n}); lower nbits or use kind 'exact'"
            )
        p["m"] = m
        return faiss.IndexIVFPQ(quantizer, self.dim, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)

    def _finish_index(self, index: faiss.Index) -> faiss.Index:
        if not self.params["refine_factor"]:
            return super()._finish_index(index)
        refined = faiss.IndexRefineFlat(index)
        refined.k_factor = float(self.params["refine_factor"])
        refined.own_fields = True
        index.this.disown()
        return refined

    def check_remove(self) -> None:
        if self.params["refine_factor"]:
            raise RetrievalError(
                f"a {self.name!r} index cannot remove vectors (FAISS does not support it with "
                "refine_factor > 0); rebuild it without those ids, or use kind 'exact' or 'ivf_flat'")

    def search_parameters(self, index: faiss.Index, selector, k: int, widen: int = 1):
        ivf = super().search_parameters(index, selector, k, widen)
        if isinstance(index, faiss.IndexRefine):
            return faiss.IndexRefineSearchParameters(
                k_factor=float(self.params["refine_factor"]), base_index_params=ivf)
        return ivf

    def stored_form(self, index: faiss.Index, x: np.ndarray) -> np.ndarray:
        if self.native_ids:  # codes only: what the index holds is the decoded code
            return index.sa_decode(index.sa_encode(x))
        return x

    def reconstruct(self, index: faiss.Index, keys: np.ndarray) -> np.ndarray:
        if isinstance(index, faiss.IndexRefine):  # the exact vectors beside the codes
            index = faiss.downcast_index(index.refine_index)
        return index.reconstruct_batch(keys)

    def saved_type(self) -> type:
        return faiss.IndexRefine if self.params.get("refine_factor") else faiss.IndexIVFPQ


KIND_CLASSES: dict[str, type[IndexKind]] = {
    cls.name: cls for cls in (ExactKind, HNSWKind, IVFFlatKind, IVFPQKind)
}
KINDS = tuple(KIND_CLASSES)
DEFAULT_PARAMS: dict[str, dict] = {name: dict(cls.defaults) for name, cls in KIND_CLASSES.items()}


def make_kind(kind: str, dim: int, params: dict) -> IndexKind:
    """The :class:`IndexKind` named ``kind`` with ``params``; RetrievalError naming the
    kinds (or the parameters the kind takes) otherwise."""
    if kind not in KINDS:
        raise RetrievalError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
    return KIND_CLASSES[kind](dim, params)


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, limit + 1) if n % d == 0)

"""Which search to run: exact or approximate, from the store size and the filter.

:func:`choose_plan` picks the index kind (and its parameters) for a store of
``n_vectors`` and, given a filter that keeps ``n_allowed`` of them, whether a
search should score the allowed vectors exactly instead. :class:`SearchReport`
is what :meth:`retrieval.VectorIndex.search` says about the search that ran.

The thresholds were measured with ``benchmarks/bench_knn.py`` on 1,024-d vectors
of low intrinsic dimension (see docs/retrieval.md):

- below ``EXACT_MAX_VECTORS`` a single exact query stays within a few
  milliseconds, so an approximate index buys little and costs recall and a build;
- a filter keeping at most ``EXACT_FILTER_MAX`` vectors is scored exactly from
  their stored vectors (a graph or inverted-list walk would visit mostly
  vectors the filter rejects);
- past ``HNSW_MAX_VECTORS`` the graph's build time (hours on a few cores) favours
  IVF-PQ with exact re-ranking, which trains on a sample and adds fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Stores up to this many vectors are searched exactly.
EXACT_MAX_VECTORS = 20_000
# Allowed sets up to this size are scored exactly from their stored vectors.
EXACT_FILTER_MAX = 16_384
# Stores past this many vectors get IVF-PQ with re-ranking instead of HNSW.
HNSW_MAX_VECTORS = 5_000_000


@dataclass(frozen=True)
class SearchPlan:
    """An index kind with its parameters, and why it was chosen.

    ``VectorIndex(dim, plan.kind, **plan.params)`` builds the planned index.

    Example:
        >>> choose_plan(1_000).kind
        'exact'
        >>> choose_plan(420_000).kind
        'hnsw'
        >>> choose_plan(420_000, n_allowed=500).kind
        'exact'
    """

    kind: str
    params: dict = field(default_factory=dict)
    why: str = ""
    n_vectors: int = 0
    n_allowed: int | None = None

    @property
    def selectivity(self) -> float:
        """Share of the stored vectors the filter keeps (1.0 without a filter)."""
        if self.n_allowed is None or self.n_vectors == 0:
            return 1.0
        return self.n_allowed / self.n_vectors

    def to_dict(self) -> dict:
        return {**asdict(self), "selectivity": self.selectivity}


def choose_plan(n_vectors: int, n_allowed: int | None = None, k: int = 10) -> SearchPlan:
    """The search plan for a store of ``n_vectors`` (and a filter keeping ``n_allowed``).

    Exact for small stores and selective filters; HNSW (at the default
    parameters of :data:`retrieval.DEFAULT_PARAMS`) up to ``HNSW_MAX_VECTORS``;
    IVF-PQ with exact re-ranking past that.
    """
    n_vectors = int(n_vectors)
    if n_vectors < 0 or (n_allowed is not None and n_allowed < 0) or k <= 0:
        raise ValueError(f"n_vectors={n_vectors}, n_allowed={n_allowed}, k={k}: "
                         "sizes must be >= 0 and k >= 1")
    common = {"n_vectors": n_vectors, "n_allowed": None if n_allowed is None else int(n_allowed)}
    if n_allowed is not None and (n_allowed <= EXACT_FILTER_MAX or n_allowed <= k):
        share = n_allowed / n_vectors if n_vectors else 0.0
        return SearchPlan("exact", {}, f"the filter keeps {n_allowed:,} of {n_vectors:,} vectors "
                          f"({share:.1%}, at most {EXACT_FILTER_MAX:,}): exact scoring of those", **common)
    if n_vectors <= EXACT_MAX_VECTORS:
        return SearchPlan("exact", {}, f"{n_vectors:,} vectors (at most {EXACT_MAX_VECTORS:,}): "
                          "an exact scan is fast enough", **common)
    if n_vectors <= HNSW_MAX_VECTORS:
        return SearchPlan("hnsw", {}, f"{n_vectors:,} vectors: HNSW graph (fastest single queries)",
                          **common)
    return SearchPlan("ivf_pq", {}, f"{n_vectors:,} vectors (over {HNSW_MAX_VECTORS:,}): IVF-PQ "
                      "codes with exact re-ranking (quick to build; refine_factor=0 keeps only the "
                      "codes when the full vectors do not fit in memory)", **common)


@dataclass
class SearchReport:
    """What one :meth:`VectorIndex.search` call did.

    ``plan`` names the path: ``scan`` (exact over every vector), ``exact-subset``
    (exact over the allowed vectors), ``approximate`` (the index's own search),
    ``approximate+filter`` (with an id selector), ``gpu`` / ``gpu+filter``
    (FAISS on the GPU), ``torch`` (exact through PyTorch). ``returned`` counts
    filled result slots against ``requested`` = queries x k; ``widened`` and
    ``exact_fallback`` count queries that needed a wider approximate search or
    an exact one to find k allowed hits.
    """

    plan: str
    kind: str
    backend: str
    params: dict
    n_queries: int
    k: int
    n_vectors: int
    n_allowed: int | None
    returned: int
    requested: int
    widened: int = 0
    exact_fallback: int = 0

    @property
    def selectivity(self) -> float:
        if self.n_allowed is None or self.n_vectors == 0:
            return 1.0
        return self.n_allowed / self.n_vectors

    def to_dict(self) -> dict:
        return {**asdict(self), "selectivity": self.selectivity}

    def __str__(self) -> str:
        filt = ("no filter" if self.n_allowed is None else
                f"filter keeps {self.n_allowed:,} of {self.n_vectors:,} ({self.selectivity:.2%})")
        extra = "".join(f", {n} {w}" for n, w in ((self.widened, "widened"),
                                                   (self.exact_fallback, "exact fallback")) if n)
        params = ", ".join(f"{key}={v}" for key, v in self.params.items())
        return (f"{self.plan} on {self.kind} index ({self.backend}{', ' + params if params else ''}); "
                f"{filt}; {self.returned:,} of {self.requested:,} rows returned{extra}")

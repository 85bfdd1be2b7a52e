"""FAISS vector index, look-alike search and open-set (unknown species) detection."""

from .errors import InvalidVectorsError, NotFittedError, RetrievalError
from .index import DEFAULT_PARAMS, KINDS, VectorIndex
from .manifest import id_checksum, read_manifest
from .openset import OpenSetDetector
from .plan import SearchPlan, SearchReport, choose_plan

__all__ = [
    "DEFAULT_PARAMS",
    "KINDS",
    "InvalidVectorsError",
    "NotFittedError",
    "OpenSetDetector",
    "RetrievalError",
    "SearchPlan",
    "SearchReport",
    "VectorIndex",
    "choose_plan",
    "id_checksum",
    "read_manifest",
]

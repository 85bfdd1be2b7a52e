"""DuckDB-fronted feature store: schema, ingestion, metadata encoding, splits, runs, selections.

>>> from store import FeatureStore
>>> with FeatureStore("fungi.duckdb") as fs:          # doctest: +SKIP
...     print(fs.ingest_metadata("DF20-train_metadata.csv", role="train"))
"""

from .encoding import EncoderInfo
from .errors import InvalidValueError, StoreError, StoreLockedError
from .feature_store import FeatureStore
from .filters import SearchFilters
from .ingest import ROLES, IngestReport
from .queries import SELECTIONS
from .reference import NUM_CLASSES, UNKNOWN_CLASS_ID, poison_status, poisonous_class_ids
from .spaces import EmbeddingIngestReport, EmbeddingSpace
from .splits import PARTS

__all__ = [
    "FeatureStore", "EmbeddingSpace", "StoreError", "StoreLockedError", "InvalidValueError",
    "IngestReport", "EmbeddingIngestReport", "EncoderInfo", "SearchFilters", "SELECTIONS",
    "ROLES", "PARTS", "NUM_CLASSES", "UNKNOWN_CLASS_ID", "poison_status", "poisonous_class_ids",
]

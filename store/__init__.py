"""DuckDB-fronted feature store: schema, ingestion, metadata encoding, splits, image embedding.

>>> from store import FeatureStore
>>> with FeatureStore("fungi.duckdb") as fs:          # doctest: +SKIP
...     print(fs.ingest_metadata("DF20-train_metadata.csv"))
"""

from .encoding import EncoderInfo
from .errors import StoreError, StoreLockedError
from .feature_store import FeatureStore
from .ingest import ROLES, IngestReport
from .reference import NUM_CLASSES, UNKNOWN_CLASS_ID, poison_status, poisonous_class_ids
from .spaces import EmbeddingIngestReport, EmbeddingSpace
from .splits import PARTS

__all__ = [
    "FeatureStore", "EmbeddingSpace", "StoreError", "StoreLockedError", "IngestReport",
    "EmbeddingIngestReport", "EncoderInfo", "ROLES", "PARTS", "NUM_CLASSES", "UNKNOWN_CLASS_ID",
    "poison_status", "poisonous_class_ids",
]

"""DuckDB-fronted feature store: schema, ingestion, metadata encoding, splits, runs, selections.

>>> from store import FeatureStore
>>> with FeatureStore("fungi.duckdb") as fs:          # doctest: +SKIP
...     print(fs.ingest_metadata("DF20-train_metadata.csv", role="train"))
"""

from .embedding_file import EmbeddingFileInfo, embedding_file_info
from .encoding import INPUT_SCHEMA as ENCODER_INPUT_SCHEMA
from .encoding import EncoderInfo
from .errors import InvalidValueError, StoreError, StoreLockedError
from .feature_store import FeatureStore
from .filters import SearchFilters
from .ingest import ROLES, IngestReport
from .queries import SELECTIONS, SPLIT_SELECTIONS
from .reference import NUM_CLASSES, UNKNOWN_CLASS_ID, poison_status, poisonous_class_ids
from .spaces import EmbeddingIngestReport, EmbeddingSpace
from .splits import PARTS
from .vectors import check_vectors

# The store's vocabularies: ROLES (an observation's role), PARTS (of a split), SELECTIONS
# (what an index or training set covers; SPLIT_SELECTIONS depend on the split seed), and
# ENCODER_INPUT_SCHEMA (the observation fields the metadata encoder reads, with their
# Arrow types). The application imports them rather than spelling them out again.
__all__ = [
    "FeatureStore", "EmbeddingSpace", "StoreError", "StoreLockedError", "InvalidValueError",
    "IngestReport", "EmbeddingIngestReport", "EmbeddingFileInfo", "embedding_file_info",
    "EncoderInfo", "SearchFilters", "check_vectors", "ROLES", "PARTS", "SELECTIONS",
    "SPLIT_SELECTIONS", "ENCODER_INPUT_SCHEMA", "NUM_CLASSES", "UNKNOWN_CLASS_ID",
    "poison_status", "poisonous_class_ids",
]

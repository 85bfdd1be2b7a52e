"""DuckDB-fronted feature store: schema, ingestion, metadata encoding, splits, runs, selections.

>>> from store import FeatureStore
>>> with FeatureStore("fungi.duckdb") as fs:          # doctest: +SKIP
...     print(fs.ingest_metadata("DF20-train_metadata.csv", role="train"))

The vocabularies (``ROLES``, ``PARTS``, ``SELECTIONS``, ``SPLIT_SELECTIONS``,
``CLASS_ID_MODES``; see
``store/vocabulary.py``) and the errors load with the package; everything else on
first use, so a command line that only offers the vocabularies as choices does not
load DuckDB.
"""

from importlib import import_module

from .errors import InvalidValueError, StoreError, StoreLockedError
from .vocabulary import CLASS_ID_MODES, PARTS, ROLES, SELECTIONS, SPLIT_SELECTIONS

# name -> (module, attribute): loaded by __getattr__ on first use
_LAZY = {
    "FeatureStore": ("feature_store", "FeatureStore"),
    "EmbeddingSpace": ("spaces", "EmbeddingSpace"),
    "EmbeddingIngestReport": ("spaces", "EmbeddingIngestReport"),
    "EmbeddingFileInfo": ("embedding_file", "EmbeddingFileInfo"),
    "embedding_file_info": ("embedding_file", "embedding_file_info"),
    "IngestReport": ("ingest", "IngestReport"),
    "ClassNumberingError": ("ingest", "ClassNumberingError"),
    "MetadataError": ("contract", "MetadataError"),
    "check_metadata": ("contract", "check_metadata"),
    "EncoderInfo": ("encoding", "EncoderInfo"),
    # the observation fields the metadata encoder reads, with their Arrow types
    "ENCODER_INPUT_SCHEMA": ("encoding", "INPUT_SCHEMA"),
    "SearchFilters": ("filters", "SearchFilters"),
    "check_vectors": ("vectors", "check_vectors"),
    "NUM_CLASSES": ("reference", "NUM_CLASSES"),
    "UNKNOWN_CLASS_ID": ("reference", "UNKNOWN_CLASS_ID"),
    "poison_status": ("reference", "poison_status"),
    "poisonous_class_ids": ("reference", "poisonous_class_ids"),
}

__all__ = ["StoreError", "StoreLockedError", "InvalidValueError", "ROLES", "PARTS",
           "CLASS_ID_MODES",
           "SELECTIONS", "SPLIT_SELECTIONS", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'store' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(import_module(f".{module}", __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

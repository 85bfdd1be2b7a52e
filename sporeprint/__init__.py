"""sporeprint: which fungus is in the photo, and could it poison you.

The application package: the command-line interface and the pipelines that
compose the three libraries ``store`` (DuckDB feature store), ``retrieval``
(FAISS look-alike search, open-set detection) and ``heads`` (classifier heads).
"""

__version__ = "0.1.0"

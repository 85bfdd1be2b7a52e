"""sporeprint: which fungus is in the photo, and could it poison you.

The application package: the command-line interface, the Python API
(:func:`open`) and the pipelines that compose the libraries ``store`` (DuckDB
feature store), ``embedder`` (the image model), ``retrieval`` (FAISS look-alike
search, open-set detection) and ``heads`` (classifier heads).

>>> import sporeprint
>>> db = sporeprint.open("demo-run/fungi.duckdb")      # doctest: +SKIP
"""

__version__ = "0.2.0"


def __getattr__(name: str):
    if name in ("open", "Database", "Search"):  # imported on first use: the CLI stays fast
        from sporeprint import api

        return getattr(api, name)
    raise AttributeError(f"module 'sporeprint' has no attribute {name!r}")


__all__ = ["Database", "Search", "__version__", "open"]

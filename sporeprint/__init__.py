"""sporeprint: which fungus is in the photo, and could it poison you.

The application package: the command-line interface, the Python API
(:func:`open`) and the pipelines that compose the libraries ``store`` (DuckDB
feature store), ``embedder`` (the image model), ``retrieval`` (FAISS look-alike
search, open-set detection) and ``heads`` (classifier heads).

>>> import sporeprint
>>> db = sporeprint.open("demo-run/fungi.duckdb")      # doctest: +SKIP
"""

__version__ = "0.2.0"

# The libraries sporeprint composes, installed beside it under these generic top-level
# names. A folder of the same name in the directory Python starts from (``store/``, ...)
# comes first on ``sys.path`` and would be imported instead.
LIBRARIES = ("store", "heads", "retrieval", "embedder")


def _check_libraries() -> None:
    """Raise ImportError naming the folder when a library name resolves somewhere other
    than beside this package. Locates the packages without importing them."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for name in LIBRARIES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None:  # not installed (embedder is optional): its import says so
            continue
        places = ([spec.origin] if spec.origin and spec.has_location else []) or \
            list(spec.submodule_search_locations or [])
        found = [Path(p).resolve() for p in places]
        if found and all(root in f.parents for f in found):
            continue
        where = str(found[0].parent if spec.origin and spec.has_location else found[0]) \
            if found else "an unknown location"
        raise ImportError(
            f"sporeprint cannot load its {name!r} library: Python finds {name!r} at {where}, "
            f"which shadows the one installed in {root}; run Python from another folder, or "
            f"rename that {name!r} folder")


_check_libraries()


def __getattr__(name: str):
    if name in ("open", "Database", "Search"):  # imported on first use: the CLI stays fast
        from sporeprint import api

        return getattr(api, name)
    raise AttributeError(f"module 'sporeprint' has no attribute {name!r}")


__all__ = ["Database", "Search", "__version__", "open"]

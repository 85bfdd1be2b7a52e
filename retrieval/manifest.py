"""The id checksum and ``manifest.json`` written beside a saved index."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .errors import RetrievalError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


def id_checksum(ids: np.ndarray) -> str:
    """Order-independent checksum of a set of int64 ids.

    Two selections hold the same vectors' ids exactly when their checksums
    match, whatever order the ids come in.

    >>> id_checksum(np.array([3, 1, 2])) == id_checksum(np.array([1, 2, 3]))
    True
    """
    arr = np.sort(np.asarray(ids, dtype=np.int64).ravel())
    digest = hashlib.sha256(arr.astype("<i8", copy=False).tobytes()).hexdigest()
    return f"sha256:{digest}:{arr.size}"


def write_manifest(directory: Path, manifest: dict) -> None:
    path = Path(directory) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=_jsonable) + "\n")
    tmp.replace(path)


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise RetrievalError(
            f"no {MANIFEST_NAME} in {directory}: not a saved index directory; "
            "build one with VectorIndex.save(dir) or `sporeprint index build`"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RetrievalError(f"{path} is not valid JSON ({exc}); rebuild the index") from exc
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise RetrievalError(
            f"{path} has format_version {version!r}, this sporeprint reads {FORMAT_VERSION}; "
            "rebuild the index"
        )
    return manifest


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a manifest")

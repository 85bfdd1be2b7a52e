"""The id checksum, the digests and ``manifest.json`` written beside a saved index.

``id_checksum`` (the set of ids) says whether an index covers a store selection;
``ids_digest`` (the ids in row order) and ``index_digest`` (the FAISS file's bytes)
say whether the files are the ones the build wrote: a reordered ``ids.npy`` keeps the
checksum but not the digest, and loading refuses it."""

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


def ids_digest(ids: np.ndarray) -> str:
    """Order-sensitive digest of int64 ids: row ``i`` of a saved index is the vector of
    ``ids[i]``, so reordered ids (same set, same checksum) change it.

    >>> ids_digest(np.array([1, 2])) == ids_digest(np.array([2, 1]))
    False
    """
    arr = np.ascontiguousarray(np.asarray(ids, dtype="<i8").ravel())
    return f"sha256:{hashlib.sha256(arr.tobytes()).hexdigest()}"


def file_digest(path: Path, chunk: int = 8 << 20) -> str:
    """sha256 of a file's bytes (the FAISS file: its vectors, codes and graph, in order)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


def write_manifest(directory: Path, manifest: dict) -> None:
    path = Path(directory) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=_jsonable) + "\n")
    tmp.replace(path)


REBUILD = "rebuild the index (sporeprint index build)"
# Keys every saved manifest holds, with the type each must have.
REQUIRED = {"format_version": int, "kind": str, "params": dict, "dim": int, "count": int,
            "id_checksum": str, "ids_digest": str, "index_digest": str}


MAX_JSON_BYTES = 1 << 20  # a manifest is a few hundred bytes
MAX_JSON_DEPTH = 16


def read_json(path: Path):
    """Parse a small JSON file written beside a saved index, which may have been altered:
    RetrievalError (one line, naming the file) when it is too large, nested too deep or
    not JSON."""
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise RetrievalError(f"{path} is {size} bytes, not a manifest (a few hundred "
                                 f"bytes; at most {MAX_JSON_BYTES} read); {REBUILD}")
        value = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and bad UTF-8 are ValueErrors
        raise RetrievalError(f"{path} is not valid JSON ({one_line(exc)}); {REBUILD}") from None
    except OSError as exc:
        raise RetrievalError(f"{path} cannot be read ({one_line(exc)}); {REBUILD}") from None
    depth, stack = 0, [(value, 1)]
    while stack and depth <= MAX_JSON_DEPTH:
        node, level = stack.pop()
        depth = max(depth, level)
        inner = node.values() if isinstance(node, dict) else node if isinstance(node, list) \
            else ()
        stack.extend((v, level + 1) for v in inner if isinstance(v, (dict, list)))
    if depth > MAX_JSON_DEPTH:
        raise RetrievalError(f"{path} nests deeper than {MAX_JSON_DEPTH} levels, unlike any "
                             f"manifest; {REBUILD}")
    return value


def read_manifest(directory: Path) -> dict:
    """The checked manifest of a saved index; RetrievalError naming the file otherwise."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise RetrievalError(
            f"no {MANIFEST_NAME} in {directory}: not a saved index directory; "
            "build one with VectorIndex.save(dir) or `sporeprint index build`"
        )
    manifest = read_json(path)
    if not isinstance(manifest, dict):
        raise RetrievalError(f"{path} holds a JSON {type(manifest).__name__}, not an object; {REBUILD}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise RetrievalError(
            f"{path} has format_version {version!r}, this sporeprint reads {FORMAT_VERSION}; {REBUILD}"
        )
    missing = sorted(set(REQUIRED) - set(manifest))
    if missing:
        raise RetrievalError(f"{path} lacks {', '.join(missing)}; {REBUILD}")
    for key, kind in REQUIRED.items():
        value = manifest[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RetrievalError(
                f"{path}: {key}={value!r} should be a JSON {_JSON_NAMES[kind]}; {REBUILD}")
    if manifest["dim"] <= 0 or manifest["count"] < 0:
        raise RetrievalError(
            f"{path}: dim={manifest['dim']} / count={manifest['count']} are out of range; {REBUILD}")
    if not isinstance(manifest.get("extra", {}), dict):
        raise RetrievalError(f"{path}: extra should be a JSON object; {REBUILD}")
    return manifest


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (FAISS's run to several)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_JSON_NAMES = {int: "integer", str: "string", dict: "object"}


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a manifest")

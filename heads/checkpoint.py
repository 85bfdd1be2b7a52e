"""A trained head on disk: a directory with ``model.safetensors`` (weights) and
``config.json`` (head and training settings, embedding space and dimension, metadata
column names, class ids, poisonous flags, metrics). No pickle.

:func:`load_head` checks everything before a tensor is used: ``config.json`` is parsed,
the head and training settings are rebuilt as their config dataclasses and checked by
their own ``validate()``, the class list, flags and dimensions must agree with the head,
and the weights must match the head they fill and hold only finite numbers (a NaN or
infinite weight would turn every score into NaN). Every defect is one
:class:`~heads.errors.HeadsError` line naming the file.

Example:
    >>> saved = load_head("runs/tiny-mlp-fold1", space="tiny")   # doctest: +SKIP
    >>> saved.head.kind, saved.classes[:3]                       # doctest: +SKIP
    ('mlp', array([0, 1, 2]))
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from heads.errors import HeadsError
from heads.metrics import UNKNOWN
from heads.modules import HeadConfig, build_head, config_from_dict
from heads.train import TrainConfig, resolve_device

FORMAT = "sporeprint.heads/1"
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
# The top-level entries of config.json and the JSON types they hold.
CONFIG_KEYS = {"format": str, "head": dict, "train": dict, "space": (str, type(None)),
               "dim": int, "feature_names": (list, type(None)), "classes": list,
               "poisonous": list}
REPAIR = "retrain it with `sporeprint train` or restore the saved head"


@dataclass
class SavedHead:
    """A saved head, read and checked: the module with its weights, its settings, and
    ``classes`` / ``poisonous`` of the known-species outputs (the unknown output's -1 left
    out)."""

    model: torch.nn.Module
    head: HeadConfig
    train: TrainConfig
    space: str | None
    dim: int
    feature_names: list[str] | None
    classes: np.ndarray
    poisonous: np.ndarray
    metrics: dict | None


def save_head(path: str | Path, model: torch.nn.Module, head: HeadConfig, train: TrainConfig,
              space: str | None, feature_names: Sequence[str] | None, classes: np.ndarray,
              poisonous: np.ndarray, metrics: dict | None = None) -> Path:
    """Write ``model.safetensors`` + ``config.json`` into directory ``path``; ``classes`` and
    ``poisonous`` cover every output (with the unknown output's -1 last when it has one)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / WEIGHTS_FILE), metadata={"format": FORMAT})
    meta = {
        "format": FORMAT,
        "head": head.to_dict(),
        "train": asdict(train),
        "space": space,
        "dim": int(head.embed_dim),
        "feature_names": list(feature_names) if feature_names is not None else None,
        "classes": [int(c) for c in classes],
        "poisonous": [bool(p) for p in poisonous],
        "metrics": _jsonable(metrics),
    }
    (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    return path


def load_head(path: str | Path, space: str | None = None, dim: int | None = None,
              feature_names: Sequence[str] | None = None, device: str = "cpu") -> SavedHead:
    """Read a saved head; refuses one trained on another space, dimension or metadata
    encoding when ``space`` / ``dim`` / ``feature_names`` are given."""
    path = Path(path)
    cfg_file, weights = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not cfg_file.is_file() or not weights.is_file():
        raise HeadsError(f"{path} is not a saved head (needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
                         "train one with `sporeprint train`")
    meta, head, train = read_config(cfg_file)
    if space is not None and meta["space"] != space:
        raise HeadsError(f"head at {path} was trained on embedding space {meta['space']!r}, "
                         f"not {space!r}; train a head for {space!r} or use its space")
    if dim is not None and meta["dim"] != dim:
        raise HeadsError(f"head at {path} expects {meta['dim']}-d embeddings, got {dim}-d; "
                         "use the embedding model it was trained with")
    if feature_names is not None and meta["feature_names"] is not None \
            and list(feature_names) != meta["feature_names"]:
        raise HeadsError(f"head at {path} was trained with other metadata columns "
                         f"({len(meta['feature_names'])} vs {len(feature_names)}); "
                         "re-encode with the same encoder or retrain")
    try:
        model = build_head(head)
    except (HeadsError, ValueError, TypeError, RuntimeError) as exc:
        raise HeadsError(f"{cfg_file}: the head it describes cannot be built "
                         f"({str(exc).splitlines()[0]}); {REPAIR}") from None
    model.load_state_dict(read_weights(weights, model.state_dict()))
    model.to(resolve_device(device))
    classes = np.asarray(meta["classes"], dtype=np.int64)
    poisonous = np.asarray(meta["poisonous"], dtype=bool)
    if head.unknown_output:
        classes, poisonous = classes[:-1], poisonous[:-1]
    return SavedHead(model, head, train, meta["space"], meta["dim"], meta["feature_names"],
                     classes, poisonous, meta.get("metrics"))


MAX_JSON_BYTES = 64 << 20  # a head's config.json: classes, flags and metrics, well below
MAX_JSON_DEPTH = 32


def read_json(path: Path):
    """Parse a saved head's JSON file, which may have been altered: HeadsError (one line,
    naming the file) when it is too large, nested too deep or not JSON."""
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise HeadsError(f"{path} is {size} bytes, more than a saved head's settings "
                             f"take (at most {MAX_JSON_BYTES} read); {REPAIR}")
        value = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:  # bad JSON and bad UTF-8: ValueError
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise HeadsError(f"{path} cannot be read as JSON ({first}); {REPAIR}") from None
    depth, stack = 0, [(value, 1)]
    while stack and depth <= MAX_JSON_DEPTH:
        node, level = stack.pop()
        depth = max(depth, level)
        inner = node.values() if isinstance(node, dict) else node if isinstance(node, list) \
            else ()
        stack.extend((v, level + 1) for v in inner if isinstance(v, (dict, list)))
    if depth > MAX_JSON_DEPTH:
        raise HeadsError(f"{path} nests deeper than {MAX_JSON_DEPTH} levels, unlike a saved "
                         f"head's settings; {REPAIR}")
    return value


def read_config(cfg_file: Path) -> tuple[dict, HeadConfig, TrainConfig]:
    """Parse and check a saved head's ``config.json``: ``(meta, head config, train config)``."""
    meta = read_json(cfg_file)
    if not isinstance(meta, dict):
        raise HeadsError(f"{cfg_file} holds a JSON {type(meta).__name__}, not a saved head's "
                         f"settings; {REPAIR}")
    if meta.get("format") != FORMAT:
        raise HeadsError(f"{cfg_file} has format {meta.get('format')!r}, expected {FORMAT!r}")
    missing = [k for k in CONFIG_KEYS if k not in meta]
    if missing:
        raise HeadsError(f"{cfg_file} lacks {', '.join(missing)}; {REPAIR}")
    for key, kind in CONFIG_KEYS.items():
        if not isinstance(meta[key], kind) or (kind is int and isinstance(meta[key], bool)):
            raise HeadsError(f"{cfg_file}: {key} is {meta[key]!r}, of the wrong type; {REPAIR}")
    for key, ok in (("classes", lambda v: isinstance(v, int) and not isinstance(v, bool)),
                    ("poisonous", lambda v: isinstance(v, bool)),
                    ("feature_names", lambda v: isinstance(v, str))):
        if meta[key] is not None and not all(ok(v) for v in meta[key]):
            raise HeadsError(f"{cfg_file}: {key} has an entry of the wrong type; {REPAIR}")
    head = _settings(cfg_file, "head", lambda: config_from_dict(meta["head"]))
    train = _settings(cfg_file, "train", lambda: TrainConfig(
        **{f.name: meta["train"][f.name] for f in fields(TrainConfig) if f.name in meta["train"]}))
    problems = _disagreements(meta, head)
    if problems:
        raise HeadsError(f"{cfg_file} is inconsistent: {'; '.join(problems)}; {REPAIR}")
    return meta, head, train


def _settings(cfg_file: Path, section: str, build: Callable[[], Any]) -> Any:
    """One section of settings as its config dataclass, checked by its own ``validate()``."""
    try:
        cfg = build()
        cfg.validate()
    except (HeadsError, TypeError) as exc:
        raise HeadsError(f"{cfg_file}: {section} settings: {str(exc).splitlines()[0]}; "
                         f"{REPAIR}") from None
    return cfg


def _disagreements(meta: dict, head: HeadConfig) -> list[str]:
    """Where the class list, flags, dimension and feature names disagree with the head."""
    n_out = head.num_outputs
    problems = []
    if meta["dim"] != head.embed_dim:
        problems.append(f"dim {meta['dim']} but head.embed_dim {head.embed_dim}")
    if len(meta["classes"]) != n_out:
        problems.append(f"{len(meta['classes'])} classes but the head has {n_out} outputs")
    if len(meta["poisonous"]) != len(meta["classes"]):
        problems.append(f"{len(meta['poisonous'])} poisonous flags for {len(meta['classes'])} "
                        "classes")
    known = meta["classes"][:-1] if head.unknown_output else meta["classes"]
    if (np.diff(np.asarray(known, dtype=np.int64)) <= 0).any() or any(c < 0 for c in known):
        problems.append("class ids are not sorted, unique and >= 0")
    if head.unknown_output and meta["classes"] and meta["classes"][-1] != UNKNOWN:
        problems.append("the unknown output's class id is not -1")
    if meta["feature_names"] is not None and len(meta["feature_names"]) != head.meta_dim:
        problems.append(f"{len(meta['feature_names'])} feature names but head.meta_dim "
                        f"{head.meta_dim}")
    return problems


def read_weights(weights: Path, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Read ``model.safetensors`` and check its tensors against the head it should fill."""
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise HeadsError(f"{weights} is not a readable safetensors file "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                         f"{REPAIR}") from None
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        parts = [f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else "")
                 ] if missing else []
        if extra:
            parts.append(f"unexpected {', '.join(extra[:3])}" + (" ..." if len(extra) > 3 else ""))
        raise HeadsError(f"{weights} does not match the head in {CONFIG_FILE} "
                         f"({'; '.join(parts)}); {REPAIR}")
    for name, tensor in expected.items():
        got = state[name]
        if tuple(got.shape) != tuple(tensor.shape):
            raise HeadsError(f"{weights}: tensor {name} has shape {tuple(got.shape)}, the head in "
                             f"{CONFIG_FILE} needs {tuple(tensor.shape)}; {REPAIR}")
        if got.is_floating_point() != tensor.is_floating_point():
            raise HeadsError(f"{weights}: tensor {name} has dtype {got.dtype}, expected "
                             f"{tensor.dtype}; {REPAIR}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            bad = int((~torch.isfinite(got)).sum())
            raise HeadsError(f"{weights}: tensor {name} holds {bad} NaN or infinite values of "
                             f"{got.numel()}; {REPAIR}")
    return state


def _jsonable(d: dict[str, Any] | None) -> dict | None:
    """The JSON-able scalar entries of a metrics dict (non-finite floats as null)."""
    if d is None:
        return None
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in d.items() if isinstance(v, (int, float, str, bool))}

"""scikit-learn style classifiers over embeddings + metadata, ensembles, and persistence.

A saved classifier is a directory with ``model.safetensors`` (weights) and
``config.json`` (head and training settings, embedding space and dimension,
metadata column names, class ids, poisonous flags, metrics). No pickle.

Example:
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(60, 8)).astype("float32"), rng.integers(0, 3, 60) * 10
    >>> clf = Classifier("linear", train_config=TrainConfig(epochs=2, progress=False)).fit(X, y)
    >>> clf.classes_.tolist()
    [0, 10, 20]
    >>> clf.predict_proba(X).shape, clf.predict_poison_proba(X).shape
    ((60, 3), (60,))
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from heads.errors import HeadsError, NotFittedError
from heads.inference import predict_outputs, sigmoid, softmax
from heads.modules import (
    CONFIGS,
    HeadConfig,
    build_head,
    config_from_dict,
    make_config,
    metadata_groups,
)
from heads.train import HeadData, TrainConfig, TrainResult, resolve_device, train_head

log = logging.getLogger(__name__)

FORMAT = "sporeprint.heads/1"
UNKNOWN = -1


class EvalSet(NamedTuple):
    """Validation rows for :meth:`Classifier.fit`; labels are class ids (-1 = unknown)."""

    embeddings: np.ndarray
    labels: np.ndarray
    metadata: np.ndarray | None = None
    observation_ids: np.ndarray | None = None


class Classifier:
    """A species + poison classifier head, trained with :func:`heads.train.train_head`.

    ``head`` is ``"linear"``, ``"mlp"`` or ``"fusion"``; ``head_params`` are
    that head's config fields (e.g. ``{"hidden": 512}``). Labels passed to
    ``fit`` are class ids; ``-1`` (unknown) rows train the unknown output when
    ``head_params["unknown_output"]`` is set and are skipped otherwise.
    ``classes_`` lists the class ids of the probability columns (``-1`` last
    when there is an unknown output).
    """

    def __init__(self, head: str = "mlp", head_params: dict[str, Any] | None = None,
                 train_config: TrainConfig | None = None, space: str | None = None,
                 feature_names: Sequence[str] | None = None):
        self.head = head
        self.head_params = head_params
        self.train_config = train_config
        self.space = space
        self.feature_names = feature_names

    # -- scikit-learn parameters (``sklearn.base.clone`` works) ---------
    _PARAMS = ("head", "head_params", "train_config", "space", "feature_names")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The ``__init__`` arguments, by name."""
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params: Any) -> Classifier:
        """Set ``__init__`` arguments by name; returns self."""
        bad = sorted(set(params) - set(self._PARAMS))
        if bad:
            raise HeadsError(f"Classifier has no parameter {', '.join(map(repr, bad))}; "
                             f"valid ones are {', '.join(self._PARAMS)}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if v is not None)
        return f"Classifier({args})"

    # -- fitting -------------------------------------------------------
    def fit(self, embeddings: np.ndarray, y: np.ndarray, metadata: np.ndarray | None = None, *,
            observation_ids: np.ndarray | None = None, poisonous_classes: Sequence[int] = (),
            val: EvalSet | tuple | None = None, genus: np.ndarray | None = None,
            family: np.ndarray | None = None) -> Classifier:
        """Train on ``embeddings`` (n, d) float32 with class ids ``y`` (n,); returns self.

        ``poisonous_classes`` are the class ids on the official poisonous list;
        ``genus`` / ``family`` are optional per-row taxonomy indices (-1 missing).
        """
        if self.head not in CONFIGS:
            raise HeadsError(f"unknown head {self.head!r}; choose one of {', '.join(CONFIGS)}")
        y = np.asarray(y, dtype=np.int64)
        embeddings = np.asarray(embeddings, dtype=np.float32)
        classes = np.unique(y[y >= 0])
        if len(classes) == 0:
            raise HeadsError("y has no known class (all -1); training needs labelled rows")
        params = dict(self.head_params or {})
        meta_dim = 0 if metadata is None else int(np.shape(metadata)[1])
        if self.feature_names is not None and len(self.feature_names) != meta_dim:
            raise HeadsError(f"feature_names has {len(self.feature_names)} names but metadata has "
                             f"{meta_dim} columns; pass the encoder's column names")
        if self.head == "fusion" and "groups" not in params and meta_dim:
            params["groups"] = (metadata_groups(self.feature_names) if self.feature_names
                                else {"metadata": list(range(meta_dim))})
        if genus is not None:
            params.setdefault("num_genus", int(np.max(genus)) + 1)
        if family is not None:
            params.setdefault("num_family", int(np.max(family)) + 1)
        cfg = make_config(self.head, embed_dim=embeddings.shape[1], num_classes=len(classes),
                          meta_dim=meta_dim, **params)
        poisonous = np.isin(classes, np.asarray(list(poisonous_classes), dtype=np.int64))
        train = HeadData(embeddings, self._to_index(classes, y), metadata,
                         observation_ids, genus=genus, family=family)
        val_data = None
        if val is not None:
            v = EvalSet(*val)
            val_data = HeadData(v.embeddings, self._to_index(classes, np.asarray(v.labels)),
                                v.metadata, v.observation_ids)
        tc = self.train_config or TrainConfig()
        result = train_head(cfg, train, val_data, tc, poisonous=poisonous)
        self._set_fitted(result.model, cfg, tc, classes, poisonous)
        self.result_: TrainResult | None = result
        self.history_ = result.history
        self.metrics_ = result.best_metrics
        return self

    @staticmethod
    def _to_index(classes: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Class ids -> column indices; ids outside ``classes`` (and -1) become -1."""
        idx = np.searchsorted(classes, y)
        idx = np.clip(idx, 0, len(classes) - 1)
        return np.where(classes[idx] == y, idx, -1).astype(np.int64)

    def _set_fitted(self, model, cfg: HeadConfig, tc: TrainConfig, classes: np.ndarray,
                    poisonous: np.ndarray) -> None:
        self.model_ = model.eval()
        self.config_ = cfg
        self.train_config_ = tc
        self.classes_ = np.r_[classes, [UNKNOWN]] if cfg.unknown_output else classes
        self.poisonous_ = np.r_[poisonous, [False]] if cfg.unknown_output else poisonous
        self.n_features_in_ = cfg.embed_dim

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this Classifier is not fitted yet; call fit first (or Classifier.load)")

    # -- prediction ----------------------------------------------------
    def predict_logits(self, embeddings: np.ndarray, metadata: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(species logits (n, C), poison logit (n,))``."""
        self._check_fitted()
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.n_features_in_:
            raise HeadsError(f"embeddings have shape {embeddings.shape}, this head expects "
                             f"(n, {self.n_features_in_}); use vectors of the space it was trained on")
        if self.config_.meta_dim and metadata is None:
            raise HeadsError(f"this head needs metadata with {self.config_.meta_dim} columns; "
                             "pass the encoded features of the same encoder")
        out = predict_outputs(self.model_, embeddings, metadata if self.config_.meta_dim else None)
        return out["species"], out["poison"]

    def predict_proba(self, embeddings: np.ndarray, metadata: np.ndarray | None = None
                      ) -> np.ndarray:
        """Species probabilities (n, C), one column per entry of ``classes_``."""
        return softmax(self.predict_logits(embeddings, metadata)[0])

    def predict_poison_proba(self, embeddings: np.ndarray, metadata: np.ndarray | None = None
                             ) -> np.ndarray:
        """The poison output's probability that a row is poisonous (n,)."""
        return sigmoid(self.predict_logits(embeddings, metadata)[1])

    def predict(self, embeddings: np.ndarray, metadata: np.ndarray | None = None) -> np.ndarray:
        """Most probable class id per row (-1 when the unknown output wins)."""
        return self.classes_[self.predict_proba(embeddings, metadata).argmax(axis=1)]

    # -- persistence ---------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``model.safetensors`` + ``config.json`` into directory ``path``."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model_.state_dict().items()}
        save_file(state, str(path / "model.safetensors"), metadata={"format": FORMAT})
        meta = {
            "format": FORMAT,
            "head": self.config_.to_dict(),
            "train": asdict(self.train_config_),
            "space": self.space,
            "dim": int(self.n_features_in_),
            "feature_names": list(self.feature_names) if self.feature_names is not None else None,
            "classes": [int(c) for c in self.classes_],
            "poisonous": [bool(p) for p in self.poisonous_],
            "metrics": _jsonable(getattr(self, "metrics_", None)),
        }
        (path / "config.json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, space: str | None = None, dim: int | None = None,
             feature_names: Sequence[str] | None = None, device: str = "cpu") -> Classifier:
        """Load a saved classifier; refuses one trained on another space, dimension or
        metadata encoding when ``space`` / ``dim`` / ``feature_names`` are given.

        A damaged directory (bad ``config.json``, unreadable or mismatched weights)
        raises :class:`HeadsError` with one line naming the file."""
        path = Path(path)
        cfg_file, weights = path / "config.json", path / "model.safetensors"
        if not cfg_file.is_file() or not weights.is_file():
            raise HeadsError(f"{path} is not a saved head (needs config.json and model.safetensors); "
                             "train one with `sporeprint train`")
        meta, head_cfg, tc = _read_config(cfg_file)
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
            model = build_head(head_cfg)
        except (HeadsError, ValueError, TypeError, RuntimeError) as exc:
            raise HeadsError(f"{cfg_file}: the head it describes cannot be built "
                             f"({str(exc).splitlines()[0]}); {_REPAIR}") from None
        model.load_state_dict(_read_weights(weights, model.state_dict()))
        model.to(resolve_device(device))
        clf = cls(head_cfg.kind, None, tc, meta["space"], meta["feature_names"])
        classes = np.asarray(meta["classes"], dtype=np.int64)
        poisonous = np.asarray(meta["poisonous"], dtype=bool)
        if head_cfg.unknown_output:
            classes, poisonous = classes[:-1], poisonous[:-1]
        clf._set_fitted(model, head_cfg, tc, classes, poisonous)
        clf.metrics_ = meta.get("metrics")
        clf.result_ = None
        return clf


class Ensemble:
    """Average of several classifiers (e.g. the two fold heads).

    ``combine="prob"`` averages probabilities over the union of the members'
    classes (a class a member lacks counts as probability 0 for it);
    ``combine="logit"`` averages logits and needs identical class lists.

    Example:
        >>> ens = Ensemble([fold1, fold2])          # doctest: +SKIP
        >>> probs = ens.predict_proba(X, meta)          # doctest: +SKIP
        >>> poison = ens.predict_poison_proba(X, meta)  # doctest: +SKIP
    """

    def __init__(self, members: Sequence[Classifier], combine: str = "prob"):
        if not members:
            raise HeadsError("an Ensemble needs at least one classifier")
        if combine not in ("prob", "logit"):
            raise HeadsError(f"combine must be 'prob' or 'logit', got {combine!r}")
        for m in members:
            m._check_fitted()
        dims = {m.n_features_in_ for m in members}
        spaces = {m.space for m in members}
        if len(dims) > 1 or len(spaces) > 1:
            raise HeadsError(f"ensemble members differ in embedding space/dim: {spaces} / {dims}; "
                             "combine heads trained on one space")
        self.members = list(members)
        self.combine = combine
        if combine == "logit":
            first = members[0].classes_
            if any(not np.array_equal(m.classes_, first) for m in members):
                raise HeadsError("members have different class lists; use combine='prob'")
        self.classes_ = np.unique(np.concatenate([m.classes_ for m in members]))
        if (self.classes_ == UNKNOWN).any():  # keep the unknown column last
            self.classes_ = np.r_[self.classes_[self.classes_ != UNKNOWN], [UNKNOWN]]
        pois = {int(c) for m in members for c, p in zip(m.classes_, m.poisonous_, strict=True) if p}
        self.poisonous_ = np.isin(self.classes_, list(pois))
        self.space = members[0].space
        self.n_features_in_ = members[0].n_features_in_

    def predict_proba(self, embeddings: np.ndarray, metadata: np.ndarray | None = None
                      ) -> np.ndarray:
        """Species probabilities (n, C), one column per entry of ``classes_``."""
        if self.combine == "logit":
            logits = np.mean([m.predict_logits(embeddings, metadata)[0] for m in self.members],
                             axis=0)
            return softmax(logits)
        probs = np.zeros((len(embeddings), len(self.classes_)), dtype=np.float32)
        for m in self.members:
            cols = np.searchsorted(self.classes_[self.classes_ >= 0], m.classes_)
            cols[m.classes_ == UNKNOWN] = len(self.classes_) - 1
            probs[:, cols] += m.predict_proba(embeddings, metadata)
        probs /= len(self.members)
        return probs

    def predict_poison_proba(self, embeddings: np.ndarray, metadata: np.ndarray | None = None
                             ) -> np.ndarray:
        """The members' poison outputs combined (n,): sigmoid of the mean logit for
        ``combine="logit"``, the mean probability for ``"prob"``."""
        logits = [m.predict_logits(embeddings, metadata)[1] for m in self.members]
        if self.combine == "logit":
            return sigmoid(np.mean(logits, axis=0))
        return np.mean([sigmoid(z) for z in logits], axis=0).astype(np.float32)

    def predict(self, embeddings: np.ndarray, metadata: np.ndarray | None = None) -> np.ndarray:
        return self.classes_[self.predict_proba(embeddings, metadata).argmax(axis=1)]


def _jsonable(d: dict | None) -> dict | None:
    if d is None:
        return None
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in d.items() if isinstance(v, (int, float, str, bool))}


# -- reading a saved head: every defect becomes one line naming the file ----------
_CONFIG_KEYS = {"format": str, "head": dict, "train": dict, "space": (str, type(None)),
                "dim": int, "feature_names": (list, type(None)), "classes": list,
                "poisonous": list}
_REPAIR = "retrain it with `sporeprint train` or restore the saved head"


def _type_ok(value: Any, annotation: str) -> bool:
    """Whether a JSON value fits a config field annotated ``annotation`` (a string)."""
    if annotation == "bool":
        return isinstance(value, bool)
    if annotation == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation == "str":
        return isinstance(value, str)
    if annotation.startswith("dict"):
        return isinstance(value, dict)
    return True


def _check_fields(cfg_file: Path, section: str, values: dict, cls: type) -> None:
    for f in fields(cls):
        if f.name in values and not _type_ok(values[f.name], str(f.type)):
            raise HeadsError(f"{cfg_file}: {section}.{f.name} is {values[f.name]!r}, expected "
                             f"{f.type}; {_REPAIR}")


def _read_config(cfg_file: Path) -> tuple[dict, HeadConfig, TrainConfig]:
    """Parse and check a saved head's ``config.json``."""
    try:
        meta = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeadsError(f"{cfg_file} cannot be read as JSON ({str(exc).splitlines()[0]}); "
                         f"{_REPAIR}") from None
    if not isinstance(meta, dict):
        raise HeadsError(f"{cfg_file} holds a JSON {type(meta).__name__}, not a saved head's "
                         f"settings; {_REPAIR}")
    if meta.get("format") != FORMAT:
        raise HeadsError(f"{cfg_file} has format {meta.get('format')!r}, expected {FORMAT!r}")
    missing = [k for k in _CONFIG_KEYS if k not in meta]
    if missing:
        raise HeadsError(f"{cfg_file} lacks {', '.join(missing)}; {_REPAIR}")
    for key, kind in _CONFIG_KEYS.items():
        if not isinstance(meta[key], kind) or (kind is int and isinstance(meta[key], bool)):
            raise HeadsError(f"{cfg_file}: {key} is {meta[key]!r}, of the wrong type; {_REPAIR}")
    for key, ok in (("classes", lambda v: isinstance(v, int) and not isinstance(v, bool)),
                    ("poisonous", lambda v: isinstance(v, bool)),
                    ("feature_names", lambda v: isinstance(v, str))):
        if meta[key] is not None and not all(ok(v) for v in meta[key]):
            raise HeadsError(f"{cfg_file}: {key} has an entry of the wrong type; {_REPAIR}")
    head = meta["head"]
    kind = head.get("kind")
    if kind not in CONFIGS:
        raise HeadsError(f"{cfg_file}: head.kind is {kind!r}, expected one of "
                         f"{', '.join(CONFIGS)}; {_REPAIR}")
    _check_fields(cfg_file, "head", head, CONFIGS[kind])
    _check_fields(cfg_file, "train", meta["train"], TrainConfig)
    try:
        head_cfg = config_from_dict(head)
        head_cfg.validate()
        tc = TrainConfig(**{f.name: meta["train"][f.name] for f in fields(TrainConfig)
                            if f.name in meta["train"]})
    except (HeadsError, TypeError) as exc:
        raise HeadsError(f"{cfg_file}: {str(exc).splitlines()[0]}; {_REPAIR}") from None
    n_out = head_cfg.num_outputs
    problems = []
    if meta["dim"] != head_cfg.embed_dim:
        problems.append(f"dim {meta['dim']} but head.embed_dim {head_cfg.embed_dim}")
    if len(meta["classes"]) != n_out:
        problems.append(f"{len(meta['classes'])} classes but the head has {n_out} outputs")
    if len(meta["poisonous"]) != len(meta["classes"]):
        problems.append(f"{len(meta['poisonous'])} poisonous flags for {len(meta['classes'])} classes")
    known = meta["classes"][:-1] if head_cfg.unknown_output else meta["classes"]
    if (np.diff(np.asarray(known, dtype=np.int64)) <= 0).any() or any(c < 0 for c in known):
        problems.append("class ids are not sorted, unique and >= 0")
    if head_cfg.unknown_output and meta["classes"] and meta["classes"][-1] != UNKNOWN:
        problems.append("the unknown output's class id is not -1")
    if meta["feature_names"] is not None and len(meta["feature_names"]) != head_cfg.meta_dim:
        problems.append(f"{len(meta['feature_names'])} feature names but head.meta_dim "
                        f"{head_cfg.meta_dim}")
    if problems:
        raise HeadsError(f"{cfg_file} is inconsistent: {'; '.join(problems)}; {_REPAIR}")
    return meta, head_cfg, tc


def _read_weights(weights: Path, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Read ``model.safetensors`` and check its tensors against the head it should fill."""
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise HeadsError(f"{weights} is not a readable safetensors file "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                         f"{_REPAIR}") from None
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        parts = [f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else "")] if missing else []
        if extra:
            parts.append(f"unexpected {', '.join(extra[:3])}" + (" ..." if len(extra) > 3 else ""))
        raise HeadsError(f"{weights} does not match the head in config.json ({'; '.join(parts)}); "
                         f"{_REPAIR}")
    for name, tensor in expected.items():
        got = state[name]
        if tuple(got.shape) != tuple(tensor.shape):
            raise HeadsError(f"{weights}: tensor {name} has shape {tuple(got.shape)}, the head in "
                             f"config.json needs {tuple(tensor.shape)}; {_REPAIR}")
        if got.is_floating_point() != tensor.is_floating_point():
            raise HeadsError(f"{weights}: tensor {name} has dtype {got.dtype}, expected "
                             f"{tensor.dtype}; {_REPAIR}")
    return state

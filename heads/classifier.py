"""scikit-learn style classifiers over embeddings + metadata, and ensembles of them.

``Classifier.save`` / ``Classifier.load`` write and read a directory of
``model.safetensors`` + ``config.json`` (:mod:`heads.checkpoint`, which checks it).

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

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from heads.checkpoint import FORMAT, load_head, save_head  # noqa: F401 (FORMAT: re-exported)
from heads.errors import HeadsError, NotFittedError
from heads.inference import predict_outputs, sigmoid, softmax
from heads.metrics import UNKNOWN
from heads.modules import CONFIGS, HeadConfig, make_config, metadata_groups
from heads.train import HeadData, TrainConfig, TrainResult, train_head

log = logging.getLogger(__name__)


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
        return save_head(path, self.model_, self.config_, self.train_config_, self.space,
                         self.feature_names, self.classes_, self.poisonous_,
                         getattr(self, "metrics_", None))

    @classmethod
    def load(cls, path: str | Path, space: str | None = None, dim: int | None = None,
             feature_names: Sequence[str] | None = None, device: str = "cpu") -> Classifier:
        """Load a saved classifier; refuses one trained on another space, dimension or
        metadata encoding when ``space`` / ``dim`` / ``feature_names`` are given.

        A damaged directory (bad ``config.json``, unreadable or mismatched weights)
        raises :class:`HeadsError` with one line naming the file."""
        saved = load_head(path, space, dim, feature_names, device)
        clf = cls(saved.head.kind, None, saved.train, saved.space, saved.feature_names)
        clf._set_fitted(saved.model, saved.head, saved.train, saved.classes, saved.poisonous)
        clf.metrics_ = saved.metrics
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

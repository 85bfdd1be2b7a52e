"""Train classifier heads on a store's folds and record each run.

Per fold (DESIGN §4): training = role ``train`` images + the other validation
part, validation = the fold's part. Rows are images; embeddings come from the
store's embedding space, metadata from the encoded observation features. The
class list of a head = the class ids seen in its training rows; validation
rows of other classes (and ``-1``) count as unknown.

Example:
    >>> with FeatureStore("fungi.duckdb") as fs:                       # doctest: +SKIP
    ...     runs = train_folds(fs, "dinov2_l", head="mlp", folds=[1, 2])
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heads.classifier import Classifier, Ensemble, EvalSet
from heads.inference import aggregate_by_observation
from heads.metrics import fungiclef_scores
from heads.train import TrainConfig
from store import StoreError

log = logging.getLogger(__name__)


@dataclass
class Rows:
    """Image rows of one selection of observations."""

    image_ids: np.ndarray
    observation_ids: np.ndarray
    class_ids: np.ndarray  # -1 unknown
    embeddings: np.ndarray
    metadata: np.ndarray

    def __len__(self) -> int:
        return len(self.image_ids)


@dataclass
class FoldRun:
    run_id: str
    fold: int | None
    path: Path
    metrics: dict[str, Any] = field(default_factory=dict)


def runs_dir(store_path: str | Path) -> Path:
    """Default home of trained heads: ``<store>.runs/`` beside the store file."""
    return Path(str(store_path) + ".runs")


def poisonous_ids(fs) -> np.ndarray:
    return fs.sql("SELECT class_id FROM species WHERE poisonous ORDER BY 1").column(0) \
        .to_numpy().astype(np.int64)


def load_rows(fs, space: str, observation_ids: np.ndarray,
              labelled_only: bool = True) -> tuple[Rows, list[str]]:
    """Embeddings + metadata + labels of the images of ``observation_ids``
    (labelled or ``-1``; unlabelled observations are skipped unless
    ``labelled_only=False``, when their class is ``-1`` too)."""
    if fs.get_space(space) is None:
        spaces = [r for r in fs.sql("SELECT space FROM embedding_spaces ORDER BY 1").column(0)
                  .to_pylist()]
        raise ValueError(f"embedding space {space!r} is not in the store (it has {spaces}); "
                         "run `sporeprint embed` or `sporeprint ingest --embeddings` first")
    table = fs.sql(
        "SELECT i.image_id, i.observation_id, coalesce(o.class_id, -1) AS class_id FROM images i "
        "JOIN observations o USING (observation_id) "
        "WHERE (o.class_id IS NOT NULL OR NOT ?) "
        "AND o.observation_id IN (SELECT unnest(?::BIGINT[])) "
        "ORDER BY i.image_id", [labelled_only, np.asarray(observation_ids, dtype=np.int64).tolist()])
    image_ids = table.column("image_id").to_numpy().astype(np.int64)
    ids, vectors = fs.fetch_embeddings(space, image_ids)
    if len(ids) < len(image_ids):
        log.warning("%d of %d images have no %r embedding and are left out",
                    len(image_ids) - len(ids), len(image_ids), space)
    pos = np.searchsorted(image_ids, ids)
    obs = table.column("observation_id").to_numpy().astype(np.int64)[pos]
    cls = table.column("class_id").to_numpy().astype(np.int64)[pos]
    meta, names = _features(fs, obs)
    return Rows(ids, obs, cls, vectors, meta), names


def _features(fs, observation_ids: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Encoded metadata per row; encodes observations that have no features yet."""
    uniq = np.unique(observation_ids)
    f_ids, matrix, names = fs.fetch_features(uniq)
    if len(f_ids) < len(uniq):
        missing = np.setdiff1d(uniq, f_ids)
        log.info("encoding metadata of %d observations", len(missing))
        fs.encode_observations(missing)
        f_ids, matrix, names = fs.fetch_features(uniq)
    order = np.argsort(f_ids)
    pos = np.searchsorted(f_ids[order], observation_ids)
    return matrix[order][pos], names


def fold_rows(fs, space: str, fold: int) -> tuple[Rows, Rows, Rows, list[str]]:
    """(train, val, test) rows of ``fold`` and the metadata column names."""
    parts = fs.fold_observations(fold)
    train, names = load_rows(fs, space, parts["train"])
    val, _ = load_rows(fs, space, parts["val"])
    test, _ = load_rows(fs, space, parts["test"])
    if len(train) == 0:
        raise ValueError(f"fold {fold} has no labelled training images with {space!r} embeddings")
    return train, val, test, names


def _ensure_encoder(fs) -> None:
    try:
        fs.fetch_features(np.zeros(0, dtype=np.int64))
    except StoreError:  # no encoder yet
        log.info("fitting the metadata encoder on role=train observations")
        fs.fit_encoder()


def _ensure_splits(fs, seed: int) -> None:
    if fs.sql("SELECT count(*) FROM splits").column(0)[0].as_py() == 0:
        log.info("making validation splits with seed %d", seed)
        fs.make_splits(seed)


def scores_of(clf, rows: Rows, poison: np.ndarray) -> dict[str, float]:
    """Official scores per observation (image probabilities averaged per observation)."""
    probs = clf.predict_proba(rows.embeddings, rows.metadata)
    obs, mean = aggregate_by_observation(probs, rows.observation_ids)
    _, first = np.unique(rows.observation_ids, return_index=True)
    truth = rows.class_ids[np.sort(first)]
    return fungiclef_scores(truth, clf.classes_[mean.argmax(axis=1)], poison)


def train_folds(fs, space: str, head: str = "mlp", folds: list[int] = (1, 2),
                head_params: dict | None = None, config: TrainConfig | None = None,
                out_dir: str | Path | None = None, store_path: str | Path | None = None,
                split_seed: int = 0) -> list[FoldRun]:
    """Train one head per fold, save it, record it in ``runs``; with two folds also
    score their ensemble on the held-out ``test`` part. Returns the recorded runs."""
    config = config or TrainConfig()
    root = Path(out_dir) if out_dir else runs_dir(store_path or fs.path)
    _ensure_encoder(fs)
    _ensure_splits(fs, split_seed)
    poison = poisonous_ids(fs)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    runs, members, test_rows = [], [], None
    for fold in folds:
        train, val, test, names = fold_rows(fs, space, fold)
        test_rows = test
        log.info("fold %d: %d training images, %d validation images", fold, len(train), len(val))
        clf = Classifier(head, head_params, config, space=space, feature_names=names)
        clf.fit(train.embeddings, train.class_ids, train.metadata,
                observation_ids=train.observation_ids, poisonous_classes=poison,
                val=EvalSet(val.embeddings, val.class_ids, val.metadata, val.observation_ids)
                if len(val) else None)
        run_id = f"{space}-{head}-fold{fold}-{stamp}-s{config.seed}"
        path = clf.save(root / run_id)
        metrics = {k: v for k, v in clf.metrics_.items() if isinstance(v, (int, float))}
        metrics.update(n_train_images=len(train), n_val_images=len(val),
                       n_classes=int((clf.classes_ >= 0).sum()))
        fs.record_run(run_id, "train", space, head, fold,
                      {"head": clf.config_.to_dict(), "train": asdict(config)}, metrics, str(path))
        runs.append(FoldRun(run_id, fold, path, metrics))
        members.append(clf)
    if len(members) > 1 and test_rows is not None and len(test_rows):
        ens = Ensemble(members, combine="prob")
        metrics = {"test_" + k: v for k, v in scores_of(ens, test_rows, poison).items()}
        for run, clf in zip(runs, members, strict=True):
            run.metrics.update({"test_" + k: v for k, v in
                                scores_of(clf, test_rows, poison).items()})
        run_id = f"{space}-{head}-ensemble-{stamp}-s{config.seed}"
        fs.record_run(run_id, "ensemble", space, head, None,
                      {"members": [r.run_id for r in runs], "combine": "prob"}, metrics, str(root))
        runs.append(FoldRun(run_id, None, root, metrics))
    return runs

"""Train classifier heads on a store's folds and record each run.

Per fold: training = role ``train`` images + the other validation
part, validation = the fold's part. With ``calibration="oof"`` (the default) the
heads train on all of it and are calibrated per head, out-of-fold; with
``calibration="holdout"`` the store's calibration slice (``store/splits.py``: one in
three of the p1 and p2 observations, species-stratified) is taken out of both, so
the deployed ensemble can be calibrated on its own predictions there (see
``sporeprint.scoring.calibration``). The choice is recorded in each run's config;
``sporeprint train`` then fits the trained runs' calibration
(``sporeprint.scoring.calibration.fit_and_record``). Rows are images
(``sporeprint.rows``); embeddings come from the store's embedding space, metadata
from the encoded observation features. The class list of a head = the class ids
seen in its training rows; validation rows of other classes (and ``-1``) count as
unknown.

Each fold run records its ``identity`` (:func:`fold_identity`): a digest of the
settings it was trained with and of the rows it trained and stopped early on. With
``reuse=True`` (what ``sporeprint train`` does) a fold whose identity matches a
finished run is not trained again: its saved head is loaded and joins the ensemble,
so an interrupted training resumes at the fold it lost. Other settings, another split
or changed data give another identity, and the fold trains afresh.

Example:
    >>> with FeatureStore("fungi.duckdb") as fs:                       # doctest: +SKIP
    ...     runs = train_folds(fs, "dinov2_l", head="mlp", folds=[1, 2])
    ...     fit_and_record(fs, [runs[-1].run_id])  # the ensemble's calibration
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heads.classifier import Classifier, Ensemble, EvalSet
from heads.errors import HeadsError
from heads.inference import aggregate_by_observation
from heads.metrics import first_per_observation, fungiclef_scores
from heads.train import TrainConfig
from sporeprint.errors import SporeprintError
from sporeprint.rows import Rows, encode_missing, load_rows
from sporeprint.scoring.calibration import slice_digest
from sporeprint.scoring.settings import (
    CALIBRATION_MODES,
    DEFAULT_CALIBRATION,
    DEFAULT_POISON_SHIFT,
)
from store import StoreError
from store.splits import CALIBRATION_ONE_IN  # the slice: one in three of p1 and p2

log = logging.getLogger(__name__)


def calibration_settings(mode: str = DEFAULT_CALIBRATION,
                         poison_shift: bool = DEFAULT_POISON_SHIFT) -> dict:
    """The calibration settings a training run records in its config."""
    if mode not in CALIBRATION_MODES:
        raise SporeprintError(f"calibration mode {mode!r} does not exist; choose one of "
                              f"{', '.join(CALIBRATION_MODES)}")
    return {"mode": mode, "one_in": CALIBRATION_ONE_IN if mode == "holdout" else None,
            "poison_shift": bool(poison_shift)}


@dataclass
class FoldRun:
    run_id: str
    fold: int | None
    path: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    reused: bool = False  # a finished run of the same identity, not trained again


def runs_dir(store_path: str | Path) -> Path:
    """Default home of trained heads: ``<store>.runs/`` beside the store file."""
    return Path(str(store_path) + ".runs")


def poisonous_ids(fs) -> np.ndarray:
    """The store's official poisonous class ids."""
    return fs.poisonous_class_ids()


def taxonomy_indices(fs, class_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the index of its class's genus and family among the sorted genus and family
    names of the store's species table (``-1`` for an unknown class or a missing name), for
    the auxiliary taxonomy loss (``TrainConfig.taxonomy_weight``)."""
    table = fs.species_table()
    cid = np.asarray(table["class_id"].to_pylist(), dtype=np.int64)
    order = np.argsort(cid)
    out = []
    for level in ("genus", "family"):
        names = np.asarray([v or "" for v in table[level].to_pylist()], dtype=object)
        vocab = sorted({n for n in names if n})
        code = np.array([vocab.index(n) if n else -1 for n in names], dtype=np.int64)
        y = np.asarray(class_ids, dtype=np.int64)
        pos = np.minimum(np.searchsorted(cid[order], y), max(len(cid) - 1, 0))
        found = (len(cid) > 0) & (cid[order][pos] == y) & (y >= 0)
        out.append(np.where(found, code[order][pos], -1))
    return out[0], out[1]


def fold_rows(fs, space: str, fold: int, seed: int | None = None,
              calibration_slice: int | None = None) -> tuple[Rows, Rows, Rows, list[str]]:
    """(train, val, test) rows of ``fold`` (of the store's current split, or ``seed``'s)
    and the metadata column names; ``calibration_slice=one_in`` leaves the calibration
    slice out of train and val. Encodes the metadata of the fold's observations that
    have no features yet (calibration reads the same observations after training)."""
    parts = fs.fold_observations(fold, seed=seed, calibration_slice=calibration_slice)
    encode_missing(fs, np.concatenate([np.asarray(v, np.int64) for v in parts.values()]))
    train, names = load_rows(fs, space, parts["train"])
    val, _ = load_rows(fs, space, parts["val"])
    test, _ = load_rows(fs, space, parts["test"])
    if len(train) == 0:
        raise SporeprintError(f"fold {fold} has no labelled training images with {space!r} embeddings")
    return train, val, test, names


def _ensure_encoder(fs) -> None:
    try:
        fs.fetch_features(np.zeros(0, dtype=np.int64))
    except StoreError:  # no encoder yet
        log.info("fitting the metadata encoder on role=train observations")
        fs.fit_encoder()


def _ensure_splits(fs, seed: int) -> int:
    """The store's current split seed; makes splits with ``seed`` when there are none."""
    if not fs.has_splits():
        log.info("making validation splits with seed %d", seed)
        fs.make_splits(seed)
    return fs.split_seed()


def scores_of(clf, rows: Rows, poison: np.ndarray) -> dict[str, float]:
    """Official scores per observation (image probabilities averaged per observation)."""
    probs = clf.predict_proba(rows.embeddings, rows.metadata)
    _, mean = aggregate_by_observation(probs, rows.observation_ids)
    _, truth = first_per_observation(rows.observation_ids, rows.class_ids)
    return fungiclef_scores(truth, clf.classes_[mean.argmax(axis=1)], poison)


def fold_identity(space: str, head: str, head_params: dict | None, config: TrainConfig,
                  settings: dict, split_seed: int, fold: int, names: list[str],
                  train: Rows, val: Rows) -> str:
    """Digest of what decides a fold's head: space, head kind and settings, training
    settings (less the progress display), calibration settings, split seed, fold, metadata
    columns, and the training and validation rows (image and observation ids, labels,
    embeddings, metadata)."""
    train_settings = {k: v for k, v in asdict(config).items() if k != "progress"}
    described = {"space": space, "head": head, "head_params": head_params or {},
                 "train": train_settings, "calibration": settings,
                 "split_seed": int(split_seed), "fold": int(fold), "features": list(names)}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode())
    for rows in (train, val):
        for part in (rows.image_ids, rows.observation_ids, rows.class_ids, rows.embeddings,
                     rows.metadata):
            part = np.ascontiguousarray(part)
            digest.update(f"{part.dtype.str}{part.shape}".encode())
            digest.update(part.tobytes())
    return digest.hexdigest()[:32]


def finished_fold(fs, space: str, head: str, fold: int, identity: str) -> dict | None:
    """The newest recorded run of ``fold`` with this identity whose head folder is there."""
    for run_id in fs.runs_of("train", space, head, fold):
        run = fs.get_run(run_id)
        if run["config"].get("identity") == identity and run["path"] \
                and Path(run["path"]).is_dir():
            return run
    return None


def _reuse(run: dict, space: str, names: list[str], device: str) -> Classifier | None:
    """The saved head of a finished run; None (with a warning) when it cannot be loaded."""
    try:
        return Classifier.load(run["path"], space=space, feature_names=names, device=device)
    except HeadsError as exc:
        log.warning("run %s matches but its head cannot be loaded (%s); training the fold "
                    "again", run["run_id"], exc)
        return None


def finished_ensemble(fs, space: str, head: str, members: list[str],
                      settings: dict) -> dict | None:
    """The newest recorded ensemble of exactly these member runs and calibration settings."""
    for run_id in fs.runs_of("ensemble", space, head):
        run = fs.get_run(run_id)
        if run["config"].get("members") == members \
                and run["config"].get("calibration") == json.loads(json.dumps(settings)):
            return run
    return None


def train_folds(fs, space: str, head: str = "mlp", folds: list[int] = (1, 2),
                head_params: dict | None = None, config: TrainConfig | None = None,
                out_dir: str | Path | None = None, store_path: str | Path | None = None,
                split_seed: int = 0, calibration: str = DEFAULT_CALIBRATION,
                poison_shift: bool = DEFAULT_POISON_SHIFT, reuse: bool = False
                ) -> list[FoldRun]:
    """Train one head per fold, save it, record it in ``runs``; with two folds also
    score their ensemble on the held-out ``test`` part. Returns the recorded runs.

    ``reuse``: a fold with a finished run of the same :func:`fold_identity` is loaded, not
    trained (its ``FoldRun.reused`` is True), and an ensemble of exactly the resulting runs
    already recorded is returned as it is.

    ``calibration``: ``"oof"`` uses all of p1/p2 (calibrated per head), ``"holdout"`` keeps
    the calibration slice out of training and early stopping; ``poison_shift``: whether
    scoring applies the fitted poison prior shift. Both are recorded in each run's config
    (``config["calibration"]``) and read by ``sporeprint.scoring.calibration``."""
    config = config or TrainConfig()
    settings = calibration_settings(calibration, poison_shift)
    root = Path(out_dir) if out_dir else runs_dir(store_path or fs.path)
    _ensure_encoder(fs)
    split_seed = _ensure_splits(fs, split_seed)
    if settings["one_in"]:  # which slice was held out, so calibration can check it still is
        settings["slice_digest"] = slice_digest(
            fs.calibration_observations(seed=split_seed, one_in=settings["one_in"]))
    poison = poisonous_ids(fs)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    runs, members, test_rows = [], [], None
    for fold in folds:
        train, val, test, names = fold_rows(fs, space, fold, split_seed, settings["one_in"])
        test_rows = test
        identity = fold_identity(space, head, head_params, config, settings, split_seed, fold,
                                 names, train, val)
        done = finished_fold(fs, space, head, fold, identity) if reuse else None
        clf = _reuse(done, space, names, config.device) if done else None
        if clf is not None:
            log.info("fold %d: reusing run %s (same settings and data)", fold, done["run_id"])
            runs.append(FoldRun(done["run_id"], fold, Path(done["path"]),
                                dict(done["metrics"]), reused=True))
            members.append(clf)
            continue
        log.info("fold %d: %d training images, %d validation images", fold, len(train), len(val))
        clf = Classifier(head, head_params, config, space=space, feature_names=names)
        genus, family = taxonomy_indices(fs, train.class_ids) if config.taxonomy_weight \
            else (None, None)
        if genus is not None and (genus < 0).all() and (family < 0).all():
            raise SporeprintError(
                f"taxonomy_weight={config.taxonomy_weight} needs genus or family names in the "
                "store's species table and none of the training classes has one; ingest "
                "metadata with genus/family columns or leave the taxonomy loss off (0)")
        clf.fit(train.embeddings, train.class_ids, train.metadata,
                observation_ids=train.observation_ids, poisonous_classes=poison,
                val=EvalSet(val.embeddings, val.class_ids, val.metadata, val.observation_ids)
                if len(val) else None, genus=genus, family=family)
        run_id = f"{space}-{head}-fold{fold}-{stamp}-s{config.seed}"
        path = clf.save(root / run_id)
        metrics = {k: v for k, v in clf.metrics_.items() if isinstance(v, (int, float))}
        metrics.update(n_train_images=len(train), n_val_images=len(val),
                       n_classes=int((clf.classes_ >= 0).sum()),
                       history=clf.history_)  # per epoch: losses, validation scores
        fs.record_run(run_id, "train", space, head, fold,
                      {"head": clf.config_.to_dict(), "train": asdict(config),
                       "calibration": settings, "identity": identity}, metrics, str(path),
                      split_seed=split_seed)
        runs.append(FoldRun(run_id, fold, path, metrics))
        members.append(clf)
    if len(members) > 1 and test_rows is not None and len(test_rows):
        member_ids = [r.run_id for r in runs]
        done = finished_ensemble(fs, space, head, member_ids, settings) \
            if reuse and all(r.reused for r in runs) else None
        if done is not None:
            log.info("reusing ensemble run %s of the same fold runs", done["run_id"])
            runs.append(FoldRun(done["run_id"], None, Path(done["path"]), done["metrics"],
                                reused=True))
            return runs
        ens = Ensemble(members, combine="prob")
        metrics = {"test_" + k: v for k, v in scores_of(ens, test_rows, poison).items()}
        for run, clf in zip(runs, members, strict=True):
            run.metrics.update({"test_" + k: v for k, v in
                                scores_of(clf, test_rows, poison).items()})
        run_id = f"{space}-{head}-ensemble-{stamp}-s{config.seed}"
        fs.record_run(run_id, "ensemble", space, head, None,
                      {"members": member_ids, "combine": "prob",
                       "calibration": settings}, metrics, str(root),
                      split_seed=split_seed)
        runs.append(FoldRun(run_id, None, root, metrics))
    return runs

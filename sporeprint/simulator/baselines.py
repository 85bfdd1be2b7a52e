"""Top-1 of simple baselines and of the trained heads on a simulation's held-out test part.

The metadata features come from the app's own path: the train and val CSVs are
ingested into a DuckDB store, the encoder is fitted on role train, every
observation is encoded and the seeded splits are made there. Vectors and labels
are the simulation's (the same float32 values the embedding Parquet holds).
Scores are observation-level top-1 on the known-species observations of part
``test``; image scores are averaged per observation (1-NN: the best match wins).

>>> from sporeprint.simulator.simulate import SimConfig, simulate
>>> r = measure(simulate(SimConfig(scale="small", seed=0)), seed=0)   # doctest: +SKIP
>>> sorted(r)                                                          # doctest: +SKIP
['1nn', 'lda', 'lda_shrink', 'lr', 'lr_meta', 'mlp', 'mlp_meta', 'ncm']
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from sporeprint.errors import SporeprintError
from sporeprint.simulator.simulate import write_simulation
from store import FeatureStore

# Heads settings: the demo's (MLP hidden 1024, AdamW lr 1e-3, seesaw loss, batch 256, early
# stopping on the fold's own part).
HIDDEN = 1024
LR = 1e-3

ROWS = [("1nn", "1-NN (cosine)"), ("ncm", "nearest class mean"), ("lda", "LDA"),
        ("lda_shrink", "LDA, shrinkage"), ("lr", "logistic regression, embeddings"),
        ("lr_meta", "logistic regression, emb + metadata"),
        ("mlp", "2-fold MLP ensemble, embeddings"), ("mlp_meta", "2-fold MLP ensemble, emb + metadata")]


class Data:
    """Image rows of one selection: vectors, metadata features, labels, observation ids."""

    def __init__(self, x, meta, y, obs):
        self.x, self.meta, self.y, self.obs = x, meta, y, obs

    def __len__(self) -> int:
        return len(self.y)

    def take(self, mask: np.ndarray) -> Data:
        return Data(self.x[mask], self.meta[mask], self.y[mask], self.obs[mask])


def build(sim, root: Path, split_seed: int, extra_test: bool = False):
    """Store with the train and val metadata; returns ``(selections, feature names)`` where
    selections maps train/p1/p2/test to :class:`Data`. With ``extra_test`` the simulation's
    own test role (the 2024-style file, labels from the simulation) is ingested too and
    selected as ``extra``: more held-out observations of the same period, for quick
    exploration."""
    files = write_simulation(sim, root / "sim", images=False)
    roles = np.asarray(sim.image_roles)
    keep = np.ones(len(roles), bool) if extra_test else roles != "test"
    obs_all = sim.image_observation_ids[keep]
    x_all, y_all = sim.vectors[keep], sim.image_class_ids[keep]
    with FeatureStore(root / "fungi.duckdb") as fs:
        fs.ingest_metadata(files["train"], role="train")
        fs.ingest_metadata(files["val"], role="val")
        if extra_test:
            fs.ingest_metadata(files["test"], role="test")
        fs.fit_encoder()
        fs.encode_observations()
        fs.make_splits(split_seed)
        f1, f2 = fs.fold_observations(1), fs.fold_observations(2)
        ids, feats, names = fs.fetch_features(np.unique(obs_all))
    parts = {"p1": f1["val"], "p2": f2["val"], "test": f1["test"],
             "train": np.setdiff1d(f1["train"], f2["val"])}
    if extra_test:
        parts["extra"] = np.unique(sim.image_observation_ids[roles == "test"])
    order = np.argsort(ids)
    meta_all = feats[order][np.searchsorted(ids[order], obs_all)]
    out = {}
    for name, obs_ids in parts.items():
        m = np.isin(obs_all, obs_ids)
        out[name] = Data(x_all[m], meta_all[m], y_all[m], obs_all[m])
    return out, names


def cat(*parts: Data) -> Data:
    return Data(*(np.concatenate([getattr(p, a) for p in parts]) for a in ("x", "meta", "y", "obs")))


def observation_top1(scores: np.ndarray, classes: np.ndarray, test: Data,
                     reduce: str = "mean") -> float:
    """Top-1 per observation from image-level ``scores`` (n, C) over ``classes``."""
    uniq, inv = np.unique(test.obs, return_inverse=True)
    agg = np.full((len(uniq), scores.shape[1]), -np.inf if reduce == "max" else 0.0)
    if reduce == "max":
        np.maximum.at(agg, inv, scores)
    else:
        np.add.at(agg, inv, scores)
    truth = np.zeros(len(uniq), np.int64)
    truth[inv] = test.y
    return float(np.mean(classes[agg.argmax(1)] == truth))


def species_proba(model, x, meta) -> np.ndarray:
    """Species probabilities, whether ``predict_proba`` returns them alone or with the
    poison probability."""
    out = model.predict_proba(x, meta)
    return out[0] if isinstance(out, tuple) else out


def _sklearn_models() -> tuple[type, type]:
    """scikit-learn's LDA and logistic regression, which the runtime install leaves out."""
    try:
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise SporeprintError('the LDA and logistic-regression baselines need scikit-learn; '
                              'install it with pip install "sporeprint[bench]"') from None
    return LinearDiscriminantAnalysis, LogisticRegression


def baselines(train: Data, test: Data, lr_c: float, skip: set[str]) -> dict[str, float]:
    if {"lda", "lda_shrink", "lr", "lr_meta"} - skip:
        LinearDiscriminantAnalysis, LogisticRegression = _sklearn_models()

    classes, y = np.unique(train.y, return_inverse=True)
    res, t = {}, {}
    t0 = time.perf_counter()
    nn, nn_sim = np.empty(len(test), np.int64), np.empty(len(test), np.float32)
    for s in range(0, len(test), 1024):  # vectors are unit-norm: dot = cosine
        sims = test.x[s:s + 1024] @ train.x.T
        nn[s:s + 1024] = sims.argmax(1)
        nn_sim[s:s + 1024] = sims[np.arange(len(sims)), nn[s:s + 1024]]
    onehot = np.full((len(test), len(classes)), -np.inf, np.float32)
    onehot[np.arange(len(test)), y[nn]] = nn_sim  # the observation's best match wins
    res["1nn"] = observation_top1(onehot, classes, test, reduce="max")
    means = np.zeros((len(classes), train.x.shape[1]))
    np.add.at(means, y, train.x)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    res["ncm"] = observation_top1(test.x @ means.T, classes, test)
    t["1nn+ncm"] = time.perf_counter() - t0
    for key, kw in (("lda", {}), ("lda_shrink", {"solver": "lsqr", "shrinkage": "auto"})):
        if key in skip:
            continue
        t0 = time.perf_counter()
        lda = LinearDiscriminantAnalysis(**kw).fit(train.x, y)
        res[key] = observation_top1(lda.predict_proba(test.x), classes, test)
        t[key] = time.perf_counter() - t0
    for key, use_meta in (("lr", False), ("lr_meta", True)):
        if key in skip:
            continue
        t0 = time.perf_counter()
        # Unit vectors times sqrt(dim): coordinates of unit scale, like the 0/1 metadata.
        k = np.sqrt(train.x.shape[1])
        xtr = np.hstack([k * train.x, train.meta]) if use_meta else k * train.x
        xte = np.hstack([k * test.x, test.meta]) if use_meta else k * test.x
        lr = LogisticRegression(C=lr_c, max_iter=300).fit(xtr, y)
        res[key] = observation_top1(lr.predict_proba(xte), classes, test)
        t[key] = time.perf_counter() - t0
    return res, t


def ensemble(folds: list[tuple[Data, Data]], test: Data, use_meta: bool, epochs: int,
             seed: int, names: list[str]) -> float:
    from heads.classifier import Classifier, EvalSet
    from heads.train import TrainConfig

    members = []
    for tr, va in folds:
        clf = Classifier("mlp", {"hidden": HIDDEN},
                         TrainConfig(epochs=epochs, lr=LR, seed=seed, progress=False),
                         feature_names=names if use_meta else None)
        clf.fit(tr.x, tr.y, tr.meta if use_meta else None, observation_ids=tr.obs,
                val=EvalSet(va.x, va.y, va.meta if use_meta else None, va.obs))
        members.append(clf)
    classes = np.unique(np.concatenate([m.classes_ for m in members]))
    probs = np.zeros((len(test), len(classes)))
    for m in members:
        probs[:, np.searchsorted(classes, m.classes_)] += species_proba(
            m, test.x, test.meta if use_meta else None)
    return observation_top1(probs, classes, test)


def measure(sim, seed: int = 0, epochs: int = 12, lr_c: float = 1.0, skip=(),
            mlp: bool = True, timing: dict | None = None, extra_test: bool = False
            ) -> dict[str, float]:
    """Top-1 (fractions) of every baseline not in ``skip`` and, with ``mlp``, of the
    two-fold MLP ensemble with and without metadata. The baselines are fitted on role
    train + parts p1 and p2; fold k of the ensemble trains on role train + the other
    part and stops early on its own part (as ``sporeprint.training`` does)."""
    timing = {} if timing is None else timing
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        sel, names = build(sim, Path(tmp), seed, extra_test)
    timing["build"] = time.perf_counter() - t0
    labelled = cat(sel["train"], sel["p1"], sel["p2"])
    train_all = labelled.take(labelled.y >= 0)
    test = cat(sel["test"], sel["extra"]) if extra_test else sel["test"]
    test = test.take((test.y >= 0) & np.isin(test.y, train_all.y))
    res, t = baselines(train_all, test, lr_c, set(skip))
    timing.update(t)
    if mlp:
        folds = [(cat(sel["train"], sel["p2"]), sel["p1"]), (cat(sel["train"], sel["p1"]), sel["p2"])]
        for key, use_meta in (("mlp", False), ("mlp_meta", True)):
            t1 = time.perf_counter()
            res[key] = ensemble(folds, test, use_meta, epochs, seed, names)
            timing[key] = time.perf_counter() - t1
    timing["n_train_images"] = len(train_all)
    timing["n_test_observations"] = len(np.unique(test.obs))
    return res



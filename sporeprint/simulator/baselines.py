"""Top-1 of simple and strong baselines and of the trained heads on a simulation's
held-out observations.

The metadata features come from the app's own path: the train and val CSVs (and
the unlabelled 2024-style test file) are ingested into a DuckDB store, the encoder
is fitted on role train, every observation is encoded and the seeded splits are
made there. Vectors and labels are the simulation's (the same float32 values the
embedding Parquet holds; the test role's labels stay in memory). Scores are
observation-level top-1 on the known-species observations of the simulation's
independent test draw (or, on request, of part ``test`` of the splits); image
scores are averaged per observation (1-NN: the best match wins).

The strong baselines (:func:`strong_baselines`) are the bar a trained recipe has to
clear: logistic regression with C tuned on a validation part and the class prior
moved to the evaluation period's, on metadata alone, on embeddings alone, on both,
and the late fusion of the embeddings-only and metadata-only models.

>>> from sporeprint.simulator.simulate import SimConfig, simulate
>>> r = measure(simulate(SimConfig(scale="small", seed=0)), seed=0)   # doctest: +SKIP
>>> sorted(r)                                                          # doctest: +SKIP
['1nn', 'late_fusion', 'lda', 'lda_shrink', 'lr', 'lr_c', 'lr_meta', 'lr_meta_c', 'meta_lr',
 'mlp', 'mlp_meta', 'ncm']
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
        ("lr_c", "logistic regression, std. embeddings, C tuned"),
        ("meta_lr", "logistic regression, metadata alone"),
        ("late_fusion", "late fusion, embeddings LR x metadata LR"),
        ("lr_meta_c", "logistic regression, std. emb + metadata, C tuned"),
        ("mlp", "2-fold MLP ensemble, embeddings"), ("mlp_meta", "2-fold MLP ensemble, emb + metadata")]
# rows that see the image only (the difficulty ordering is measured on these)
EMBEDDING_ONLY = ("1nn", "ncm", "lda", "lda_shrink", "lr", "lr_c")


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


def observation_predictions(scores: np.ndarray, classes: np.ndarray, test: Data,
                            reduce: str = "mean") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sorted observation ids, true class, predicted class)`` from image-level ``scores``
    (n, C) over ``classes``, averaged (or, with ``reduce="max"``, maximised) per
    observation."""
    uniq, inv = np.unique(test.obs, return_inverse=True)
    agg = np.full((len(uniq), scores.shape[1]), -np.inf if reduce == "max" else 0.0)
    if reduce == "max":
        np.maximum.at(agg, inv, scores)
    else:
        np.add.at(agg, inv, scores)
    truth = np.zeros(len(uniq), np.int64)
    truth[inv] = test.y
    return uniq, truth, classes[agg.argmax(1)]


def observation_top1(scores: np.ndarray, classes: np.ndarray, test: Data,
                     reduce: str = "mean", preds: dict | None = None, key: str = "") -> float:
    """Top-1 per observation from image-level ``scores`` (n, C) over ``classes``; with
    ``preds`` the per-observation predictions are kept there under ``key``."""
    _, truth, pred = observation_predictions(scores, classes, test, reduce)
    if preds is not None:
        preds[key] = pred
    return float(np.mean(pred == truth))


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


def baselines(train: Data, test: Data, lr_c: float, skip: set[str],
              preds: dict | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """Top-1 of the training-free baselines not in ``skip`` and their seconds; with ``preds``
    each one's per-observation predictions (sorted observation ids) are kept there."""
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
    res["1nn"] = observation_top1(onehot, classes, test, "max", preds, "1nn")
    means = np.zeros((len(classes), train.x.shape[1]))
    np.add.at(means, y, train.x)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    res["ncm"] = observation_top1(test.x @ means.T, classes, test, "mean", preds, "ncm")
    t["1nn+ncm"] = time.perf_counter() - t0
    for key, kw in (("lda", {}), ("lda_shrink", {"solver": "lsqr", "shrinkage": "auto"})):
        if key in skip:
            continue
        t0 = time.perf_counter()
        lda = LinearDiscriminantAnalysis(**kw).fit(train.x, y)
        res[key] = observation_top1(lda.predict_proba(test.x), classes, test, "mean", preds, key)
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
        res[key] = observation_top1(lr.predict_proba(xte), classes, test, "mean", preds, key)
        t[key] = time.perf_counter() - t0
    return res, t


# -- strong baselines --------------------------------------------------------------------
# The bar a trained recipe has to clear: logistic regression with its regularisation tuned
# on a validation part and its class prior moved to the evaluation period's, on metadata
# alone, on embeddings alone, on both, and the late fusion of the two single-input models.
# logistic-regression C tried on the validation part (standardised inputs: small C; a
# choice at either end of the grid is flagged in the settings)
C_GRID = (0.003, 0.01, 0.03, 0.1)
FUSION_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)  # metadata weight tried on validation
PRIOR_PSEUDO = 0.5  # validation prior: pseudo-count of a training class absent from validation
PRIOR_CORRECTIONS = ("val", "em", "none")
STRONG = ("lr_c", "meta_lr", "late_fusion", "lr_meta_c")



def obs_mean(values: np.ndarray, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sorted unique observation ids, mean of values over each one's rows)``."""
    uniq, inv = np.unique(obs, return_inverse=True)
    out = np.zeros((len(uniq),) + values.shape[1:])
    np.add.at(out, inv, values)
    return uniq, out / np.bincount(inv, minlength=len(uniq)).reshape((-1,) + (1,) * (values.ndim - 1))


def obs_labels(d: Data) -> tuple[np.ndarray, np.ndarray]:
    """``(sorted unique observation ids, class id of each)``."""
    uniq, first = np.unique(d.obs, return_index=True)
    return uniq, d.y[first]


def class_prior(y: np.ndarray, classes: np.ndarray, pseudo: float = 0.0) -> np.ndarray:
    """Class frequencies of ``y`` over ``classes`` (labels outside them are ignored), each
    class with ``pseudo`` added."""
    pos = np.searchsorted(classes, y)
    ok = (pos < len(classes)) & (classes[np.minimum(pos, len(classes) - 1)] == y)
    n = np.bincount(pos[ok], minlength=len(classes)).astype(np.float64) + pseudo
    return n / n.sum()


def saerens_prior(probs: np.ndarray, fit_prior: np.ndarray, iters: int = 200,
                  tol: float = 1e-7) -> np.ndarray:
    """The class prior of the observations ``probs`` (n, C) by EM (Saerens, Latinne and
    Decaestecker 2002): reweight the posteriors by ``prior / fit_prior``, average them,
    repeat."""
    prior = fit_prior.copy()
    for _ in range(iters):
        w = probs * (prior / fit_prior)
        w /= np.maximum(w.sum(1, keepdims=True), 1e-300)
        new = w.mean(0)
        done = np.abs(new - prior).max() < tol
        prior = new
        if done:
            break
    return np.maximum(prior, 1e-12)


def logistic(x: np.ndarray, y: np.ndarray, c: float, start=None):
    """Standardised inputs, multinomial logistic regression (scikit-learn lbfgs) with
    inverse regularisation ``c``; ``start`` (a model fitted on the same classes) warm-starts
    it."""
    _, LogisticRegression = _sklearn_models()
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    lr = LogisticRegression(C=c, max_iter=200, warm_start=start is not None)
    if start is not None:
        lr.coef_, lr.intercept_ = start[1].coef_.copy(), start[1].intercept_.copy()
    lr.fit(scaler.transform(x), y)
    return scaler, lr


def log_proba(model, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """log P(class | x) over ``classes`` (columns of classes the model never saw: -inf)."""
    scaler, lr = model
    out = np.full((len(x), len(classes)), -np.inf)
    out[:, np.searchsorted(classes, lr.classes_)] = lr.predict_log_proba(scaler.transform(x))
    return out


def _obs_log_proba(model, rows: Data, use, classes) -> tuple[np.ndarray, np.ndarray]:
    """(observation ids, log of the mean image probability) of an image-row model."""
    ids, mean = obs_mean(np.exp(log_proba(model, use(rows), classes)), rows.obs)
    return ids, np.log(np.maximum(mean, 1e-300))


def _meta_obs(rows: Data) -> tuple[np.ndarray, np.ndarray]:
    """(observation ids, metadata row of each): the metadata is one row per observation."""
    uniq, first = np.unique(rows.obs, return_index=True)
    return uniq, rows.meta[first]


def _top1(log_scores: np.ndarray, classes: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(classes[log_scores.argmax(1)] == truth))


class _Fitted:
    """The models of one fit of the strong baselines (on one training set)."""

    def __init__(self, train: Data, c_img: dict, c_meta: float, starts=None):
        known = train.take(train.y >= 0)
        self.classes = np.unique(known.y)
        self.img_prior = np.log(class_prior(known.y, self.classes))
        ids, y_obs = obs_labels(known)
        self.obs_prior = np.log(class_prior(y_obs, self.classes))
        starts = starts or {}
        self.models = {}
        for key, use in (("emb", _emb), ("both", _both)):
            if key in c_img:
                self.models[key] = logistic(use(known), known.y, c_img[key], starts.get(key))
        _, m = _meta_obs(known)
        self.models["meta"] = logistic(m, y_obs, c_meta, starts.get("meta"))

    def scores(self, rows: Data) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per observation of ``rows``: (ids, log-likelihood ratio log P(y|input) - log
        P_fit(y)) of each model; adding a log target prior gives prior-corrected scores."""
        out = {}
        for key, use in (("emb", _emb), ("both", _both)):
            if key in self.models:
                ids, lp = _obs_log_proba(self.models[key], rows, use, self.classes)
                out[key] = (ids, lp - self.img_prior)
        ids, m = _meta_obs(rows)
        out["meta"] = (ids, log_proba(self.models["meta"], m, self.classes) - self.obs_prior)
        return out


def _emb(d: Data) -> np.ndarray:
    return d.x


def _both(d: Data) -> np.ndarray:
    return np.hstack([d.x, d.meta])


def target_log_prior(kind: str, classes: np.ndarray, prior_from: Data | None,
                     scores: dict, fit: _Fitted) -> np.ndarray:
    """log of the evaluation period's class prior: ``val`` the (smoothed) class
    frequencies of the validation observations ``prior_from``; ``em`` re-estimated on the
    evaluated observations themselves (Saerens EM on the fused posteriors); ``none`` the
    fitting set's observation prior (no correction)."""
    if kind == "val":
        return np.log(class_prior(obs_labels(prior_from)[1], classes, PRIOR_PSEUDO))
    if kind == "none":
        return fit.obs_prior
    if kind == "em":
        ratio = scores["meta"][1] + (scores["emb"][1] if "emb" in scores else 0.0)
        post = np.exp(ratio + fit.obs_prior - (ratio + fit.obs_prior).max(1, keepdims=True))
        post /= post.sum(1, keepdims=True)
        return np.log(saerens_prior(post, np.exp(fit.obs_prior)))
    raise SporeprintError(f"prior correction {kind!r} is not one of {', '.join(PRIOR_CORRECTIONS)}")


def strong_baselines(train: Data, val: Data, test: Data, *, use_meta: bool = True,
                     refit_on: Data | None = None, prior_from: Data | None = None,
                     prior: str = "val", c_grid=C_GRID, weights=FUSION_WEIGHTS
                     ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
    """Predictions of the strong baselines on ``test``: ``{key: (sorted observation ids,
    predicted class)}`` and the settings chosen (``{"lr_c": C, ...}``).

    - ``lr_c``: logistic regression on standardised embeddings (image rows; observation
      = mean image probability), C chosen from ``c_grid`` by top-1 on ``val``;
    - ``meta_lr``: logistic regression on the standardised encoded metadata alone, one row
      per observation, C chosen the same way;
    - ``late_fusion``: ``log P(y|image) + w (log P(y|metadata) - log P(y))`` with the weight
      ``w`` chosen from ``weights`` on ``val`` (``w = 1`` is the product of the two
      posteriors divided by the prior, exact when metadata and image are independent given
      the species);
    - ``lr_meta_c``: logistic regression on standardised embeddings + metadata, C tuned.

    Every model is fitted on ``train`` (labelled rows) and its training class prior is
    replaced by the evaluation period's (``prior``: ``val``, the validation observations'
    class frequencies with a pseudo-count of 0.5, from ``prior_from`` (default ``val``);
    ``em``: re-estimated on the evaluated observations by Saerens EM; ``none``). With
    ``refit_on`` the chosen settings are refitted on that set before scoring ``test``.
    ``use_meta=False`` gives ``lr_c`` alone (embeddings only)."""
    if prior not in PRIOR_CORRECTIONS:
        raise SporeprintError(f"prior correction {prior!r} is not one of "
                              f"{', '.join(PRIOR_CORRECTIONS)}; pick one")
    prior_from = val if prior_from is None else prior_from
    grid = sorted(c_grid)
    val_known = val.take(val.y >= 0)
    _, val_truth = obs_labels(val_known)
    chosen, best, starts, fits = {}, {}, {}, {}
    img_keys = ("emb", "both") if use_meta else ("emb",)
    best_scores = {}
    for c in grid:  # warm-started from the previous C of the grid
        fit = fits[c] = _Fitted(train, dict.fromkeys(img_keys, c), c, starts)
        starts = fit.models
        sc = fit.scores(val_known)
        lp = target_log_prior(prior, fit.classes, prior_from, sc, fit)
        for key in (*img_keys, "meta"):
            acc = _top1(sc[key][1] + lp, fit.classes, val_truth)
            if acc > best.get(key, -1.0):
                best[key], chosen[key], best_scores[key] = acc, c, (sc[key][1], lp)
    if use_meta:
        (img, lp), (meta, _) = best_scores["emb"], best_scores["meta"]
        w_acc = {w: _top1(img + w * meta + lp, fit.classes, val_truth) for w in weights}
        # ties: the weight nearest 1 (the independence product)
        chosen["w"] = max(w_acc, key=lambda w: (w_acc[w], -abs(w - 1.0)))
        best["late_fusion"] = w_acc[chosen["w"]]
    if refit_on is not None:
        final = _Fitted(refit_on, {k: chosen[k] for k in img_keys}, chosen["meta"])
        sc = final.scores(test)
    else:  # each model at its chosen C, all fitted on ``train``
        final = fits[grid[0]]
        sc = {k: fits[chosen[k]].scores(test)[k] for k in (*img_keys, "meta")}
    lp = target_log_prior(prior, final.classes, prior_from, sc, final)
    out = {"lr_c": (sc["emb"][0], final.classes[(sc["emb"][1] + lp).argmax(1)])}
    if use_meta:
        out["meta_lr"] = (sc["meta"][0], final.classes[(sc["meta"][1] + lp).argmax(1)])
        fused = sc["emb"][1] + chosen["w"] * sc["meta"][1] + lp
        out["late_fusion"] = (sc["emb"][0], final.classes[fused.argmax(1)])
        out["lr_meta_c"] = (sc["both"][0], final.classes[(sc["both"][1] + lp).argmax(1)])
    settings = {"C embeddings": chosen["emb"], "C metadata": chosen["meta"],
                "val top-1": {k: round(v, 4) for k, v in best.items()}, "prior": prior}
    if use_meta:
        settings.update({"C emb + metadata": chosen["both"], "fusion weight": chosen["w"]})
    edge = sorted({k for k in (*img_keys, "meta") if len(grid) > 1
                   and chosen[k] in (grid[0], grid[-1])})
    if edge:
        settings["C at the end of the grid"] = edge
    return out, settings


def ensemble(folds: list[tuple[Data, Data]], test: Data, use_meta: bool, epochs: int,
             seed: int, names: list[str], preds: dict | None = None, key: str = "",
             patience: int | None = None, last_epoch: bool = False) -> float:
    from heads.classifier import Classifier, EvalSet
    from heads.train import TrainConfig

    members = []
    for tr, va in folds:
        clf = Classifier("mlp", {"hidden": HIDDEN},
                         TrainConfig(epochs=epochs, lr=LR, seed=seed, progress=False,
                                     **({} if patience is None else {"patience": patience})),
                         feature_names=names if use_meta else None)
        clf.fit(tr.x, tr.y, tr.meta if use_meta else None, observation_ids=tr.obs,
                val=None if last_epoch else EvalSet(va.x, va.y, va.meta if use_meta else None,
                                                    va.obs))
        members.append(clf)
    classes = np.unique(np.concatenate([m.classes_ for m in members]))
    probs = np.zeros((len(test), len(classes)))
    for m in members:
        probs[:, np.searchsorted(classes, m.classes_)] += species_proba(
            m, test.x, test.meta if use_meta else None)
    return observation_top1(probs, classes, test, "mean", preds, key)


EVALUATIONS = ("role", "part", "both")


def measure(sim, seed: int = 0, epochs: int = 12, lr_c: float = 1.0, skip=(),
            mlp: bool = True, timing: dict | None = None, extra_test: bool = False,
            evaluate: str | None = None, strong: bool = True, prior: str = "val",
            c_grid=C_GRID, preds: dict | None = None,
            patience: int | None = None, last_epoch: bool = False) -> dict[str, float]:
    """Top-1 (fractions) of every baseline not in ``skip`` and, with ``mlp``, of the
    two-fold MLP ensemble with and without metadata.

    ``evaluate``: which held-out observations are scored (known species only):
    ``"role"`` (the default) the simulation's independent test draw, the 2024-style test
    role (ingested without labels; its labels stay in memory), ``"part"`` part ``test`` of
    the store's splits, ``"both"`` the two together (``extra_test=True`` is ``"both"``).

    The training-free baselines are fitted on role train + parts p1 and p2; fold k of the
    ensemble trains on role train + the other part and stops early on its own part (as
    ``sporeprint.training`` does). With ``strong`` the strong baselines
    (:func:`strong_baselines`) are tuned with fold 1's data (fitted on role train + p2,
    chosen on p1), refitted on role train + p1 + p2 and prior-corrected to the class
    frequencies of p1 + p2 (``prior``). ``preds`` receives ``truth`` and each row's
    per-observation predictions (sorted observation ids) for paired intervals."""
    evaluate = evaluate or ("both" if extra_test else "role")
    if evaluate not in EVALUATIONS:
        raise SporeprintError(f"evaluate={evaluate!r} is not one of {', '.join(EVALUATIONS)}")
    timing = {} if timing is None else timing
    preds = {} if preds is None else preds
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        sel, names = build(sim, Path(tmp), seed, extra_test=evaluate != "part")
    timing["build"] = time.perf_counter() - t0
    labelled = cat(sel["train"], sel["p1"], sel["p2"])
    train_all = labelled.take(labelled.y >= 0)
    test = {"role": lambda: sel["extra"], "part": lambda: sel["test"],
            "both": lambda: cat(sel["test"], sel["extra"])}[evaluate]()
    test = test.take((test.y >= 0) & np.isin(test.y, train_all.y))
    res, t = baselines(train_all, test, lr_c, set(skip), preds)
    timing.update(t)
    if strong and not set(STRONG) <= set(skip):
        t1 = time.perf_counter()
        out, settings = strong_baselines(cat(sel["train"], sel["p2"]), sel["p1"], test,
                                         refit_on=labelled, prior_from=cat(sel["p1"], sel["p2"]),
                                         prior=prior, c_grid=c_grid)
        ids = np.unique(test.obs)
        _, truth = obs_labels(test)
        for key, (got_ids, pred) in out.items():
            if key not in skip:
                assert np.array_equal(got_ids, ids)
                preds[key], res[key] = pred, float(np.mean(pred == truth))
        timing["strong"] = time.perf_counter() - t1
        timing["strong_settings"] = settings
    if mlp:
        folds = [(cat(sel["train"], sel["p2"]), sel["p1"]), (cat(sel["train"], sel["p1"]), sel["p2"])]
        for key, use_meta in (("mlp", False), ("mlp_meta", True)):
            t1 = time.perf_counter()
            res[key] = ensemble(folds, test, use_meta, epochs, seed, names, preds, key,
                                patience, last_epoch)
            timing[key] = time.perf_counter() - t1
    preds["truth"] = obs_labels(test)[1]
    timing["n_train_images"] = len(train_all)
    timing["n_test_observations"] = len(np.unique(test.obs))
    return res

"""Heads: modules, losses, training loop, classifier, ensembles, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from heads.classifier import Classifier, Ensemble, EvalSet
from heads.errors import HeadsError, NotFittedError
from heads.inference import aggregate_by_observation
from heads.losses import FocalLoss, HeadLoss, SeesawLoss, inverse_frequency_weights
from heads.modules import FusionConfig, MLPConfig, build_head, make_config, metadata_groups
from heads.train import HeadData, TrainConfig, sample_weights, train_head

FEATURES = ["month_sin", "month_cos", "geo_2", "habitat_bog"]
CLASS_IDS = np.array([3, 7, 11, 40, 41])
POISONOUS = [11]


def make_data(n: int, seed: int, d: int = 16, noise: float = 1.0):
    """Class-clustered embeddings; metadata carries a weaker class signal.
    Labels are class ids, two images per observation."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).normal(scale=2.0, size=(len(CLASS_IDS), d))
    meta_centres = np.random.default_rng(321).normal(size=(len(CLASS_IDS), len(FEATURES)))
    # unbalanced: class 0 is the majority
    k = rng.choice(len(CLASS_IDS), size=n // 2, p=[0.4, 0.2, 0.15, 0.15, 0.1]).repeat(2)
    X = (centres[k] + rng.normal(scale=noise, size=(n, d))).astype(np.float32)
    M = (meta_centres[k] + rng.normal(scale=0.5, size=(n, len(FEATURES)))).astype(np.float32)
    obs = (np.arange(n) // 2 + 1000 * seed).astype(np.int64)
    return X, CLASS_IDS[k], M, obs


TC = TrainConfig(epochs=4, batch_size=32, lr=3e-3, progress=False, patience=0)
HEADS = [
    ("linear", {}),
    ("mlp", {"hidden": 32}),
    ("mlp", {"hidden": 32, "norm": "batch", "depth": 2, "unknown_output": True}),
    ("fusion", {"width": 16, "heads": 2}),
]


@pytest.fixture(scope="module")
def data():
    return make_data(200, seed=1), make_data(100, seed=2)


@pytest.mark.parametrize("head,params", HEADS, ids=[h + str(i) for i, (h, _) in enumerate(HEADS)])
def test_conformance(head, params, data, tmp_path):
    (X, y, M, obs), (Xv, yv, Mv, obsv) = data
    clf = Classifier(head, params, TC, space="tiny", feature_names=FEATURES)
    with pytest.raises(NotFittedError, match="call fit first"):
        clf.predict_proba(X, M)
    if params.get("unknown_output"):
        y = y.copy()
        y[:20] = -1  # unknowns train the explicit unknown column
    assert clf.fit(X, y, M, observation_ids=obs, poisonous_classes=POISONOUS,
                   val=EvalSet(Xv, yv, Mv, obsv)) is clf
    n_cols = len(CLASS_IDS) + bool(params.get("unknown_output"))
    probs, poison = clf.predict_proba(Xv, Mv), clf.predict_poison_proba(Xv, Mv)
    assert probs.shape == (len(Xv), n_cols) and poison.shape == (len(Xv),)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert ((poison >= 0) & (poison <= 1)).all()
    assert clf.classes_[: len(CLASS_IDS)].tolist() == CLASS_IDS.tolist()
    if params.get("unknown_output"):
        assert clf.classes_[-1] == -1
    assert clf.poisonous_.tolist() == [c in POISONOUS for c in clf.classes_]
    assert set(clf.predict(Xv, Mv)) <= set(clf.classes_.tolist())
    assert {"accuracy", "macro_f1", "track3", "top3", "loss"} <= set(clf.metrics_)

    clf.save(tmp_path / "h")
    assert sorted(p.name for p in (tmp_path / "h").iterdir()) == ["config.json", "model.safetensors"]
    back = Classifier.load(tmp_path / "h", space="tiny", dim=X.shape[1], feature_names=FEATURES)
    p2, q2 = back.predict_proba(Xv, Mv), back.predict_poison_proba(Xv, Mv)
    np.testing.assert_array_equal(p2, probs)
    np.testing.assert_array_equal(q2, poison)
    assert back.classes_.tolist() == clf.classes_.tolist()
    assert back.poisonous_.tolist() == clf.poisonous_.tolist()
    assert back.config_ == clf.config_

    model = build_head(clf.config_)
    feats = model(torch.zeros(3, X.shape[1]), torch.zeros(3, len(FEATURES)), pre_logits=True)
    assert feats.ndim == 2 and feats.shape[0] == 3


def test_load_refuses_mismatch(data, tmp_path):
    (X, y, M, obs), _ = data
    clf = Classifier("linear", None, TC, space="dinov2_l", feature_names=FEATURES).fit(X, y, M)
    clf.save(tmp_path / "h")
    with pytest.raises(HeadsError, match="'dinov2_l'.*'dinov2_s'"):
        Classifier.load(tmp_path / "h", space="dinov2_s")
    with pytest.raises(HeadsError, match="16-d.*384-d"):
        Classifier.load(tmp_path / "h", dim=384)
    with pytest.raises(HeadsError, match="metadata columns"):
        Classifier.load(tmp_path / "h", feature_names=FEATURES[:3])
    with pytest.raises(HeadsError, match="not a saved head"):
        Classifier.load(tmp_path / "missing")
    with pytest.raises(HeadsError, match=r"\(n, 16\)"):
        clf.predict_proba(X[:, :8], M)
    # nothing pickled: the config is plain JSON
    assert json.loads((tmp_path / "h" / "config.json").read_text())["space"] == "dinov2_l"


def test_training_beats_majority_baseline():
    X, y, M, obs = make_data(600, seed=3, noise=2.0)
    Xv, yv, Mv, obsv = make_data(300, seed=4, noise=2.0)
    clf = Classifier("mlp", {"hidden": 64}, TrainConfig(epochs=8, batch_size=64, lr=3e-3,
                                                         loss="ce", progress=False))
    clf.fit(X, y, M, observation_ids=obs, val=EvalSet(Xv, yv, Mv, obsv))
    majority = np.mean(yv == np.bincount(np.searchsorted(CLASS_IDS, y)).argmax().choose(CLASS_IDS))
    acc = np.mean(clf.predict(Xv, Mv) == yv)
    assert majority < 0.5
    assert acc > majority + 0.3
    assert clf.metrics_["accuracy"] > majority + 0.3  # per-observation metric agrees


def test_same_seed_same_weights_other_seed_differs(data):
    (X, y, M, obs), (Xv, yv, Mv, obsv) = data
    idx = np.searchsorted(CLASS_IDS, y)
    train = HeadData(X, idx, M, obs)
    val = HeadData(Xv, np.searchsorted(CLASS_IDS, yv), Mv, obsv)
    head = FusionConfig(embed_dim=16, num_classes=5, meta_dim=4, width=16, heads=2,
                        groups=metadata_groups(FEATURES))
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-3, sampler="val_matched",
                      loss="seesaw", progress=False)
    runs = [train_head(head, train, val, cfg) for _ in range(2)]
    other = train_head(head, train, val, TrainConfig(**{**cfg.__dict__, "seed": 1}))
    a, b, c = (r.model.state_dict() for r in (*runs, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    drop_time = [[{k: v for k, v in h.items() if k != "train_seconds"} for h in r.history]
                 for r in runs]
    np.testing.assert_equal(drop_time[0], drop_time[1])  # NaN-aware


def test_early_stopping_and_best_checkpoints(data):
    (X, y, M, obs), (Xv, yv, Mv, obsv) = data
    train = HeadData(X, np.searchsorted(CLASS_IDS, y), M)
    val = HeadData(Xv, np.searchsorted(CLASS_IDS, yv), Mv, obsv)
    head = MLPConfig(embed_dim=16, num_classes=5, meta_dim=4, hidden=16, dropout=0.0)
    # lr=0: the validation loss never improves after epoch 1, so patience ends the run
    res = train_head(head, train, val, TrainConfig(epochs=20, lr=0.0, patience=3, progress=False,
                                                   scheduler="none"))
    assert len(res.history) == 4 and res.best_epoch == 1
    res = train_head(head, train, val, TrainConfig(epochs=5, lr=3e-3, patience=0, keep=2,
                                                   monitor="accuracy", progress=False))
    assert len(res.checkpoints) == 2
    assert res.checkpoints[0].score >= res.checkpoints[1].score
    assert res.best_metrics["accuracy"] == max(h["accuracy"] for h in res.history)
    best = res.checkpoints[0].state
    assert all(torch.equal(best[k], v) for k, v in res.model.state_dict().items())


def seesaw_direct(logits, target, counts, p, q, eps):
    """The seesaw formula one element at a time, in float64."""
    z = logits.double().numpy()
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1)
    total = 0.0
    for b in range(len(z)):
        i = int(target[b])
        sigma = np.exp(z[b] - z[b].max())
        sigma /= sigma.sum()
        denom = np.exp(z[b, i])
        for j in range(z.shape[1]):
            if j == i:
                continue
            m = (n[j] / n[i]) ** p if n[j] < n[i] else 1.0
            r = sigma[j] / max(sigma[i], eps)
            c = r ** q if r > 1 else 1.0
            denom += m * c * np.exp(z[b, j])
        total += -(z[b, i] - np.log(denom))
    return total / len(z)


def test_seesaw_matches_formula_and_reduces_to_ce():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 6, generator=g) * 3
    target = torch.randint(0, 6, (32,), generator=g)
    counts = [500, 200, 50, 10, 3, 1]
    got = SeesawLoss(6, counts=counts)(logits, target)
    assert got.item() == pytest.approx(seesaw_direct(logits, target, counts, 0.8, 2.0, 1e-2), rel=1e-5)
    got = SeesawLoss(6, p=0.5, q=1.0, eps=0.1, counts=counts)(logits, target)
    assert got.item() == pytest.approx(seesaw_direct(logits, target, counts, 0.5, 1.0, 0.1), rel=1e-5)
    equal = SeesawLoss(6, q=0.0, counts=[7] * 6)(logits, target)
    assert equal.item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-6)
    # accumulated counts: mitigation changes the loss once counts differ
    acc = SeesawLoss(6)
    acc(logits, target)
    assert acc.counts.tolist() == torch.bincount(target, minlength=6).double().tolist()
    acc.eval()
    acc(logits, target)  # evaluation does not count
    assert acc.counts.sum().item() == 32


def test_other_losses():
    w = inverse_frequency_weights([100, 10, 0, 1])
    assert w[3] > w[1] > w[0] > 0 and w[2] == 0
    logits, target = torch.randn(10, 4), torch.randint(0, 4, (10,))
    assert FocalLoss(gamma=0.0)(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target).item(), rel=1e-6)
    assert FocalLoss(gamma=2.0)(logits, target) < F.cross_entropy(logits, target)

    # the "mass" poison term is a BCE on the softmax mass of the poisonous classes
    from heads.modules import HeadOutput
    species = torch.randn(10, 4, requires_grad=True)
    out = HeadOutput(species, torch.zeros(10))
    poisonous = np.array([False, True, False, True])
    y_p = (torch.arange(10) % 2).float()
    loss = HeadLoss(torch.nn.CrossEntropyLoss(), poisonous, alpha=0.5, poison_mode="mass")
    got = loss(out, target, y_p)
    mass = species.softmax(-1)[:, [1, 3]].sum(-1)
    want = F.cross_entropy(species, target) + 0.5 * F.binary_cross_entropy(mass, y_p)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    got.backward()
    assert torch.isfinite(species.grad).all()
    none = HeadLoss(torch.nn.CrossEntropyLoss(), np.zeros(4, bool), poison_mode="mass")
    assert torch.isfinite(none(out, target, torch.zeros(10)))


def test_sample_weights():
    train = np.array([0, 0, 0, 0, 1, 1, 2])
    val = np.array([0, 1, 1, 1, -1])
    w = sample_weights(train, 3, "val_matched", val, val_prior=0.0)
    np.testing.assert_allclose(w, [1 / 4] * 4 + [3 / 2] * 2 + [0.0])
    w = sample_weights(train, 3, "balanced")
    np.testing.assert_allclose(np.bincount(train, weights=w), [1, 1, 1])
    assert sample_weights(train, 3, "shuffle") is None
    with pytest.raises(HeadsError, match="validation"):
        sample_weights(train, 3, "val_matched", None)


def test_aggregate_by_observation():
    rng = np.random.default_rng(0)
    p = rng.random((9, 3)).astype(np.float32)
    obs = np.array([5, 2, 5, 9, 2, 2, 5, 1, 9])
    ids, mean = aggregate_by_observation(p, obs)
    assert ids.tolist() == [5, 2, 9, 1]
    for i, o in enumerate(ids):
        np.testing.assert_allclose(mean[i], p[obs == o].mean(axis=0), rtol=1e-6)
    with pytest.raises(HeadsError, match="one observation id per image"):
        aggregate_by_observation(p, obs[:3])


def test_ensemble(data):
    (X, y, M, obs), (Xv, yv, Mv, obsv) = data
    a = Classifier("linear", None, TC, space="s").fit(X, y, M)
    keep = y != 41
    b = Classifier("linear", None, TrainConfig(**{**TC.__dict__, "seed": 5}), space="s").fit(
        X[keep], y[keep], M[keep])
    ens = Ensemble([a, b])
    assert ens.classes_.tolist() == CLASS_IDS.tolist()
    probs, poison = ens.predict_proba(Xv, Mv), ens.predict_poison_proba(Xv, Mv)
    pa, qa = a.predict_proba(Xv, Mv), a.predict_poison_proba(Xv, Mv)
    pb, qb = b.predict_proba(Xv, Mv), b.predict_poison_proba(Xv, Mv)
    np.testing.assert_allclose(probs[:, :4], (pa[:, :4] + pb) / 2, rtol=1e-5)
    np.testing.assert_allclose(probs[:, 4], pa[:, 4] / 2, rtol=1e-5)
    np.testing.assert_allclose(poison, (qa + qb) / 2, rtol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    with pytest.raises(HeadsError, match="combine='prob'"):
        Ensemble([a, b], combine="logit")
    same = Ensemble([a, a], combine="logit")
    np.testing.assert_allclose(same.predict_proba(Xv, Mv), pa, rtol=1e-5)
    np.testing.assert_allclose(same.predict_poison_proba(Xv, Mv), qa, rtol=1e-5)
    c = Classifier("linear", None, TC, space="other").fit(X, y, M)
    with pytest.raises(HeadsError, match="space"):
        Ensemble([a, c])


def test_sklearn_clone_gives_an_unfitted_copy_that_fits(data):
    from sklearn.base import clone

    (X, y, M, obs), (Xv, yv, Mv, obsv) = data
    params = {"hidden": 16}
    clf = Classifier("mlp", params, TC, space="tiny", feature_names=FEATURES).fit(X, y, M)
    copy = clone(clf)
    assert copy.get_params() == clf.get_params()
    assert copy.head_params is not params and not hasattr(copy, "model_")
    with pytest.raises(NotFittedError):
        copy.predict_proba(Xv, Mv)
    copy.fit(X, y, M)
    # same settings and seed: the clone learns the same weights
    np.testing.assert_array_equal(copy.predict_proba(Xv, Mv), clf.predict_proba(Xv, Mv))
    assert copy.set_params(head="linear", space="other") is copy
    assert copy.get_params()["head"] == "linear" and copy.space == "other"
    with pytest.raises(HeadsError, match="no parameter 'hiden'"):
        copy.set_params(hiden=3)


def test_bad_input_errors(data):
    (X, y, M, obs), _ = data
    with pytest.raises(HeadsError, match="rows"):
        HeadData(X, y[:-1])
    bad = M.copy()
    bad[0, 0] = np.nan
    with pytest.raises(HeadsError, match="NaN"):
        HeadData(X, np.zeros(len(X), int), bad)
    with pytest.raises(HeadsError, match="loss='nope'"):
        Classifier("mlp", {"hidden": 8}, TrainConfig(loss="nope")).fit(X, y, M)
    with pytest.raises(HeadsError, match="unknown head"):
        Classifier("resnet").fit(X, y, M)
    with pytest.raises(HeadsError, match="all -1"):
        Classifier("linear").fit(X, np.full(len(X), -1), M)
    with pytest.raises(HeadsError, match="divisible"):
        build_head(make_config("fusion", embed_dim=10, num_classes=2, heads=3))


def test_metadata_groups_drive_fusion_tokens():
    groups = metadata_groups(["month_sin", "day_cos", "geo_3", "substrate_wood",
                              "metasubstrate_soil", "habitat_bog", "other"])
    assert groups == {"date": [0, 1], "place": [2], "substrate": [3, 4],
                      "habitat": [5], "other": [6]}
    store_names = ["substrate=wood", "meta_substrate=soil", "habitat=bog", "month_sin",
                   "day_missing", "geohash_2", "geohash_missing"]
    assert metadata_groups(store_names) == {"date": [3, 4], "place": [5, 6],
                                            "substrate": [0, 1], "habitat": [2]}
    torch.manual_seed(0)
    head = build_head(FusionConfig(embed_dim=8, num_classes=3, meta_dim=7, width=8, heads=2,
                                   groups=groups, dropout=0.0)).eval()
    x, m = torch.randn(2, 8), torch.randn(2, 7)
    base = head(x, m).species
    m2 = m.clone()
    m2[:, 5] += 1.0  # the habitat token changes the image token's output
    assert not torch.allclose(base, head(x, m2).species)
    with pytest.raises(HeadsError, match="7 columns"):
        head(x, m[:, :3])


@pytest.mark.parametrize("loss,mode,sched", [("focal", "mass", "plateau"),
                                             ("weighted_ce", "logit", "none")])
def test_other_training_paths(loss, mode, sched, data):
    (X, y, M, obs), (Xv, yv, Mv, obsv) = data
    genus = np.searchsorted(CLASS_IDS, y) // 2  # a made-up taxonomy level
    cfg = TrainConfig(epochs=2, batch_size=64, lr=1e-3, loss=loss, poison_mode=mode,
                      scheduler=sched, taxonomy_weight=0.5, sampler="balanced", progress=False)
    clf = Classifier("mlp", {"hidden": 16}, cfg).fit(X, y, M, poisonous_classes=POISONOUS,
                                                     genus=genus, val=(Xv, yv, Mv, obsv))
    assert clf.config_.num_genus == genus.max() + 1
    out = clf.model_(torch.as_tensor(Xv[:3]), torch.as_tensor(Mv[:3]))
    assert out.genus.shape == (3, genus.max() + 1) and out.family is None
    assert all(np.isfinite(h["train_loss"]) for h in clf.history_)

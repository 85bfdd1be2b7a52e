"""retrieval: VectorIndex (all kinds), filters, persistence, errors, OpenSetDetector."""

import json

import numpy as np
import pytest

from retrieval import (
    InvalidVectorsError,
    NotFittedError,
    OpenSetDetector,
    RetrievalError,
    VectorIndex,
    id_checksum,
)


def clustered(n, d, n_genera=30, species_per=6, noise=1.3, seed=0):
    """Seeded two-level Gaussian clusters (genus -> species -> image), L2-normalised."""
    rng = np.random.default_rng(seed)
    genera = rng.normal(size=(n_genera, d))
    species = (genera[:, None, :] + 0.6 * rng.normal(size=(n_genera, species_per, d))).reshape(-1, d)
    labels = rng.integers(0, len(species), n)
    x = species[labels] + noise * rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


def brute(q, base, ids, k, allowed=None):
    scores = q @ base.T
    if allowed is not None:
        scores = np.where(np.isin(ids, allowed)[None, :], scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    D = np.take_along_axis(scores, order, 1)
    return D, np.where(np.isneginf(D), -1, ids[order])


def recall_at(found, truth):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True)])


@pytest.fixture(scope="module")
def data():
    x, _ = clustered(6100, 32)
    ids = np.arange(6000, dtype=np.int64) * 7 + 1000  # store ids, not row numbers
    return x[:6000], ids, x[6000:]


_BUILT = {}


def built(kind, data, **params):
    """One index per kind (and parameters) for the read-only tests (building ivf_pq
    trains a quantizer)."""
    key = (kind, tuple(sorted(params.items())))
    if key not in _BUILT:
        base, ids, _ = data
        _BUILT[key] = VectorIndex(32, kind, **params)
        _BUILT[key].add(ids, base)
    return _BUILT[key]


# every kind, and ivf_pq keeping only its codes (store ids as FAISS labels, decoded vectors)
KIND_CASES = [("exact", {}), ("hnsw", {}), ("ivf_flat", {}), ("ivf_pq", {}),
              ("ivf_pq", {"refine_factor": 0})]
REMOVABLE = {"exact", "ivf_flat", "ivf_pq_codes"}


@pytest.mark.parametrize("kind,params", KIND_CASES,
                         ids=["exact", "hnsw", "ivf_flat", "ivf_pq", "ivf_pq_codes"])
def test_every_kind_keeps_the_index_contract(tmp_path, data, monkeypatch, kind, params):
    """One contract for every kind: store ids back with the scores of their stored
    vectors, sorted; exact equals brute force and approximate kinds reach recall 0.95,
    filtered or not; a filter is respected on both filter paths; a save/load round trip
    answers identically; removal works or is refused in one line."""
    import retrieval.plan as rp

    base, ids, q = data
    name = "ivf_pq_codes" if params else kind
    index = built(kind, data, **params)
    assert len(index) == ids.size and np.array_equal(index.ids, ids)
    stored = index.stored_form(base)  # what the index holds: decoded codes for ivf_pq_codes
    np.testing.assert_allclose(index.reconstruct(ids[:50]), stored[:50], atol=1e-5)
    assert name == "ivf_pq_codes" or np.allclose(stored, base, atol=1e-6)

    D, got = index.search(q, 10)
    assert got.shape == D.shape == (len(q), 10) and got.dtype == np.int64 and D.dtype == np.float32
    assert np.isin(got, ids).all() and (np.diff(D, axis=1) <= 1e-6).all()
    row = {i: r for r, i in enumerate(ids)}
    scores = np.einsum("qd,qkd->qk", q, stored[np.vectorize(row.get)(got)])
    np.testing.assert_allclose(D, scores, atol=1e-4)  # the cosine with the stored vector
    _, truth = brute(q, stored, ids, 10)
    if kind == "exact":
        np.testing.assert_array_equal(got, truth)
    else:
        assert recall_at(got, truth) >= 0.95

    rng = np.random.default_rng(2)
    small, large = rng.choice(ids, 7, replace=False), rng.choice(ids, 3000, replace=False)
    monkeypatch.setattr(rp, "EXACT_FILTER_MAX", 1000)  # the large set takes the selector path
    answers = {"all": (D, got)}
    for label, allowed in (("small", small), ("large", large)):
        Df, gf, report = index.search(q, 10, allowed_ids=allowed, explain=True)
        answers[label] = (Df, gf)
        assert report.kind == kind and report.n_allowed == allowed.size
        assert report.params == {key: index.params[key] for key in report.params}
        assert np.isin(gf[gf >= 0], allowed).all()
        _, ft = brute(q, stored, ids, 10, allowed)
        if label == "small":  # fewer allowed than k: all of them, scored exactly
            assert report.plan == "exact-subset"
            np.testing.assert_array_equal(gf, ft)
        else:
            assert report.plan == ("scan+filter" if kind == "exact" else "approximate+filter")
            assert (gf >= 0).all()
            if kind == "exact":
                np.testing.assert_array_equal(gf, ft)
            else:
                assert recall_at(gf, ft) >= 0.95

    index.save(tmp_path / "ix", space="dino")
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert manifest["kind"] == kind and manifest["params"] == index.params
    loaded = VectorIndex.load(tmp_path / "ix")
    assert (loaded.kind, loaded.params, len(loaded)) == (kind, index.params, len(index))
    for label, allowed in (("all", None), ("small", small), ("large", large)):
        Dl, gl = loaded.search(q, 10, allowed_ids=allowed)
        np.testing.assert_array_equal(gl, answers[label][1])
        np.testing.assert_array_equal(Dl, answers[label][0])

    if name in REMOVABLE:
        assert loaded.remove(got[:, 0]) == np.unique(got[:, 0]).size
        assert not np.isin(loaded.search(q, 10)[1], got[:, 0]).any()
    else:
        with pytest.raises(RetrievalError, match=f"a '{kind}' index cannot remove vectors"):
            loaded.remove(ids[:1])


def test_exact_matches_numpy_brute_force(data):
    base, ids, q = data
    index = VectorIndex(32, "exact")
    index.add(ids[:4000], base[:4000])
    index.add(ids[4000:], base[4000:])  # two adds keep the id mapping right
    D, got = index.search(q, 10)
    Db, Ib = brute(q, base, ids, 10)
    assert got.dtype == np.int64 and D.dtype == np.float32 and got.shape == (100, 10)
    np.testing.assert_array_equal(got, Ib)
    np.testing.assert_allclose(D, Db, atol=1e-5)


@pytest.mark.parametrize("query_block,block_scores", [(7, 7 * 500), (64, 64 * 13), (1, 20)])
def test_exact_in_blocks_and_chunks_matches_brute_force(data, monkeypatch, query_block,
                                                       block_scores):
    """Queries in blocks, stored rows in chunks (down to chunks of k rows): the merged
    top-k equals one brute-force pass, ties ordered by id."""
    import retrieval.index as rindex

    base, ids, q = data
    index = VectorIndex(32, "exact")
    index.add(ids, base)
    monkeypatch.setattr(rindex, "EXACT_QUERY_BLOCK", query_block)
    monkeypatch.setattr(rindex, "EXACT_BLOCK_SCORES", block_scores)
    D, got = index.search(q, 10)
    Db, Ib = brute(q, base, ids, 10)
    np.testing.assert_array_equal(got, Ib)
    np.testing.assert_allclose(D, Db, atol=1e-5)
    # exact ties (six copies of each basis vector under shuffled ids, spread over the
    # chunks) come back in id order
    rng = np.random.default_rng(0)
    tie_ids = rng.permutation(np.arange(192, dtype=np.int64) * 3 + 5)
    ties = VectorIndex(32, "exact")
    ties.add(tie_ids, np.eye(32, dtype=np.float32)[np.arange(192) % 32])
    D, got = ties.search(np.eye(32, dtype=np.float32)[:4], 6)
    for row in range(4):
        np.testing.assert_array_equal(got[row], np.sort(tie_ids[np.arange(192) % 32 == row]))
        assert (D[row] == 1.0).all()


def test_exact_with_a_large_k_keeps_the_merge_bounded(data, monkeypatch):
    """A large k (against a bound shrunk for the test): fewer queries per block, so the
    merged candidates (queries x chunks x k) stay near the bound on scores, and the
    answer is still brute force's."""
    import tracemalloc

    import retrieval.index as rindex

    base, ids, q = data
    index = VectorIndex(32, "exact")
    index.add(ids, base)
    monkeypatch.setattr(rindex, "EXACT_BLOCK_SCORES", 60_000)  # 240 kB of scores
    tracemalloc.start()
    try:
        D, got = index.search(q, 300)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    Db, Ib = brute(q, base, ids, 300)
    np.testing.assert_allclose(D, Db, atol=1e-5)
    assert (got == Ib).mean() > 0.999  # near-equal scores may swap places
    assert peak < 8e6  # 4 MB here; all 100 queries in one block peaked at 14 MB


def test_single_query_and_unnormalised_input(data):
    base, ids, q = data
    index = VectorIndex(32, "exact")
    index.add(ids, base * 3.0)  # scaled vectors are normalised on the way in
    D, got = index.search(q[0] * 5.0, 4)
    Db, Ib = brute(q[:1], base, ids, 4)
    np.testing.assert_array_equal(got, Ib)
    np.testing.assert_allclose(D, Db, atol=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "ivf_flat", "ivf_pq"])
def test_approximate_kinds_reach_recall_at_defaults(data, kind):
    base, ids, q = data
    _, got = built(kind, data).search(q, 10)
    _, Ib = brute(q, base, ids, 10)
    assert recall_at(got, Ib) >= 0.95
    assert set(np.unique(got)) <= set(ids)


def test_large_ivf_batch_in_list_order_equals_faiss_search(data, monkeypatch):
    """A big IVF-Flat batch against a big index runs sorted by inverted list, in chunks;
    its answers are the ones FAISS gives for the same queries in their own order."""
    import retrieval.index as ri

    base, ids, _ = data
    index = built("ivf_flat", data)
    rng = np.random.default_rng(3)
    q = base[rng.choice(len(base), 700, replace=False)] + 0.3 * rng.normal(size=(700, 32))
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    D_ref, L_ref = index._finish(*index._index.search(q, 10))  # FAISS, queries in input order
    monkeypatch.setattr(ri, "LIST_ORDER_CHUNK", 300)  # three chunks, the last one short
    monkeypatch.setattr(ri, "LIST_ORDER_MIN_BYTES", 0)  # this small index counts as big
    calls = []
    real = index._search_in_list_order
    monkeypatch.setattr(index, "_search_in_list_order",
                        lambda *a: calls.append(1) or real(*a))
    D, got = index.search(q, 10)
    assert calls, "a 700-query batch should take the list-ordered path"
    np.testing.assert_array_equal(got, L_ref)
    np.testing.assert_allclose(D, D_ref, atol=1e-6)
    # below the threshold the plain FAISS call runs, with the same answers
    calls.clear()
    D_small, got_small = index.search(q[:ri.LIST_ORDER_MIN_QUERIES - 1], 10)
    assert not calls
    np.testing.assert_array_equal(got_small, got[:ri.LIST_ORDER_MIN_QUERIES - 1])
    # an index that fits in the CPU caches keeps FAISS's own order
    monkeypatch.setattr(ri, "LIST_ORDER_MIN_BYTES", len(index) * index.dim * 4 + 1)
    index.search(q, 10)
    assert not calls


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf_flat", "ivf_pq"])
@pytest.mark.parametrize("n_allowed", [7, 5000])  # small set: exact path; large: IDSelector
def test_filtered_search_equals_brute_force(data, kind, n_allowed):
    base, ids, q = data
    rng = np.random.default_rng(1)
    allowed = rng.choice(ids, n_allowed, replace=False)
    allowed = np.concatenate([allowed, [10**12]])  # an id not in the index is ignored
    index = built(kind, data)
    import retrieval.plan as rp
    old = rp.EXACT_FILTER_MAX
    rp.EXACT_FILTER_MAX = 1000  # force the selector path for the large set at this size
    try:
        D, got = index.search(q[:20], 10, allowed_ids=allowed)
    finally:
        rp.EXACT_FILTER_MAX = old
    Db, Ib = brute(q[:20], base, ids, 10, allowed)
    assert np.isin(got[got >= 0], allowed).all()
    if n_allowed < 10:  # fewer allowed than k: the rest are empty slots
        assert (got[:, n_allowed:] == -1).all() and np.isneginf(D[:, n_allowed:]).all()
        assert (got[:, :n_allowed] >= 0).all()
    if kind == "exact" or n_allowed < 10:
        np.testing.assert_array_equal(got, Ib)
        np.testing.assert_allclose(D[got >= 0], Db[got >= 0], atol=1e-5)
    else:
        assert (got >= 0).all()  # never fewer than k when k allowed hits exist
        assert recall_at(got, Ib) >= 0.95


def test_empty_slots_when_k_exceeds_size():
    index = VectorIndex(4, "exact")
    index.add(np.array([5, 9]), np.eye(2, 4, dtype=np.float32))
    D, got = index.search(np.eye(3, 4, dtype=np.float32), 3)
    assert got.tolist()[0] == [5, 9, -1]
    assert np.isneginf(D[:, 2]).all()


def test_remove_exact_and_ivf_but_not_hnsw(data):
    base, ids, q = data
    for kind in ("exact", "ivf_flat"):
        index = VectorIndex(32, kind)
        index.add(ids, base)
        _, first = index.search(q[:5], 1)
        gone = np.unique(first[:, 0])
        assert index.remove(gone) == gone.size
        assert len(index) == ids.size - gone.size
        _, got = index.search(q[:50], 10)
        assert not np.isin(got, gone).any()
        keep = ~np.isin(ids, gone)
        if kind == "exact":
            np.testing.assert_array_equal(got, brute(q[:50], base[keep], ids[keep], 10)[1])
    hnsw = VectorIndex(32, "hnsw")
    hnsw.add(ids[:100], base[:100])
    with pytest.raises(RetrievalError, match="cannot remove"):
        hnsw.remove(ids[:1])


@pytest.mark.parametrize("kind", ["exact", "ivf_pq"])
def test_save_load_round_trip(tmp_path, data, kind):
    base, ids, q = data
    index = built(kind, data)
    D, got = index.search(q, 10)
    index.save(tmp_path / "ix", space="dino", extra={"where": "train"})
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert manifest["space"] == "dino" and manifest["count"] == ids.size and manifest["dim"] == 32
    assert manifest["id_checksum"] == id_checksum(ids[::-1])
    assert manifest["kind"] == kind and manifest["faiss_version"]
    loaded = VectorIndex.load(tmp_path / "ix")
    D2, I2 = loaded.search(q, 10)
    np.testing.assert_array_equal(got, I2)
    np.testing.assert_allclose(D, D2, atol=1e-6)
    assert loaded.manifest["extra"] == {"where": "train"}
    np.save(tmp_path / "ix" / "ids.npy", ids[:-1])  # tampered ids no longer match the manifest
    with pytest.raises(RetrievalError, match="rebuild"):
        VectorIndex.load(tmp_path / "ix")


def test_id_checksum_changes_with_the_set():
    a = np.arange(10)
    assert id_checksum(a) == id_checksum(a[::-1])
    assert id_checksum(a) != id_checksum(np.arange(11))
    assert id_checksum(a) != id_checksum(np.r_[a[:-1], 99])


def test_bad_input_errors(data):
    base, ids, q = data
    index = VectorIndex(32, "exact")
    with pytest.raises(RetrievalError, match="empty"):
        index.search(q, 5)
    with pytest.raises(InvalidVectorsError, match=r"expected \(n, 32\)"):
        index.add(ids[:3], base[:3, :16])
    with pytest.raises(ValueError, match="float32"):
        index.add(ids[:3], base[:3].astype(np.float64))
    bad = base[:3].copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        index.add(ids[:3], bad)
    index.add(ids[:3], base[:3])
    with pytest.raises(ValueError, match="already in the index"):
        index.add(ids[:1], base[:1])
    with pytest.raises(ValueError, match=r"expected \(n, 32\)"):
        index.search(q[:, :8], 5)
    with pytest.raises(RetrievalError, match="unknown index kind"):
        VectorIndex(32, "lsh")
    with pytest.raises(RetrievalError, match="nlist"):
        VectorIndex(32, "ivf_flat", nlist=64).add(ids[:10], base[:10])
    assert len(index) == 3  # failed adds stored nothing


# ------------------------------------------------------------------ open set
@pytest.fixture(scope="module")
def openset_data():
    x, labels = clustered(6000, 32, noise=0.8, seed=3)
    unknown_species = labels % 3 == 0  # a third of the species never seen in training
    train = x[:3000][~unknown_species[:3000]]
    val, val_unk = x[3000:4500], unknown_species[3000:4500]
    test, test_unk = x[4500:], unknown_species[4500:]
    return train, val, val_unk, test, test_unk


def test_openset_separates_unknowns_and_threshold_lowers_track1_error(openset_data):
    train, val, val_unk, test, test_unk = openset_data
    det = OpenSetDetector(k=5).fit(train)
    metrics = det.evaluate(test, test_unk)
    assert metrics["auroc"] > 0.8
    assert 0.0 <= metrics["fpr_at_95_tpr"] < 0.9
    det.calibrate(val, val_unk)
    assert det.val_error_ < det.val_error_never_
    pred = det.predict(test)
    assert pred.dtype == bool and pred.shape == (test.shape[0],)
    assert np.mean(pred != test_unk) < np.mean(test_unk)  # beats never predicting unknown


def test_openset_known_recall_target_and_fusion(openset_data):
    train, val, val_unk, test, test_unk = openset_data
    det = OpenSetDetector(k=5).fit(train)
    det.calibrate(val, val_unk, target="known_recall", known_recall=0.9)
    kept = ~det.predict(val)[~val_unk]
    assert abs(kept.mean() - 0.9) < 0.02
    # A head uncertainty that carries real signal improves the fused AUROC.
    rng = np.random.default_rng(0)
    unc_val = val_unk + rng.normal(0, 0.6, val_unk.size)
    unc_test = test_unk + rng.normal(0, 0.6, test_unk.size)
    plain = OpenSetDetector(k=5).fit(train).evaluate(test, test_unk)["auroc"]
    det.calibrate(val, val_unk, uncertainty=unc_val)
    fused = det.evaluate(test, test_unk, uncertainty=unc_test)["auroc"]
    assert fused > plain
    with pytest.raises(RetrievalError, match="uncertainty"):
        det.predict(test)


def test_openset_track1_uses_known_correct(openset_data):
    train, val, val_unk, _, _ = openset_data
    # When the classifier is wrong on most knowns anyway, flagging them costs nothing more.
    wrong = np.zeros(val_unk.size, bool)
    det = OpenSetDetector(k=5).fit(train).calibrate(val, val_unk, known_correct=wrong)
    assert det.predict(val).all() or det.val_error_ <= det.val_error_never_
    right = OpenSetDetector(k=5).fit(train).calibrate(val, val_unk)
    assert det.threshold_ <= right.threshold_


def test_openset_not_fitted_errors(openset_data):
    train, val, val_unk, _, _ = openset_data
    with pytest.raises(NotFittedError, match=r"not fitted yet; call fit\(\.\.\.\) first"):
        OpenSetDetector().score_samples(val)
    assert issubclass(NotFittedError, RetrievalError)
    with pytest.raises(NotFittedError, match=r"not calibrated yet; call calibrate\(\.\.\.\) first"):
        OpenSetDetector(k=3).fit(train).predict(val)
    with pytest.raises(RetrievalError, match="k="):
        OpenSetDetector(k=0).fit(train)


def test_openset_on_a_shared_index_matches_fit_and_fuse_matches_score_samples(openset_data):
    train, val, val_unk, test, _ = openset_data
    index = VectorIndex(train.shape[1], "exact")
    index.add(np.arange(100, 100 + len(train), dtype=np.int64), train)
    shared = OpenSetDetector(k=5).fit_index(index)
    own = OpenSetDetector(k=5).fit(train)
    np.testing.assert_allclose(shared.knn_scores(test), own.knn_scores(test), atol=1e-6)
    unc = np.linspace(0, 1, len(val))
    shared.calibrate(val, val_unk, uncertainty=unc)
    u_test = np.linspace(1, 0, len(test))
    np.testing.assert_allclose(shared.fuse(shared.knn_scores(test), u_test),
                               shared.score_samples(test, u_test))
    with pytest.raises(RetrievalError, match="k="):
        OpenSetDetector(k=10**6).fit_index(index)


@pytest.mark.parametrize("with_uncertainty", [False, True])
def test_openset_state_json_round_trip_gives_identical_scores(openset_data, with_uncertainty):
    train, val, val_unk, test, _ = openset_data
    index = VectorIndex(train.shape[1], "exact")
    index.add(np.arange(len(train), dtype=np.int64), train)
    det = OpenSetDetector(k=5, fusion_weight=0.3).fit_index(index)
    unc_val = np.linspace(0, 1, len(val)) if with_uncertainty else None
    unc_test = np.linspace(1, 0, len(test)) if with_uncertainty else None
    det.calibrate(val, val_unk, uncertainty=unc_val)
    state = json.loads(json.dumps(det.get_state()))
    back = OpenSetDetector.from_state(state, index)
    assert back.index_ is index and back.k == 5 and back.fusion_weight == 0.3
    np.testing.assert_array_equal(back.score_samples(test, unc_test), det.score_samples(test, unc_test))
    np.testing.assert_array_equal(back.predict(test, unc_test), det.predict(test, unc_test))
    assert back.threshold_ == det.threshold_ and back.val_error_ == det.val_error_
    assert state["uncertainty_stats"] is None or len(state["uncertainty_stats"]) == 2


def test_openset_state_of_an_uncalibrated_detector_and_bad_states(openset_data):
    train, val, _, _, _ = openset_data
    index = VectorIndex(train.shape[1], "exact")
    index.add(np.arange(len(train), dtype=np.int64), train)
    state = json.loads(json.dumps(OpenSetDetector(k=3).fit_index(index).get_state()))
    back = OpenSetDetector.from_state(state, index)
    np.testing.assert_array_equal(back.knn_scores(val), OpenSetDetector(k=3).fit(train).knn_scores(val))
    with pytest.raises(NotFittedError, match=r"not calibrated yet; call calibrate\(\.\.\.\) first"):
        back.predict(val)
    other = VectorIndex(8, "exact")
    other.add(np.arange(10), np.eye(10, 8, dtype=np.float32) + 0.1)
    with pytest.raises(RetrievalError, match="32-d"):
        OpenSetDetector.from_state(state, other)
    with pytest.raises(RetrievalError, match="lacks"):
        OpenSetDetector.from_state({"fusion_weight": 0.5}, index)
    with pytest.raises(RetrievalError, match="knn_stats"):
        OpenSetDetector.from_state({**state, "threshold": 0.1, "knn_stats": [0.0]}, index)
    with pytest.raises(RetrievalError, match="k="):
        OpenSetDetector.from_state({**state, "k": 10**6}, index)

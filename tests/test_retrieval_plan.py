"""retrieval.choose_plan and the SearchReport every VectorIndex.search leaves behind."""

import json

import numpy as np
import pytest

import retrieval.plan as rp
from retrieval import SearchPlan, SearchReport, VectorIndex, choose_plan


def test_choose_plan_by_size_and_selectivity():
    assert choose_plan(1_000).kind == "exact"
    assert choose_plan(rp.EXACT_MAX_VECTORS).kind == "exact"
    big = choose_plan(420_000)
    assert big.kind == "hnsw" and big.selectivity == 1.0 and "420,000" in big.why
    assert choose_plan(rp.HNSW_MAX_VECTORS + 1).kind == "ivf_pq"
    sel = choose_plan(420_000, n_allowed=1_200)
    assert sel.kind == "exact" and sel.selectivity == pytest.approx(1_200 / 420_000)
    assert "1,200 of 420,000" in sel.why
    assert choose_plan(420_000, n_allowed=200_000).kind == "hnsw"
    assert choose_plan(5, n_allowed=3, k=10).kind == "exact"
    d = json.loads(json.dumps(sel.to_dict()))
    assert d["kind"] == "exact" and d["n_allowed"] == 1_200
    with pytest.raises(ValueError, match="n_vectors"):
        choose_plan(-1)


def test_plan_builds_the_index_it_names():
    plan = choose_plan(50_000)
    assert isinstance(plan, SearchPlan)
    index = VectorIndex(8, plan.kind, **plan.params)
    assert index.kind == "hnsw"


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 16)).astype(np.float32)
    ids = np.arange(3000, dtype=np.int64) * 3
    return x, ids, rng.normal(size=(6, 16)).astype(np.float32)


def test_reports_for_exact_paths(small):
    x, ids, q = small
    index = VectorIndex(16, "exact", use_gpu=False)
    index.add(ids, x)
    D, got, report = index.search(q, 5, explain=True)
    assert isinstance(report, SearchReport) and report is index.last_search
    assert (report.plan, report.backend, report.n_allowed) == ("scan", "numpy", None)
    assert report.returned == report.requested == 30 and report.selectivity == 1.0
    index.search(q, 10, allowed_ids=ids[:4])
    r = index.last_search
    assert r.plan == "exact-subset" and r.n_allowed == 4 and r.returned == 24 and r.requested == 60
    assert r.selectivity == pytest.approx(4 / 3000)
    assert "filter keeps 4 of 3,000" in str(r) and "24 of 60 rows returned" in str(r)
    json.dumps(r.to_dict())
    assert len(index.search(q, 5)) == 2  # without explain: (D, ids) as before


def test_reports_for_approximate_paths_count_widening(small, monkeypatch):
    x, ids, q = small
    index = VectorIndex(16, "hnsw", ef_search=16)
    index.add(ids, x)
    index.search(q, 5)
    r = index.last_search
    assert (r.plan, r.kind, r.backend, r.params) == ("approximate", "hnsw", "faiss-cpu", {"ef_search": 16})
    monkeypatch.setattr(rp, "EXACT_FILTER_MAX", 10)
    allowed = ids[::150]  # 20 allowed of 3000: a graph walk finds few of them
    D, got, r = index.search(q, 10, allowed_ids=allowed, explain=True)
    assert r.plan == "approximate+filter" and r.n_allowed == 20
    assert r.returned == r.requested == 60  # k allowed hits for every query, widened or exact
    assert np.isin(got, allowed).all()
    assert r.widened + r.exact_fallback > 0


def test_ivf_pq_rerank_scores_are_exact(small):
    x, ids, q = small
    index = VectorIndex(16, "ivf_pq", nlist=16, m=4)
    index.add(ids, x)
    D, got = index.search(q, 5)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    exact = np.einsum("qd,qkd->qk", qn, xn[got // 3])  # ids are 3 * row
    np.testing.assert_allclose(D, exact, atol=1e-5)  # re-ranked by stored vectors, not codes


@pytest.mark.skipif(__import__("faiss").get_num_gpus() > 0, reason="needs a machine without a FAISS GPU")
def test_asking_for_a_gpu_without_one_says_so_once_and_uses_the_cpu(small, caplog, monkeypatch):
    import retrieval.gpu as rg

    x, ids, q = small
    monkeypatch.setattr(rg, "_NOTED", False)
    with caplog.at_level("WARNING", logger="retrieval.gpu"):
        a = VectorIndex(16, "ivf_flat", use_gpu=True, nlist=8)
        VectorIndex(16, "exact", shard=True)
    assert [r.getMessage() for r in caplog.records].count(
        "no GPU: using the CPU index (this FAISS build or machine has no GPU)") == 1
    a.add(ids, x)
    a.search(q, 3)
    assert not a.use_gpu and a.last_search.backend == "faiss-cpu"

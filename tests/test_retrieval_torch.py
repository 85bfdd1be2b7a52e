"""retrieval.torch_search on CPU tensors: the same answers as the exact FAISS path."""

import sys

import numpy as np
import pytest

from retrieval import VectorIndex

pytest.importorskip("torch")

from retrieval.torch_search import TorchExactSearch  # noqa: E402


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    base = rng.normal(size=(3000, 48)).astype(np.float32)
    q = rng.normal(size=(40, 48)).astype(np.float32)
    ids = rng.permutation(10**6)[:3000].astype(np.int64)  # store ids, unsorted
    exact = VectorIndex(48, "exact", use_gpu=False)
    exact.add(ids, base)
    on_torch = VectorIndex(48, "exact", torch_device="cpu")
    on_torch.add(ids, base)
    return base, ids, q, exact, on_torch


def _same(a, b):
    (Da, Ia), (Db, Ib) = a, b
    assert Ia.dtype == Ib.dtype == np.int64 and Da.dtype == Db.dtype == np.float32
    np.testing.assert_array_equal(Ia, Ib)
    np.testing.assert_allclose(Da, Db, atol=1e-5)


def test_unfiltered_equals_faiss_exact(data):
    _, _, q, exact, on_torch = data
    _same(on_torch.search(q, 10), exact.search(q, 10))
    assert on_torch._torch is not None  # the torch path really ran
    assert (on_torch.last_search.plan, on_torch.last_search.backend) == ("torch", "torch:cpu")


@pytest.mark.parametrize("n_allowed", [3, 200, 2500])
def test_filtered_equals_faiss_exact(data, n_allowed):
    _, ids, q, exact, on_torch = data
    allowed = np.random.default_rng(n_allowed).choice(ids, n_allowed, replace=False)
    allowed = np.r_[allowed, 10**9]  # not in the index: ignored
    got = on_torch.search(q, 10, allowed_ids=allowed)
    _same(got, exact.search(q, 10, allowed_ids=allowed))
    assert np.isin(got[1][got[1] >= 0], allowed).all()


def test_k_larger_than_the_candidates_pads(data):
    _, ids, q, exact, on_torch = data
    D, got = on_torch.search(q[:5], 4000)
    _same((D, got), exact.search(q[:5], 4000))
    assert (got[:, 3000:] == -1).all() and np.isneginf(D[:, 3000:]).all()
    D, got = on_torch.search(q[:5], 10, allowed_ids=ids[:4])
    assert (got[:, 4:] == -1).all() and np.isin(got[:, :4], ids[:4]).all()
    D, got = on_torch.search(q[:5], 10, allowed_ids=np.array([], np.int64))
    assert (got == -1).all() and np.isneginf(D).all()


def test_blocks_and_add_remove_refresh_the_device_copy(data, monkeypatch):
    import retrieval.torch_search as ts

    base, ids, q, exact, _ = data
    monkeypatch.setattr(ts, "BLOCK_SCORES", 3000 * 7)  # 7 queries per block
    index = VectorIndex(48, "exact", torch_device="cpu")
    index.add(ids[:1000], base[:1000])
    index.search(q, 5)
    index.add(ids[1000:], base[1000:])
    _same(index.search(q, 10), exact.search(q, 10))
    index.remove(ids[:1500])
    _, got = index.search(q, 10)
    assert not np.isin(got, ids[:1500]).any()


def test_direct_class_and_cuda_choice_without_a_gpu():
    s = TorchExactSearch(np.eye(3, 4, dtype=np.float32), np.array([7, 8, 9]), "cpu")
    D, got = s.search(np.eye(2, 4, dtype=np.float32), 4, allowed_ids=np.array([8, 9]))
    assert got.tolist() == [[8, 9, -1, -1], [8, 9, -1, -1]]
    index = VectorIndex(4, "exact")
    index.add(np.array([1]), np.ones((1, 4), np.float32))
    index.search(np.ones((1, 4), np.float32), 1)
    import torch

    assert index.torch_device == ("cuda" if torch.cuda.is_available() else None)


def test_import_retrieval_does_not_load_torch(tmp_path):
    import subprocess

    code = ("import sys, numpy as np, retrieval; i = retrieval.VectorIndex(4); "
            "i.add(np.arange(2), np.eye(2, 4, dtype=np.float32)); "
            "i.search(np.eye(1, 4, dtype=np.float32), 1); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

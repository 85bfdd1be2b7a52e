"""The scoring pipeline's numeric shortcuts against the paths they replace, and the
GPU kNN path (exact search through PyTorch) run on CPU tensors against FAISS."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ingest_simulation_cli

from heads.decision import decide, decide_summary, summarise
from heads.inference import aggregate_by_observation
from retrieval import VectorIndex
from sporeprint.indexing import memory_index
from sporeprint.lookalikes import TrainingNeighbours
from sporeprint.scoring.observations import ObservationMeans, normalise
from store import FeatureStore


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_observation_means_are_bit_identical_to_aggregate_by_observation(dtype):
    rng = np.random.default_rng(3)
    obs = rng.choice([40, 7, 93, 12, 5], size=23)  # unsorted, repeated, varied counts
    probs = rng.dirichlet(np.ones(6), size=23).astype(dtype)
    vectors = normalise(rng.normal(size=(23, 10)).astype(dtype))
    means = ObservationMeans(obs)
    for values in (probs, vectors):
        ids, want = aggregate_by_observation(values, obs)
        got = means(values)
        np.testing.assert_array_equal(means.ids, ids)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)  # the same arithmetic, not just close


def test_track3_from_one_summary_equals_decide():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.full(30, 0.3), size=500)
    unknown = rng.uniform(-0.05, 1.05, size=500)  # out-of-range values are clipped alike
    classes = np.arange(100, 130)
    poisonous = rng.random(30) < 0.2
    want = decide(probs, unknown, classes, poisonous, rule="track3")
    got = decide_summary(summarise(probs, unknown, classes, poisonous))
    np.testing.assert_array_equal(got.class_id, want.class_id)
    np.testing.assert_array_equal(got.poison_prob, want.poison_prob)
    assert got.reason == want.reason
    np.testing.assert_array_equal(got.kind, want.kind)
    assert set(got.kind) >= {"unknown", "species"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return ingest_simulation_cli(tmp_path_factory.mktemp("paths"), seed=2)[0]


def test_training_neighbours_through_torch_equal_faiss_exact(store):
    """The path a CUDA machine without FAISS GPU takes (torch matmul + top-k), on CPU
    tensors: same evidence and unknown score as FAISS's exact search."""
    with FeatureStore(store, read_only=True) as fs:
        faiss_index = memory_index(fs, "sim", "train")
        ids, vectors = fs.fetch_embeddings("sim", faiss_index.ids)
        torch_index = VectorIndex(faiss_index.dim, "exact", torch_device="cpu")
        torch_index.add(ids, vectors)
        val_ids, queries = fs.fetch_embeddings("sim")
        queries = normalise(queries[~np.isin(val_ids, ids)][:300])
        on_faiss = TrainingNeighbours(fs, faiss_index).search(queries, 5, 10)
        on_torch = TrainingNeighbours(fs, torch_index).search(queries, 5, 10)
    assert torch_index.last_search.backend == "torch:cpu"
    assert faiss_index.last_search.backend == "numpy"
    assert (on_faiss.observation_ids >= 0).all()  # five distinct training observations each
    np.testing.assert_array_equal(on_torch.observation_ids, on_faiss.observation_ids)
    np.testing.assert_allclose(on_torch.scores, on_faiss.scores, atol=1e-5)
    np.testing.assert_allclose(on_torch.unknown_score, on_faiss.unknown_score, atol=1e-5)

"""A saved index grows incrementally: after `index update` its ids and answers equal those
of an index rebuilt from the store, its manifest records the growth, and `index info`
says whether a rebuild would pay off."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from retrieval import VectorIndex
from sporeprint.cli import main
from sporeprint.indexing import StaleIndexError, build_index, index_dir, load_index, update_index
from store import FeatureStore
from tests.conftest import make_simulated_store


@pytest.fixture()
def grown(tmp_path):
    """A store whose saved indexes of all images were built before the test role's
    vectors arrived: ``(store path, ids before)``."""
    path = make_simulated_store(tmp_path, dim=16)
    with FeatureStore(path) as fs:
        test_ids = fs.selection_image_ids("sim", "test")
        before = np.setdiff1d(fs.selection_image_ids("sim", "all"), test_ids)
    return path, before


def _build_without_test(fs, kind: str, **params) -> VectorIndex:
    ids = np.setdiff1d(fs.selection_image_ids("sim", "all"), fs.selection_image_ids("sim", "test"))
    found, vectors = fs.fetch_embeddings("sim", ids)
    index = VectorIndex(16, kind=kind, **params)
    index.add(found, vectors)
    index.save(index_dir(fs.path, "sim", kind, "all"), space="sim", extra={
        "where": "all", "model_id": fs.require_space("sim").model_id,
        "revision": fs.require_space("sim").revision, "store_id": fs.store_id,
        "split_seed": None})
    return index


@pytest.mark.parametrize(("kind", "params"), [("exact", {}), ("ivf_flat", {"nlist": 8,
                                                                           "nprobe": 8}),
                                              ("hnsw", {"ef_search": 400})])
def test_grown_index_equals_a_rebuilt_one(grown, tmp_path, kind, params):
    path, before = grown
    with FeatureStore(path, read_only=True) as fs:
        _build_without_test(fs, kind, **params)
        with pytest.raises(StaleIndexError, match="index update"):
            load_index(fs, "sim", kind, "all")
        index, added, removed = update_index(fs, "sim", kind, "all")
        assert added == fs.selection_image_ids("sim", "test").size and removed == 0
        fresh = load_index(fs, "sim", kind, "all")  # fresh again, no rebuild
        rebuilt = build_index(fs, "sim", kind, "all", directory=tmp_path / "rebuilt", **params)
        assert np.array_equal(np.sort(fresh.ids), np.sort(rebuilt.ids))
        assert fresh.manifest["id_checksum"] == rebuilt.manifest["id_checksum"]
        assert fresh.manifest["built_count"] == before.size
        assert fresh.manifest["added_since_build"] == added
        _, q = fs.fetch_embeddings("sim", fs.selection_image_ids("sim", "val")[:50])
    d1, i1 = fresh.search(q, 5)
    d2, i2 = rebuilt.search(q, 5)
    assert np.array_equal(i1, i2)
    assert np.allclose(d1, d2, atol=1e-5)


def test_rebuild_advice_and_index_info(grown, capsys):
    path, _ = grown
    with FeatureStore(path, read_only=True) as fs:
        _build_without_test(fs, "ivf_flat", nlist=4)
    args = ["--store", str(path), "--space", "sim", "--kind", "ivf_flat"]
    assert main(["index", "info", *args]) == 2  # stale: names `index update`
    assert "sporeprint index update" in capsys.readouterr().err
    assert main(["index", "update", *args]) == 0
    out = capsys.readouterr().out
    assert re.search(r"added \d+ vectors, removed 0", out)
    assert main(["index", "info", *args]) == 0
    out = capsys.readouterr().out
    manifest = json.loads(out[:out.index("\nup to date")])
    assert manifest["trained_on"] == manifest["built_count"]
    assert "no rebuild needed" in out  # grew by well under 2x
    # grown past twice what the lists were trained on: a rebuild pays off
    index = VectorIndex(4, "ivf_flat", nlist=2)
    rng = np.random.default_rng(0)
    index.add(np.arange(100), rng.standard_normal((100, 4)).astype(np.float32))
    index.built_count = 100
    assert not index.rebuild_advice()[0]
    index.add(np.arange(100, 400), rng.standard_normal((300, 4)).astype(np.float32))
    pays, why = index.rebuild_advice()
    assert pays and "trained on 100" in why
    exact = VectorIndex(4, "exact")
    exact.add(np.arange(10), rng.standard_normal((10, 4)).astype(np.float32))
    assert exact.rebuild_advice()[0] is False


"""retrieval: a saved index with a corrupt, truncated or missing file fails with one line
naming the file and saying to rebuild, never a traceback from FAISS or numpy."""

import json

import numpy as np
import pytest

from retrieval import RetrievalError, VectorIndex


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    directory = tmp_path_factory.mktemp("ix") / "exact"
    index = VectorIndex(16, "exact")
    index.add(np.arange(300, dtype=np.int64) + 5, x)
    index.save(directory, space="s")
    return directory, x


def _copy(saved, tmp_path):
    src, _ = saved
    dst = tmp_path / "ix"
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _fails(directory, name, *words):
    with pytest.raises(RetrievalError) as info:
        VectorIndex.load(directory)
    msg = str(info.value)
    assert "\n" not in msg and str(directory / name) in msg
    assert "rebuild" in msg
    for w in words:
        assert w in msg
    return msg


def test_intact_copy_loads(saved, tmp_path):
    directory = _copy(saved, tmp_path)
    _, x = saved
    assert VectorIndex.load(directory).search(x[:2], 1)[1][:, 0].tolist() == [5, 6]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_index_faiss(saved, tmp_path, damage):
    directory = _copy(saved, tmp_path)
    path = directory / "index.faiss"
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00garbage" * 50,
                      "empty": b""}[damage])
    _fails(directory, "index.faiss", "not a readable FAISS index")


def test_index_faiss_of_another_kind_or_dim(saved, tmp_path):
    directory = _copy(saved, tmp_path)
    other = VectorIndex(8, "exact")
    other.add(np.arange(300), np.ones((300, 8), np.float32))
    other.save(tmp_path / "other")
    (directory / "index.faiss").write_bytes((tmp_path / "other" / "index.faiss").read_bytes())
    _fails(directory, "index.faiss", "dim 8")


@pytest.mark.parametrize("text, words", [
    ("{not json", ["not valid JSON"]),
    ("[1, 2]", ["not an object"]),
    ("\xff\xfe", ["not valid JSON"]),
])
def test_manifest_not_json(saved, tmp_path, text, words):
    directory = _copy(saved, tmp_path)
    (directory / "manifest.json").write_bytes(text.encode("latin-1"))
    _fails(directory, "manifest.json", "manifest.json", *words)


@pytest.mark.parametrize("key", ["kind", "dim", "params", "id_checksum", "count"])
def test_manifest_missing_key(saved, tmp_path, key):
    directory = _copy(saved, tmp_path)
    manifest = json.loads((directory / "manifest.json").read_text())
    del manifest[key]
    (directory / "manifest.json").write_text(json.dumps(manifest))
    _fails(directory, "manifest.json", "manifest.json", key)


@pytest.mark.parametrize("change", [{"dim": "16"}, {"kind": "lsh"}, {"params": {"nlist": 4}},
                                    {"dim": 0}, {"extra": []}])
def test_manifest_bad_values(saved, tmp_path, change):
    directory = _copy(saved, tmp_path)
    manifest = json.loads((directory / "manifest.json").read_text())
    (directory / "manifest.json").write_text(json.dumps({**manifest, **change}))
    _fails(directory, "manifest.json", "manifest.json")


def test_ids_file_missing_or_garbled(saved, tmp_path):
    directory = _copy(saved, tmp_path)
    (directory / "ids.npy").unlink()
    _fails(directory, "ids.npy", "ids.npy", "missing")
    (directory / "ids.npy").write_bytes(b"\x93NUMPY garbage")
    _fails(directory, "ids.npy", "ids.npy")
    np.save(directory / "ids.npy", np.zeros((300, 2)))
    _fails(directory, "ids.npy", "ids.npy", "1-D integer")


def test_index_faiss_missing(saved, tmp_path):
    directory = _copy(saved, tmp_path)
    (directory / "index.faiss").unlink()
    _fails(directory, "index.faiss", "index.faiss", "missing")

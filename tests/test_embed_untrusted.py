"""Untrusted model folders are checked before they are believed: real tiny DINOv2
checkpoints (saved with save_pretrained) with one file altered each — a giant crop, pickled
weights, an unknown model type, a config that does not belong to its weights, nested or
oversized JSON — are refused with one line, before memory is spent; and an image whose
decoder trips Pillow's bomb check is one recorded failure, not a crash."""

from __future__ import annotations

import json
import pickle
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_embed import SMALL_PROCESSOR, make_model_dir, photo

from embedder import ImageEmbedder, ModelUnavailableError, load_rgb
from sporeprint.cli import main
from store import FeatureStore


@pytest.fixture(scope="module")
def intact(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("intact"), processor=SMALL_PROCESSOR)


def _altered(intact: Path, tmp_path: Path, name: str, edit) -> Path:
    """A copy of the intact checkpoint with the JSON file ``name`` changed by ``edit``."""
    folder = tmp_path / "model"
    shutil.copytree(intact, folder)
    path = folder / name
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return folder


def _refusal(folder: Path) -> str:
    with pytest.raises(ModelUnavailableError) as info:
        ImageEmbedder(folder, device="cpu")
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_the_intact_checkpoint_loads(intact):
    assert ImageEmbedder(intact, device="cpu").dim == 32


@pytest.mark.parametrize("what", ["crop", "resize", "both"])
def test_a_giant_crop_or_resize_is_refused_before_any_image_is_made(intact, tmp_path, what):
    def edit(p):
        if what in ("crop", "both"):
            p["crop_size"] = {"height": 30000, "width": 30000}
        if what in ("resize", "both"):
            p["size"] = {"shortest_edge": 30000}

    folder = _altered(intact, tmp_path, "preprocessor_config.json", edit)
    tracemalloc.start()
    try:
        message = _refusal(folder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "30000" in message and "outside 1..1024 pixels" in message
    assert peak < 200 << 20  # a 30000x30000 crop would be 2.7 GB per image


def test_too_many_patches_for_the_model_are_refused(intact, tmp_path):
    folder = _altered(intact, tmp_path / "a", "preprocessor_config.json", lambda p: p.update(
        size={"shortest_edge": 1024}, crop_size={"height": 1024, "width": 1024}))
    config = json.loads((folder / "config.json").read_text())
    config.update(patch_size=2, image_size=8)  # 262,144 patches; the weights agree
    (folder / "config.json").write_text(json.dumps(config))
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    key = "embeddings.patch_embeddings.projection.weight"
    weights[key] = weights[key][:, :, :2, :2].contiguous()
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    message = _refusal(folder)
    assert "patches of 2 pixels" in message and "DINOv2: 256 patches at 224 pixels" in message


def test_pickled_weights_are_refused_and_never_unpickled(intact, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(intact, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "unpickled"

    class Payload:  # unpickling it would create `marker`
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
    message = _refusal(folder)
    assert "pytorch_model.bin" in message and "safetensors only" in message
    assert "can run any code" in message
    assert not marker.exists()


def test_an_unknown_model_type_names_what_is_supported(intact, tmp_path):
    folder = _altered(intact, tmp_path, "config.json", lambda c: c.update(model_type="fungus9"))
    message = _refusal(folder)
    assert "'fungus9'" in message and "dinov2, dinov2_with_registers, vit" in message
    assert "pip install" not in message


def test_a_text_model_type_is_not_an_image_backbone(intact, tmp_path):
    folder = _altered(intact, tmp_path, "config.json", lambda c: c.update(model_type="bert"))
    assert "'bert'" in _refusal(folder) and "not an image backbone" in _refusal(folder)


@pytest.mark.parametrize("field, value, says", [
    ("hidden_size", 64, "hidden size 64, but its weights (model.safetensors) hold hidden size 32"),
    ("num_hidden_layers", 12, "layers 12, but its weights (model.safetensors) hold layers 2"),
    ("image_size", 112, "position embeddings 65"),
    ("hidden_size", 10**7, "hidden_size=10000000"),
    ("image_size", 30000, "image_size=30000"),
])
def test_a_config_that_does_not_fit_its_weights_is_refused_before_building(
        intact, tmp_path, field, value, says):
    folder = _altered(intact, tmp_path, "config.json", lambda c: c.update({field: value}))
    tracemalloc.start()
    try:
        message = _refusal(folder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert says in message
    assert peak < 100 << 20  # the model the config describes is never built


@pytest.mark.parametrize("name", ["config.json", "preprocessor_config.json"])
def test_nested_or_oversized_json_is_one_line(intact, tmp_path, name):
    folder = tmp_path / "nested"
    shutil.copytree(intact, folder)
    (folder / name).write_text("[" * 100_000 + "]" * 100_000)
    assert "not readable JSON" in _refusal(folder)
    (folder / name).write_text("[" * 40 + "]" * 40)
    assert "nests deeper than 32 levels" in _refusal(folder)
    (folder / name).write_text(json.dumps({"pad": "x" * (5 << 20)}))
    assert "a model's JSON files are a few KB" in _refusal(folder)


def test_the_embed_command_prints_one_line_for_a_bad_checkpoint(intact, tmp_path, capsys):
    store = tmp_path / "fungi.duckdb"
    FeatureStore(store).close()
    folder = _altered(intact, tmp_path, "preprocessor_config.json",
                      lambda p: p.update(crop_size={"height": 30000, "width": 30000}))
    assert main(["embed", "--store", str(store), "--model", str(folder), "--space", "x",
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "crop_size.height" in err


def test_an_image_over_pillows_own_limit_is_decided_by_max_pixels(tmp_path, monkeypatch,
                                                                    intact):
    """Pillow checks some sizes (TIFF tiles, GIF frames) only while it loads; a program that
    lowered Pillow's limit must neither crash a run nor overrule max_pixels."""
    path = tmp_path / "tile.tif"
    Image.fromarray(np.asarray(photo(3, (60, 60)))).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's setting, lowered
    assert load_rgb(path).size == (60, 60)
    embedder = ImageEmbedder(intact, device="cpu", max_pixels=3000)  # 3600 pixels: too many
    out = embedder.embed_images([path, photo(4, (40, 40))], on_error="nan")
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()
    batch = next(embedder.iter_batches([path], batch_size=1))
    assert batch.reasons[0].startswith("image too large")

"""ImageEmbedder in memory: exact match with a direct transformers forward, pooling,
other backbones, and decoding of every kind of awkward photo file."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    ResNetConfig,
    ResNetModel,
)
from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil
from transformers.models.convnext.image_processing_pil_convnext import ConvNextImageProcessorPil

from embedder import (
    EmbedderError,
    ImageDecodeError,
    ImageEmbedder,
    ModelUnavailableError,
    default_space_name,
    load_rgb,
)
from embedder.batches import ImageItems, decode_chunks
from embedder.preprocess import FastPreprocess

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            patch_size=14, image_size=56)
DINO_PROCESSOR = dict(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                      resample=3, image_mean=[0.485, 0.456, 0.406],
                      image_std=[0.229, 0.224, 0.225])
SMALL_PROCESSOR = dict(DINO_PROCESSOR, size={"shortest_edge": 32},
                       crop_size={"height": 28, "width": 28})


def make_model_dir(folder: Path, registers: bool = False, processor: dict = DINO_PROCESSOR,
                   seed: int = 0) -> Path:
    """A tiny DINOv2 checkpoint saved the way the hub ships one."""
    torch.manual_seed(seed)
    if registers:
        model = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(num_register_tokens=4, **TINY))
    else:
        model = Dinov2Model(Dinov2Config(**TINY))
    model.save_pretrained(folder)
    BitImageProcessorPil(**processor).save_pretrained(folder)
    return folder


def photo(seed: int, size=(120, 90), mode="RGB") -> Image.Image:
    """A smooth random colour field (JPEG-friendly), as PIL image of ``mode``."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize(size, Image.BICUBIC)
    return img.convert(mode) if mode != "RGB" else img


def huge_header_jpeg(path: Path, width: int = 50000, height: int = 50000) -> None:
    """A valid small JPEG whose frame header claims giant dimensions."""
    buf = io.BytesIO()
    photo(99, (64, 64)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 7] = height.to_bytes(2, "big")
    data[sof + 7:sof + 9] = width.to_bytes(2, "big")
    path.write_bytes(bytes(data))


def write_image_zoo(folder: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Files that must embed, and files that must fail, keyed by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    good = {k: folder / f"{k}.{ext}" for k, ext in [
        ("rgb", "jpg"), ("gray", "jpg"), ("cmyk", "jpg"), ("rgba", "png"), ("16bit", "png"),
        ("exif_rotated", "jpg")]}
    photo(1).save(good["rgb"], quality=92)
    photo(2, mode="L").save(good["gray"], quality=92)
    photo(3, mode="CMYK").save(good["cmyk"], quality=92)
    rgba = photo(4).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    rgba.save(good["rgba"])
    deep = (np.asarray(photo(5, mode="L"), dtype=np.uint16) * 257)
    Image.fromarray(deep).save(good["16bit"])  # mode I;16
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    photo(6, size=(120, 80)).save(good["exif_rotated"], quality=92, exif=exif)

    bad = {k: folder / f"{k}.jpg" for k in ["missing", "zero_bytes", "truncated", "corrupt", "huge"]}
    bad["zero_bytes"].write_bytes(b"")
    full = io.BytesIO()
    photo(7, size=(200, 150)).save(full, "JPEG", quality=92)
    bad["truncated"].write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    bad["corrupt"].write_bytes(np.random.default_rng(8).bytes(4000))
    huge_header_jpeg(bad["huge"])
    return good, bad


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("dinov2"))


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("dinov2small"), processor=SMALL_PROCESSOR)


@pytest.fixture(scope="module")
def dino_reg_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("dinov2reg"), registers=True, seed=1)


def reference_embedding(model_dir: Path, images, pooling: str) -> np.ndarray:
    """A plain transformers forward with the checkpoint's processor."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir).eval()
    proc = BitImageProcessorPil.from_pretrained(model_dir)
    with torch.no_grad():
        hidden = model(**proc(images=images, return_tensors="pt")).last_hidden_state
    registers = getattr(model.config, "num_register_tokens", 0)
    cls = hidden[:, 0]
    if pooling == "cls":
        return cls.numpy()
    return torch.cat([cls, hidden[:, 1 + registers:].mean(1)], dim=1).numpy()


@pytest.mark.parametrize("registers", [False, True])
@pytest.mark.parametrize("pooling", ["cls", "cls+mean"])
@pytest.mark.parametrize("preprocess", ["fast", "processor"])
def test_matches_direct_transformers_forward(dino_dir, dino_reg_dir, registers, pooling,
                                             preprocess):
    folder = dino_reg_dir if registers else dino_dir
    images = [photo(i, size) for i, size in enumerate([(300, 400), (257, 300), (500, 260)])]
    emb = ImageEmbedder(folder, pooling=pooling, device="cpu", preprocess=preprocess)
    got = emb.embed_images(images, batch_size=2)
    want = reference_embedding(folder, images, pooling)
    assert got.dtype == np.float32 and got.shape == want.shape == (3, 32 * (1 + (pooling != "cls")))
    assert np.abs(got - want).max() < 1e-5
    assert emb.dim == got.shape[1]


def test_fast_preprocessing_is_bit_identical_to_processor(dino_dir):
    emb = ImageEmbedder(dino_dir, device="cpu")
    assert isinstance(emb.preprocess, FastPreprocess)
    for i, size in enumerate([(300, 400), (400, 300), (256, 256), (999, 257), (260, 1000)]):
        img = photo(10 + i, size)
        fast = emb.preprocess.normalise(emb.preprocess(img)[None])
        ref = emb.processor(images=img, return_tensors="pt")["pixel_values"]
        assert fast.shape == ref.shape == (1, 3, 224, 224)
        assert torch.equal(fast, ref), size


def test_every_8bit_value_normalises_as_the_processor_does(dino_dir):
    """All 256 levels in each channel (no resize, no crop): the same float32 bits as
    the processor's own rescale + normalise."""
    emb = ImageEmbedder(dino_dir, device="cpu")
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    pixels = np.stack([levels, levels[::-1], levels.T], axis=-1)  # (16, 16, 3)
    fast = emb.preprocess.normalise(torch.from_numpy(pixels)[None])
    ref = emb.processor(images=Image.fromarray(pixels), do_resize=False, do_center_crop=False,
                        return_tensors="pt")["pixel_values"]
    assert fast.shape == ref.shape == (1, 3, 16, 16) and fast.is_contiguous()
    assert torch.equal(fast, ref)


def test_registers_are_excluded_from_the_patch_mean(dino_reg_dir):
    emb = ImageEmbedder(dino_reg_dir, pooling="cls+mean", device="cpu")
    assert emb.num_prefix_tokens == 5
    img = photo(3, (300, 300))
    from transformers import AutoModel

    model = AutoModel.from_pretrained(dino_reg_dir).eval()
    px = BitImageProcessorPil.from_pretrained(dino_reg_dir)(images=img, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**px).last_hidden_state
    with_registers = hidden[:, 1:].mean(1).numpy()
    got = emb.embed_images([img])[:, 32:]
    assert np.abs(got - hidden[:, 5:].mean(1).numpy()).max() < 1e-5
    assert np.abs(got - with_registers).max() > 1e-4


def test_resnet_backbone_uses_pooled_output(tmp_path):
    torch.manual_seed(0)
    model = ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                     layer_type="basic"))
    model.save_pretrained(tmp_path)
    ConvNextImageProcessorPil(size={"shortest_edge": 64}, crop_pct=0.875).save_pretrained(tmp_path)
    emb = ImageEmbedder(tmp_path, device="cpu")
    assert emb.pooling == "pooler" and emb.dim == 16
    assert not isinstance(emb.preprocess, FastPreprocess)  # not a resize+crop processor
    images = [photo(1, (90, 120)), photo(2, (200, 100))]
    got = emb.embed_images(images)
    px = ConvNextImageProcessorPil.from_pretrained(tmp_path)(images=images, return_tensors="pt")
    with torch.no_grad():
        want = model.eval()(**px).pooler_output.flatten(1).numpy()
    assert got.shape == (2, 16) and np.abs(got - want).max() < 1e-5
    with pytest.raises(ValueError, match="cls\\+mean"):
        ImageEmbedder(tmp_path, pooling="cls+mean", device="cpu")


def test_image_zoo_embeds_or_fails_with_reason(tmp_path, dino_dir):
    good, bad = write_image_zoo(tmp_path / "zoo")
    emb = ImageEmbedder(dino_dir, device="cpu", max_pixels=10_000_000)
    vecs = emb.embed_images(list(good.values()))
    assert np.isfinite(vecs).all()
    # each file equals the embedding of its correctly decoded RGB image
    with Image.open(good["exif_rotated"]) as raw:  # pixels as stored, sideways
        sideways_pixels = np.asarray(raw.convert("RGB"))  # no EXIF carried along
    upright = Image.fromarray(np.rot90(sideways_pixels, k=-1).copy())
    ref = emb.embed_images([upright])
    sideways = emb.embed_images([Image.fromarray(sideways_pixels)])
    assert np.abs(sideways[0] - ref[0]).max() > 1e-3
    assert np.abs(vecs[list(good).index("exif_rotated")] - ref[0]).max() < 1e-5
    rows = emb.embed_images(list(bad.values()) + [good["rgb"]], on_error="nan")
    assert np.isnan(rows[:-1]).all() and np.isfinite(rows[-1]).all()
    with pytest.raises(ImageDecodeError, match="truncated"):
        emb.embed_images([good["rgb"], bad["truncated"]])


def test_load_rgb_reasons_and_conversions(tmp_path):
    good, bad = write_image_zoo(tmp_path)
    reasons = {}
    for kind, path in bad.items():
        with pytest.raises(ImageDecodeError) as info:
            load_rgb(path)
        reasons[kind] = info.value.reason
    assert reasons["missing"] == "missing file"
    assert reasons["zero_bytes"].startswith("empty file")
    assert reasons["truncated"].startswith("truncated")
    assert reasons["corrupt"].startswith("not an image")
    assert reasons["huge"].startswith("image too large")
    with pytest.raises(ImageDecodeError, match="max_pixels=100"):
        load_rgb(good["rgb"], max_pixels=100)

    for path in good.values():
        assert load_rgb(path).mode == "RGB"
    assert load_rgb(good["exif_rotated"]).size == (80, 120)  # upright: portrait
    deep = np.asarray(load_rgb(good["16bit"]))
    assert np.array_equal(deep[..., 0], np.asarray(photo(5, mode="L")))  # 16-bit scaled, not clipped
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert load_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    cmyk = load_rgb(good["cmyk"])
    assert np.abs(np.asarray(cmyk, dtype=int) - np.asarray(photo(3), dtype=int)).mean() < 12


def test_space_spec_records_model_and_preprocessing(dino_dir, dino_reg_dir):
    emb = ImageEmbedder(dino_dir, pooling="cls+mean", device="cpu")
    spec = emb.space_spec()
    assert set(spec) == {"name", "model_id", "revision", "dim", "pooling", "dtype",
                         "preprocessing"}
    assert spec["name"] == default_space_name(str(dino_dir))
    assert spec["dim"] == 64 and spec["pooling"] == "cls+mean" and spec["dtype"] == "float32"
    assert spec["revision"].startswith("sha256:") and len(spec["revision"]) == 7 + 64
    assert spec["preprocessing"]["size"] == {"shortest_edge": 256}  # checkpoint, not default
    assert spec["preprocessing"]["crop_size"] == {"height": 224, "width": 224}
    assert spec["preprocessing"]["image_mean"] == [0.485, 0.456, 0.406]
    json.dumps(spec)  # plain values only
    other = ImageEmbedder(dino_reg_dir, device="cpu").space_spec("x")
    assert other["revision"] != spec["revision"] and other["name"] == "x"


def test_default_space_names():
    assert default_space_name("facebook/dinov2-large") == "dinov2_large"
    assert default_space_name("facebook/dinov2-with-registers-large") == "dinov2_with_registers_large"
    assert default_space_name("/models/2024-ckpt/") == "m_2024_ckpt"


def test_unavailable_model_errors_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(ModelUnavailableError, match="config.json"):
        ImageEmbedder(tmp_path, device="cpu")  # an empty directory
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE"):
        ImageEmbedder("sporeprint-test/not-downloaded", device="cpu")
    with pytest.raises(ValueError, match="pooling='max'"):
        ImageEmbedder(tmp_path, pooling="max")


def test_errors_share_one_base():
    assert issubclass(ModelUnavailableError, EmbedderError)
    assert issubclass(ImageDecodeError, EmbedderError)
    assert ImageDecodeError("a.jpg", "missing file").reason == "missing file"


def test_libraries_stay_apart():
    """`import store` loads no image stack; `embedder` loads no other library."""
    code = ("import sys, store; heavy = {'torch', 'PIL', 'transformers'} & set(sys.modules); "
            "assert not heavy, heavy; import embedder; "
            "others = {'heads', 'retrieval', 'sporeprint'} & set(sys.modules); "
            "assert not others, others")
    code_alone = ("import sys, embedder; "
                  "others = {'store', 'heads', 'retrieval', 'sporeprint'} & set(sys.modules); "
                  "assert not others, others")
    root = Path(__file__).resolve().parents[1]
    for snippet in (code, code_alone):
        out = subprocess.run([sys.executable, "-c", snippet], cwd=root, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-1500:]


def test_weights_that_do_not_fit_the_model_are_refused(tmp_path):
    """Renamed or dropped weight names would load as random weights: an error instead."""
    from safetensors.torch import load_file, save_file

    folder = make_model_dir(tmp_path / "renamed", processor=SMALL_PROCESSOR)
    ImageEmbedder(folder, device="cpu")  # the intact checkpoint loads
    weights = load_file(folder / "model.safetensors")
    names = sorted(weights)
    renamed = {("backbone." + k if i % 3 == 0 else k): v for i, (k, v) in enumerate(
        sorted(weights.items()))}
    save_file(renamed, folder / "model.safetensors", metadata={"format": "pt"})
    n = len(range(0, len(names), 3))
    with pytest.raises(ModelUnavailableError) as info:
        ImageEmbedder(folder, device="cpu")
    message = str(info.value)
    assert str(folder) in message and "Dinov2Model" in message
    assert f"{n} missing, {n} unexpected" in message
    assert "\n" not in message

    dropped = make_model_dir(tmp_path / "dropped", processor=SMALL_PROCESSOR)
    save_file({k: v for k, v in weights.items() if not k.startswith("layernorm.")},
              dropped / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelUnavailableError, match="2 missing, 0 unexpected"):
        ImageEmbedder(dropped, device="cpu")
    data = (dropped / "model.safetensors").read_bytes()
    (dropped / "model.safetensors").write_bytes(data[: len(data) // 2])  # truncated copy
    with pytest.raises(ModelUnavailableError, match="cannot load model .*complete weight files"):
        ImageEmbedder(dropped, device="cpu")


def peak_rss_growth_mb(fn) -> tuple[float, object]:
    """Run ``fn()`` while sampling this process's RSS every millisecond."""
    import threading

    import psutil

    proc = psutil.Process()
    start = proc.memory_info().rss
    peak, done = [start], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            done.wait(0.001)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        result = fn()
    finally:
        done.set()
        thread.join()
    return (max(peak[0], proc.memory_info().rss) - start) / 2**20, result


def test_strip_image_bomb_is_refused_with_bounded_memory(tmp_path, small_dir):
    """A 6000x1 PNG of ~100 bytes would be resized to 256 x 1.5 million pixels."""
    strip = tmp_path / "strip.png"
    Image.new("RGB", (6000, 1), (90, 120, 30)).save(strip)
    assert strip.stat().st_size < 200
    wide = tmp_path / "wide.jpg"  # 50:1, the widest accepted
    photo(3, (2500, 50)).save(wide)
    with pytest.raises(ImageDecodeError, match="extreme aspect ratio"):
        load_rgb(strip)
    emb = ImageEmbedder(small_dir, device="cpu")
    emb.preprocess.shortest_edge = 256  # the DINOv2 resize, on the small model's 28px crop
    emb.embed_images([wide])  # warm: buffers of the forward pass exist before measuring
    grown, rows = peak_rss_growth_mb(lambda: emb.embed_images([strip, wide], on_error="nan"))
    assert np.isnan(rows[0]).all() and np.isfinite(rows[1]).all()
    assert grown < 200, f"peak RSS grew by {grown:.0f} MB"


def test_108_megapixel_photo_embeds_within_max_pixels(tmp_path, dino_dir):
    """Pillow's own 89.5 MP limit does not apply: max_pixels decides; big JPEGs are
    decoded at a reduced size (DCT scaling), never in full."""
    path = tmp_path / "phone.jpg"
    Image.new("L", (12000, 9000), 128).save(path, quality=80)  # 108 MP, a few hundred kB
    img = load_rgb(path, min_side=256)
    assert img.mode == "RGB" and img.size == (1500, 1125)  # 1/8 in the DCT, short side >= 4*256
    with pytest.raises(ImageDecodeError, match="image too large"):
        load_rgb(path, max_pixels=100_000_000)
    emb = ImageEmbedder(dino_dir, device="cpu")
    got = emb.embed_images([path])
    want = emb.embed_images([Image.new("RGB", (400, 300), (128, 128, 128))])
    assert np.abs(got - want).max() < 1e-4  # solid grey at any size
    refused = ImageEmbedder(dino_dir, device="cpu", max_pixels=100_000_000)
    assert np.isnan(refused.embed_images([path], on_error="nan")).all()


def test_reduction_only_above_the_threshold_and_close_to_exact(monkeypatch, dino_dir):
    import embedder.images

    emb = ImageEmbedder(dino_dir, device="cpu")
    img = photo(4, (1200, 900))
    exact = emb.embed_images([img])
    assert load_rgb(img, min_side=100).size == (1200, 900)  # below the limit: untouched
    monkeypatch.setattr(embedder.images, "REDUCE_ABOVE_PIXELS", 500_000)
    assert load_rgb(img, min_side=100).size == (600, 450)  # factor 2 keeps 450 >= 4 * 100
    assert load_rgb(img, min_side=256).size == (1200, 900)  # 900 // 1024 < 2: untouched
    monkeypatch.setattr(embedder.images, "REDUCE_MARGIN", 1)
    reduced = emb.embed_images([img])  # 900 // 256 = 3 -> 400x300 before the exact resize
    assert not np.array_equal(reduced, exact)
    cos = (reduced * exact).sum() / np.linalg.norm(reduced) / np.linalg.norm(exact)
    assert cos > 0.99


def test_a_worker_that_dies_after_sending_chunks_costs_only_its_image(tmp_path, small_dir):
    """A worker that sent chunks the main process has not read yet and then dies: those
    chunks' shared memory went with it; they are decoded again, not lost or fatal."""
    paths = []
    for i in range(24):
        paths.append(tmp_path / f"{i}.jpg")
        photo(i, (64, 48)).save(paths[-1], quality=90)
    items = paths[:17] + [_KillsItsProcess(after=0.5)] + paths[17:]
    emb = ImageEmbedder(small_dir, device="cpu")
    batches = emb.iter_batches(items, batch_size=4, workers=2)
    got = [next(batches)]
    # the workers run ahead; the first one sends its second chunk, then dies in its third
    time.sleep(2.0)
    got += list(batches)
    positions = np.concatenate([b.positions for b in got])
    assert sorted(positions.tolist()) == [i for i in range(len(items)) if i != 17]
    assert np.concatenate([b.failed_positions for b in got]).tolist() == [17]


class _LostOnce(ImageItems):
    """Decoded images whose chunk cannot be received the first time (the symptom of a
    worker dying while its shared memory is fetched): ``EOFError`` in the main
    process, once, marked by a file so that a new process decodes normally."""

    def __init__(self, *args, marker: Path, lost: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.marker, self.lost = marker, lost

    def __getitem__(self, k):
        if int(self.positions[k]) == self.lost and not self.marker.exists():
            self.marker.touch()
            raise EOFError
        return super().__getitem__(k)

    def subset(self, positions):
        return _LostOnce(self.items, self.preprocess, self.max_pixels, self.draft_size,
                         positions, self.min_side, marker=self.marker, lost=self.lost)


def test_a_chunk_lost_in_transfer_is_decoded_again(tmp_path):
    images = [photo(i, (64, 48)) for i in range(20)]
    dataset = _LostOnce(images, lambda img: torch.from_numpy(np.asarray(img).copy()), 10**9,
                        marker=tmp_path / "lost", lost=9)
    chunks = list(decode_chunks(dataset, chunk=4, workers=2))
    positions = torch.cat([c[0] for c in chunks]).tolist()
    assert sorted(positions) == list(range(20)) and not any(c[2] for c in chunks)
    assert (tmp_path / "lost").exists()


class _Recorded(list):
    """A list of images that remembers which positions were read (decoded)."""

    def __init__(self, items):
        super().__init__(items)
        self.read = set()

    def __getitem__(self, i):
        self.read.add(i)
        return super().__getitem__(i)


def test_first_batch_does_not_wait_for_an_extra_chunk(small_dir):
    """The first batch comes back once the next batch's chunk is decoded (its forward
    runs while the previous batch's results are copied back), not one chunk later;
    a short last batch and every image still come back."""
    items = _Recorded([photo(i, (64, 48)) for i in range(10)])
    emb = ImageEmbedder(small_dir, device="cpu")
    batches = emb.iter_batches(items, batch_size=4, workers=0)
    first = next(batches)
    assert first.positions.tolist() == [0, 1, 2, 3] and items.read == set(range(8))
    rest = list(batches)
    assert [b.positions.tolist() for b in rest] == [[4, 5, 6, 7], [8, 9]]


class _KillsItsProcess:
    """An item whose decoding ends the process (after ``after`` seconds), as the OOM
    killer would."""

    def __init__(self, after: float = 0.0):
        self.after = after

    def __fspath__(self):
        time.sleep(self.after)
        os._exit(3)

    def __str__(self):
        return "kills-its-process"


def test_a_dead_decoding_process_costs_only_its_image(tmp_path, small_dir):
    paths = []
    for i in range(14):
        paths.append(tmp_path / f"{i}.jpg")
        photo(i, (64, 48)).save(paths[-1], quality=90)
    items = paths[:9] + [_KillsItsProcess()] + paths[9:]
    emb = ImageEmbedder(small_dir, device="cpu")
    batches = list(emb.iter_batches(items, batch_size=4, workers=2))
    failed = np.concatenate([b.failed_positions for b in batches])
    reasons = [r for b in batches for r in b.reasons]
    assert failed.tolist() == [9] and reasons == [
        "decoding process died (e.g. killed for lack of memory) (exit code 3)"]
    positions = np.concatenate([b.positions for b in batches])
    vectors = np.concatenate([b.vectors for b in batches if len(b.positions)])
    assert sorted(positions.tolist()) == [i for i in range(len(items)) if i != 9]
    want = emb.embed_images([items[i] for i in positions])
    assert np.abs(vectors - want).max() < 1e-5


def test_device_side_preprocessing_is_close_to_the_exact_path(tmp_path, dino_dir, capsys):
    """Opt-in fast mode: resize/crop/normalise as tensor ops; near, not bit-identical."""
    from embedder.preprocess import DevicePreprocess

    exact = ImageEmbedder(dino_dir, device="cpu")
    fast = ImageEmbedder(dino_dir, device="cpu", fast_preprocess=True)
    assert isinstance(fast.preprocess, DevicePreprocess)
    sizes = [(300, 400), (400, 300), (256, 256), (999, 257), (120, 90), (640, 480)]
    images = [photo(20 + i, size) for i, size in enumerate(sizes)]
    worst = 0.0
    for img in images:
        want = exact.preprocess.normalise(exact.preprocess(img)[None])
        got = fast.preprocess.batch([fast.preprocess(img)], torch.device("cpu"))
        assert got.shape == want.shape == (1, 3, 224, 224)
        step = 1 / 255 / 0.224  # one 8-bit level, normalised
        worst = max(worst, float((got - want).abs().max()) / step)
    a, b = exact.embed_images(images), fast.embed_images(images, batch_size=4)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    with capsys.disabled():
        print(f"\ndevice-side preprocessing: max pixel deviation {worst:.1f} levels, "
              f"1 - min cosine {1 - cosine.min():.1e}")
    assert cosine.min() >= 0.999
    assert not np.array_equal(a, b)  # really another path
    assert fast.space_spec()["preprocessing"]["device_resize"] is True
    assert "device_resize" not in exact.space_spec()["preprocessing"]
    # through worker processes: images keep their own sizes until the device
    paths = []
    for i, img in enumerate(images[:3]):
        paths.append(tmp_path / f"fast{i}.png")
        img.save(paths[-1])
    batches = list(fast.iter_batches(paths, batch_size=2, workers=1))
    got = np.concatenate([x.vectors for x in batches])
    assert np.abs(got - b[:3]).max() < 1e-5

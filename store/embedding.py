"""Image embeddings from DINOv2 (or any ``transformers`` image backbone).

:class:`ImageEmbedder` loads a checkpoint with ``AutoModel`` and its own
preprocessing config with ``AutoImageProcessor`` (PIL backend, the way DINOv2
was trained). :func:`embed_store` embeds every image of a feature store that
has no vector yet in a space: files are decoded and preprocessed in DataLoader
worker processes, batched to the model, and written in transactional chunks so
an interrupted run resumes with no image missing or duplicated.

Example:
    >>> emb = ImageEmbedder("facebook/dinov2-large", pooling="cls")   # doctest: +SKIP
    >>> emb.embed_images(["a.jpg", "b.jpg"]).shape                    # doctest: +SKIP
    (2, 1024)
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from store.errors import StoreError
from store.images import DEFAULT_MAX_PIXELS, ImageDecodeError, load_rgb

logger = logging.getLogger(__name__)

POOLINGS = ("cls", "cls+mean")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Backbones whose token 0 is a CLS token, followed by `num_register_tokens` registers.
_CLS_TOKEN_MODELS = {"dinov2", "dinov2_with_registers", "vit", "vit_msn"}
# Processors whose pipeline is resize (shortest edge or fixed) -> centre crop -> rescale ->
# normalise; the fast path reproduces them bit for bit.
_FAST_PROCESSORS = {"BitImageProcessor", "CLIPImageProcessor", "ViTImageProcessor"}


class ModelUnavailableError(StoreError):
    """The model weights or processor config could not be loaded."""


@dataclass
class EmbedReport:
    """What one :func:`embed_store` run did.

    ``skipped`` counts images without a ``file_path`` (ingest them with
    ``--images DIR``) plus vectors another writer stored first.
    """

    space: str
    embedded: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return (self.embedded + self.failed) / self.seconds if self.seconds > 0 else 0.0


def is_offline() -> bool:
    """True when the Hugging Face offline switches are set."""
    flags = (os.environ.get(v, "") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(f.strip().lower() in ("1", "true", "yes", "on") for f in flags)


def default_space_name(model_id: str) -> str:
    """``facebook/dinov2-large`` -> ``dinov2_large``; a local dir -> its folder name."""
    base = Path(str(model_id).rstrip("/")).name.lower()
    name = re.sub(r"[^a-z0-9]+", "_", base).strip("_") or "model"
    return name if name[0].isalpha() else f"m_{name}"


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use --device cpu")
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not one of auto, cpu, cuda")
    return torch.device(device)


def _resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _weights_revision(model_id: str) -> str:
    """Hub snapshot commit, else sha256 over the weight files of a local directory."""
    path = Path(model_id)
    if not path.is_dir():
        from transformers.utils import cached_file

        config_path = Path(cached_file(model_id, "config.json", local_files_only=True))
        if "snapshots" in config_path.parts:
            return "commit:" + config_path.parts[config_path.parts.index("snapshots") + 1]
        path = config_path.parent
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pt"))
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 22), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


class FastPreprocess:
    """The checkpoint processor's resize and centre crop (same PIL calls), returning
    uint8 (H, W, 3); rescale and normalise happen on the model's device through a
    256-entry lookup table computed with the processor's own float arithmetic, so the
    result is bit-identical to the processor's ``pixel_values`` at a quarter of the
    bytes moved between processes."""

    def __init__(self, processor: Any):
        size = processor.size
        self.resample = int(processor.resample)
        self.shortest_edge = size.get("shortest_edge") if processor.do_resize else None
        self.fixed_size = (
            (size["height"], size["width"])
            if processor.do_resize and self.shortest_edge is None else None
        )
        crop = processor.crop_size if processor.do_center_crop else None
        self.crop = (crop["height"], crop["width"]) if crop else None
        values = np.arange(256).astype(np.float64)
        if processor.do_rescale:
            values = values * processor.rescale_factor
        values = values.astype(np.float32)
        lut = np.stack([values] * 3)
        if processor.do_normalize:
            mean = np.asarray(processor.image_mean, dtype=np.float32).reshape(3, 1)
            std = np.asarray(processor.image_std, dtype=np.float32).reshape(3, 1)
            lut = (lut - mean) / std
        self.lut = torch.from_numpy(np.ascontiguousarray(lut, dtype=np.float32))  # (3, 256)

    @classmethod
    def supports(cls, processor: Any) -> bool:
        """True when the processor only does resize/crop/rescale/normalise the way we do."""
        name = type(processor).__name__.removesuffix("Pil").removesuffix("Fast")
        if name not in _FAST_PROCESSORS or getattr(processor, "do_pad", False):
            return False
        size = processor.size if processor.do_resize else None
        crop = processor.crop_size if processor.do_center_crop else None
        if size is not None:
            if size.get("longest_edge") or size.get("max_height"):
                return False
            if not size.get("shortest_edge") and not (size.get("height") and size.get("width")):
                return False
        if crop is not None:
            if size is None:
                return False
            smallest = size.get("shortest_edge") or min(size["height"], size["width"])
            if size.get("shortest_edge") and smallest < max(crop["height"], crop["width"]):
                return False  # the processor would zero-pad; keep its own path
            if size.get("height") and (size["height"] < crop["height"] or size["width"] < crop["width"]):
                return False
        return len(getattr(processor, "image_mean", ())) == 3

    def __call__(self, img: Image.Image) -> torch.Tensor:
        if self.shortest_edge is not None:
            w, h = img.size
            short, long = (w, h) if w <= h else (h, w)
            new_long = int(self.shortest_edge * long / short)
            new_w, new_h = (self.shortest_edge, new_long) if w <= h else (new_long, self.shortest_edge)
            img = img.resize((new_w, new_h), resample=self.resample)
        elif self.fixed_size is not None:
            img = img.resize((self.fixed_size[1], self.fixed_size[0]), resample=self.resample)
        if self.crop is not None:
            ch, cw = self.crop
            w, h = img.size
            top, left = (h - ch) // 2, (w - cw) // 2
            img = img.crop((left, top, left + cw, top + ch))
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) on any device -> float32 (B, 3, H, W) pixel values."""
        if self.lut.device != x.device:  # once: a pageable copy per batch would stall the stream
            self.lut = self.lut.to(x.device)
        offsets = torch.arange(0, 768, 256, device=x.device)
        flat = self.lut.reshape(-1)[x.long() + offsets]  # (B, H, W, 3)
        return flat.permute(0, 3, 1, 2).contiguous()


class ProcessorPreprocess:
    """The checkpoint's own processor, one image at a time -> float32 (3, H, W)."""

    def __init__(self, processor: Any):
        self.processor = processor

    def __call__(self, img: Image.Image) -> torch.Tensor:
        out = self.processor(images=img, return_tensors="np")["pixel_values"][0]
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


class _ImageItems(Dataset):
    """Decodes and preprocesses one image; failures come back as a reason string."""

    def __init__(self, items: Sequence, preprocess, max_pixels: int, draft_size=None):
        self.items = items
        self.preprocess = preprocess
        self.max_pixels = max_pixels
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        item = self.items[i]
        if item is None:
            return i, None, "no file path recorded for this image"
        try:
            img = load_rgb(item, max_pixels=self.max_pixels, draft_size=self.draft_size)
            return i, self.preprocess(img), None
        except ImageDecodeError as exc:
            return i, None, exc.reason
        except Exception as exc:  # a bad file must never stop a run of thousands
            return i, None, f"preprocessing failed: {type(exc).__name__}: {exc}"


def _mark_last(iterable):
    """Yield (is_last, item) pairs."""
    it = iter(iterable)
    try:
        prev = next(it)
    except StopIteration:
        return
    for item in it:
        yield False, prev
        prev = item
    yield True, prev


def _collate(batch):
    good = [(i, x) for i, x, _ in batch if x is not None]
    failed = [(i, reason) for i, x, reason in batch if x is None]
    positions = torch.tensor([i for i, _ in good], dtype=torch.int64)
    pixels = torch.stack([x for _, x in good]) if good else torch.empty(0)
    return positions, pixels, failed


@dataclass
class EmbeddedBatch:
    """Positions (into the input sequence) and vectors of one batch, plus failures."""

    positions: np.ndarray  # int64 (b,)
    vectors: np.ndarray  # float32 (b, d)
    failed_positions: np.ndarray  # int64 (f,)
    reasons: list[str]


class ImageEmbedder:
    """A frozen image backbone plus its checkpoint's preprocessing.

    ``pooling="cls"`` is the CLS token after the final LayerNorm; ``"cls+mean"``
    concatenates it with the mean of the patch tokens (registers excluded).
    Backbones without a CLS token (e.g. ``ResNetModel``) use ``pooler_output``
    and record pooling ``"pooler"``.

    Example:
        >>> emb = ImageEmbedder("facebook/dinov2-small", device="cpu")   # doctest: +SKIP
        >>> emb.dim, emb.space_spec().name                               # doctest: +SKIP
        (384, 'dinov2_small')
    """

    def __init__(
        self,
        model: str | os.PathLike,
        pooling: str = "cls",
        device: str = "auto",
        dtype: str = "auto",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        preprocess: str = "fast",
        draft: bool = False,
        autocast: bool = False,
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r} is not one of {', '.join(POOLINGS)}")
        if preprocess not in ("fast", "processor"):
            raise ValueError(f"preprocess={preprocess!r} is not one of fast, processor")
        self.model_id = str(Path(model).resolve()) if Path(model).is_dir() else str(model)
        self.device = _resolve_device(device)
        self.dtype = _resolve_dtype(dtype, self.device)
        self.max_pixels = max_pixels
        self.draft = draft
        # Half-precision weights run every op in `dtype`; autocast keeps float32 weights and
        # runs norms/softmax in float32 (safer numerics, ~20% slower on an H100).
        self.autocast = autocast and self.dtype != torch.float32
        self.model, self.processor = self._load(self.model_id)
        config = self.model.config
        if config.model_type in _CLS_TOKEN_MODELS:
            self.pooling = pooling
            self.num_prefix_tokens = 1 + int(getattr(config, "num_register_tokens", 0) or 0)
        elif pooling == "cls+mean":
            raise ValueError(
                f"pooling='cls+mean' needs a ViT-style backbone with a CLS token; "
                f"{type(self.model).__name__} has none. Use --pooling cls (its pooled output)"
            )
        else:
            self.pooling = "pooler"
            self.num_prefix_tokens = 0
        if preprocess == "fast" and FastPreprocess.supports(self.processor):
            self.preprocess = FastPreprocess(self.processor)
        else:
            if preprocess == "fast":
                logger.info("%s: using the processor itself for preprocessing",
                            type(self.processor).__name__)
            self.preprocess = ProcessorPreprocess(self.processor)
        self.dim = int(self._embed_pixels(self._dummy_batch()).shape[1])
        self._revision: str | None = None

    # -- loading -----------------------------------------------------------------------
    def _load(self, model_id: str):
        import transformers
        from transformers import AutoImageProcessor, AutoModel

        # The PIL backend resizes exactly like the pipelines DINOv2 was trained with.
        pil = ({"backend": "pil"} if int(transformers.__version__.split(".")[0]) >= 5
               else {"use_fast": False})
        local = Path(model_id).is_dir()
        offline = is_offline()
        kwargs = {"local_files_only": True} if (offline or local) else {}
        try:
            processor = AutoImageProcessor.from_pretrained(model_id, **pil, **kwargs)
            model = AutoModel.from_pretrained(model_id, **kwargs)
        except (OSError, ValueError) as exc:
            if local:
                fix = "check that the directory holds config.json, the weights and preprocessor_config.json (save_pretrained writes them)"
            elif offline:
                fix = ("download it first (e.g. `hf download " + model_id + "`) on a machine with "
                       "network access, pass a local directory with --model, or unset HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE")
            else:
                fix = "check the model id, your network, or download the weights and pass the local directory with --model"
            raise ModelUnavailableError(f"cannot load model {model_id!r}: {exc}. Fix: {fix}") from exc
        model.eval().to(self.device)
        if self.dtype != torch.float32 and not self.autocast:
            model.to(self.dtype)
        return model, processor

    @property
    def revision(self) -> str:
        if self._revision is None:
            self._revision = _weights_revision(self.model_id)
        return self._revision

    def preprocessing_config(self) -> dict:
        """The checkpoint processor's settings as JSON-able values."""
        conf = {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in self.processor.to_dict().items()
                if not k.startswith("_") and v is not None}
        conf["backend"] = "pil"
        if self.draft:
            conf["jpeg_draft"] = True
        return conf

    def space_spec(self, name: str | None = None):
        """The ``store.EmbeddingSpace`` describing vectors made by this embedder."""
        from store.spaces import EmbeddingSpace

        return EmbeddingSpace(
            name=name or default_space_name(self.model_id),
            model_id=self.model_id,
            dim=self.dim,
            pooling=self.pooling,
            dtype=str(self.dtype).removeprefix("torch."),
            revision=self.revision,
            preprocessing=self.preprocessing_config(),
        )

    # -- the model -----------------------------------------------------------------------
    def _dummy_batch(self) -> torch.Tensor:
        return self.preprocess(Image.new("RGB", (64, 48), (120, 90, 60))).unsqueeze(0)

    @torch.inference_mode()
    def _embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed batch (uint8 (B,H,W,3) from the fast path, or float32
        (B,3,H,W)) -> float32 (B, d) on the model's device."""
        x = pixels.to(self.device, non_blocking=True)
        if x.dtype == torch.uint8:
            x = self.preprocess.normalise(x)
        if not self.autocast:
            x = x.to(self.dtype)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.autocast):
            out = self.model(pixel_values=x)
        if self.pooling == "pooler":
            if getattr(out, "pooler_output", None) is None:
                raise ValueError(f"{type(self.model).__name__} returns no pooler_output; "
                                 "use a DINOv2/ViT checkpoint or one with a pooled output")
            return out.pooler_output.flatten(1).float()  # (B, C, 1, 1) -> (B, C)
        tokens = out.last_hidden_state  # (B, 1 + registers + patches, D)
        cls = tokens[:, 0]
        if self.pooling == "cls":
            return cls.float()
        patches = tokens[:, self.num_prefix_tokens:]
        return torch.cat([cls, patches.mean(dim=1)], dim=1).float()

    # -- batches -------------------------------------------------------------------------
    def _draft_size(self):
        if not (self.draft and isinstance(self.preprocess, FastPreprocess)):
            return None
        edge = self.preprocess.shortest_edge or max(self.preprocess.fixed_size or (0,))
        return (edge, edge) if edge else None

    def iter_batches(
        self,
        items: Sequence,
        batch_size: int = 64,
        workers: int = 0,
        progress: bool = False,
    ) -> Iterator[EmbeddedBatch]:
        """Embed paths or PIL images; yields batches in input order.

        Decoding runs in ``workers`` DataLoader processes (0 = in this process).
        On CUDA the host copy of batch i overlaps the forward pass of batch i+1.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if workers < 0:
            raise ValueError(f"workers={workers} must be >= 0")
        cuda = self.device.type == "cuda"
        # Workers decode small chunks (short tail at the end of a run, even load across
        # workers); chunks are moved to the device as they come and joined there.
        chunk = batch_size if workers == 0 else max(1, min(batch_size, 32))
        loader = DataLoader(
            _ImageItems(items, self.preprocess, self.max_pixels, self._draft_size()),
            batch_size=chunk,
            shuffle=False,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=cuda,
            prefetch_factor=4 if workers > 0 else None,
        )
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(items), unit="img", smoothing=0.1, dynamic_ncols=True)
        pending = None  # the previous batch, whose host copy may still be in flight
        gathered: list[tuple[torch.Tensor, torch.Tensor]] = []
        failures: list[tuple[int, str]] = []
        count = 0
        try:
            for last, (positions, pixels, failed) in _mark_last(loader):
                if len(positions):
                    gathered.append((positions, pixels.to(self.device, non_blocking=True)))
                    count += len(positions)
                failures.extend(failed)
                if count < batch_size and not last:
                    continue
                current = self._launch(gathered, failures, cuda)
                gathered, failures, count = [], [], 0
                if pending is not None:
                    yield self._finish(pending, bar)
                pending = current
            if pending is not None:
                yield self._finish(pending, bar)
        finally:
            if bar is not None:
                bar.close()

    def _launch(self, gathered, failures, cuda: bool):
        """Start the forward pass of one model batch; returns what _finish needs."""
        if not gathered:
            return torch.empty(0, dtype=torch.int64), None, None, failures
        positions = torch.cat([p for p, _ in gathered])
        pixels = gathered[0][1] if len(gathered) == 1 else torch.cat([x for _, x in gathered])
        vectors = self._embed_pixels(pixels)
        if not cuda:
            return positions, vectors, None, failures
        host = torch.empty(vectors.shape, dtype=vectors.dtype, pin_memory=True)
        host.copy_(vectors, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return positions, host, event, failures

    @staticmethod
    def _finish(pending, bar) -> EmbeddedBatch:
        positions, vectors, event, failed = pending
        if event is not None:
            event.synchronize()
        vecs = (vectors.numpy() if vectors is not None
                else np.zeros((0, 0), dtype=np.float32))
        if bar is not None:
            bar.update(len(positions) + len(failed))
        return EmbeddedBatch(
            positions=positions.numpy(),
            vectors=vecs,
            failed_positions=np.array([i for i, _ in failed], dtype=np.int64),
            reasons=[r for _, r in failed],
        )

    def embed_images(
        self,
        images: Sequence[str | os.PathLike | Image.Image],
        batch_size: int = 32,
        on_error: str = "raise",
    ) -> np.ndarray:
        """Embed paths or PIL images in memory -> float32 (n, dim).

        ``on_error="raise"`` raises :class:`ImageDecodeError` naming the first bad
        image; ``"nan"`` returns a row of NaN for it instead.
        """
        if on_error not in ("raise", "nan"):
            raise ValueError(f"on_error={on_error!r} is not one of raise, nan")
        out = np.full((len(images), self.dim), np.nan, dtype=np.float32)
        for batch in self.iter_batches(list(images), batch_size=batch_size, workers=0):
            if len(batch.failed_positions) and on_error == "raise":
                pos = int(batch.failed_positions[0])
                name = images[pos] if not isinstance(images[pos], Image.Image) else f"images[{pos}]"
                raise ImageDecodeError(str(name), batch.reasons[0])
            if len(batch.positions):
                out[batch.positions] = batch.vectors
        return out


def default_workers(device: torch.device) -> int:
    """Decoder processes: all spare cores beside a GPU; a few beside a CPU model."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    if device.type == "cuda":
        return max(1, min(cores - 1, 32))
    return max(1, cores // 4)


def embed_store(
    fs,
    embedder: ImageEmbedder,
    space_name: str | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    chunk_size: int = 2048,
    progress: bool = True,
) -> EmbedReport:
    """Embed every image of ``fs`` with no vector and no recorded failure in the space.

    Vectors and failures are committed every ``chunk_size`` images, so a run killed
    at any moment and started again stores each image exactly once.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")
    space = fs.ensure_space(embedder.space_spec(space_name))
    pending = fs.pending_images(space.name)
    ids = pending.column("image_id").to_numpy().astype(np.int64)
    paths = pending.column("file_path").to_pylist()
    report = EmbedReport(space=space.name)
    no_path = np.array([p is None for p in paths], dtype=bool)
    report.skipped = int(no_path.sum())
    if report.skipped:
        logger.warning("%d images have no file_path (ingest them with --images DIR); skipped",
                       report.skipped)
    ids, paths = ids[~no_path], [p for p in paths if p is not None]
    workers = default_workers(embedder.device) if workers is None else workers
    logger.info("embedding %d images into space %r (%s, batch %d, %d workers)",
                len(ids), space.name, embedder.device, batch_size, workers)

    start = time.perf_counter()
    buf_ids: list[np.ndarray] = []
    buf_vecs: list[np.ndarray] = []
    buf_failed: list[np.ndarray] = []
    buf_reasons: list[str] = []

    def flush() -> None:
        if buf_ids:
            chunk_ids = np.concatenate(buf_ids)
            added = fs.add_embeddings(space.name, chunk_ids, np.concatenate(buf_vecs))
            report.embedded += int(added)
            report.skipped += len(chunk_ids) - int(added)
        if buf_failed:
            failed_ids = np.concatenate(buf_failed)
            fs.record_embedding_failures(space.name, failed_ids, list(buf_reasons))
            report.failed += len(failed_ids)
        logger.info("committed chunk: %d embedded, %d failed so far",
                    report.embedded, report.failed)
        buf_ids.clear(), buf_vecs.clear(), buf_failed.clear(), buf_reasons.clear()

    buffered = 0
    for batch in embedder.iter_batches(paths, batch_size=batch_size, workers=workers,
                                       progress=progress):
        if len(batch.positions):
            buf_ids.append(ids[batch.positions])
            buf_vecs.append(batch.vectors)
        if len(batch.failed_positions):
            buf_failed.append(ids[batch.failed_positions])
            buf_reasons.extend(batch.reasons)
        buffered += len(batch.positions) + len(batch.failed_positions)
        if buffered >= chunk_size:
            flush()
            buffered = 0
    if buffered:
        flush()
    report.seconds = time.perf_counter() - start
    return report

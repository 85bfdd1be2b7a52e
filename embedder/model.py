"""Image embeddings from DINOv2 (or any ``transformers`` image backbone).

:class:`ImageEmbedder` loads a checkpoint with ``AutoModel`` and its own
preprocessing config with ``AutoImageProcessor`` (PIL backend, the way DINOv2
was trained). :meth:`ImageEmbedder.iter_batches` decodes and preprocesses files
in DataLoader worker processes and batches them to the model, in input order,
with every file either embedded or reported as a failure with its reason.

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

import numpy as np
import torch
from PIL import Image

from embedder.batches import ImageItems, decode_chunks
from embedder.checkpoint import (
    CLS_TOKEN_MODELS,
    check_checkpoint,
    check_model_type,
    check_processor,
    one_line,
)
from embedder.errors import ImageDecodeError, ModelUnavailableError
from embedder.images import DEFAULT_MAX_PIXELS
from embedder.preprocess import DevicePreprocess, FastPreprocess, ProcessorPreprocess

logger = logging.getLogger(__name__)

POOLINGS = ("cls", "cls+mean")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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


def _checkpoint_files(model_id: str) -> dict:
    """Local paths of a checkpoint's JSON and safetensors files: those of a folder, or of a
    hub checkpoint already in the local cache (None where not available without a download)."""
    folder = Path(model_id)

    def find(name: str) -> Path | None:
        if folder.is_dir():
            return folder / name if (folder / name).is_file() else None
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(model_id, name)
        except Exception:  # an id the hub client does not accept: transformers reports it
            return None
        return Path(found) if isinstance(found, str) else None

    files = {name: find(name) for name in ("config.json", "preprocessor_config.json")}
    single, index = find("model.safetensors"), find("model.safetensors.index.json")
    weights = [single] if single else []
    if index and not single:
        from embedder.checkpoint import read_json

        shards = read_json(index, "weights index")
        names = sorted(set((shards.get("weight_map") or {}).values())) if isinstance(
            shards, dict) else []
        weights = [p for p in (find(n) for n in names if isinstance(n, str)) if p]
        weights = weights if len(weights) == len(names) else []  # partial: transformers says
    files["weights"] = weights
    return files


@dataclass
class EmbeddedBatch:
    """Positions (into the input sequence) and vectors of one batch, plus failures."""

    positions: np.ndarray  # int64 (b,)
    vectors: np.ndarray  # float32 (b, d)
    failed_positions: np.ndarray  # int64 (f,)
    reasons: list[str]


def _check_weights(model_id: str, model, info: dict) -> None:
    """Refuse a checkpoint whose weight names or shapes do not fit the model: the
    weights left out would be random, and so would every vector."""
    prefix_only = model.config.model_type in CLS_TOKEN_MODELS  # the pooler is never used
    missing = [k for k in info.get("missing_keys", ())
               if not (prefix_only and k.startswith("pooler."))]
    unexpected = list(info.get("unexpected_keys", ()))
    mismatched = list(info.get("mismatched_keys", ()))
    if not (missing or unexpected or mismatched):
        return
    parts = [f"{len(missing)} missing", f"{len(unexpected)} unexpected"]
    examples = [f"missing {sorted(missing)[0]!r}"] if missing else []
    examples += [f"unexpected {sorted(unexpected)[0]!r}"] if unexpected else []
    if mismatched:
        parts.append(f"{len(mismatched)} of the wrong shape")
        examples.append(f"wrong shape {mismatched[0][0]!r}")
    raise ModelUnavailableError(
        f"the weights of model {model_id!r} do not match {type(model).__name__}: "
        f"{', '.join(parts)} weight names (e.g. {'; '.join(examples)}); loading it would "
        "leave those weights random. Fix: pass the directory save_pretrained wrote for this "
        "model, or the checkpoint its config.json belongs to")


class ImageEmbedder:
    """A frozen image backbone plus its checkpoint's preprocessing.

    ``pooling="cls"`` is the CLS token after the final LayerNorm; ``"cls+mean"``
    concatenates it with the mean of the patch tokens (registers excluded).
    Backbones without a CLS token (e.g. ``ResNetModel``) use ``pooler_output``
    and record pooling ``"pooler"``.

    Preprocessing is exactly the checkpoint processor's by default (``preprocess="fast"``
    reproduces it bit for bit, ``"processor"`` calls it). ``fast_preprocess=True`` is an
    opt-in mode that resizes and normalises on the model's device (see
    :class:`embedder.preprocess.DevicePreprocess`): less CPU work per image, vectors
    close to but not identical with the exact ones.

    Example:
        >>> emb = ImageEmbedder("facebook/dinov2-small", device="cpu")   # doctest: +SKIP
        >>> emb.dim, emb.space_spec()["name"]                            # doctest: +SKIP
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
        fast_preprocess: bool = False,
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
        if config.model_type in CLS_TOKEN_MODELS:
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
        if fast_preprocess and DevicePreprocess.supports(self.processor):
            self.preprocess = DevicePreprocess(self.processor)
        elif fast_preprocess:
            raise ValueError(
                f"fast_preprocess=True needs a resize + centre-crop processor with bicubic or "
                f"bilinear resampling; {type(self.processor).__name__} of {self.model_id!r} "
                "is not one. Use the default preprocessing")
        elif preprocess == "fast" and FastPreprocess.supports(self.processor):
            self.preprocess = FastPreprocess(self.processor)
        else:
            if preprocess == "fast":
                logger.info("%s: using the processor itself for preprocessing",
                            type(self.processor).__name__)
            self.preprocess = ProcessorPreprocess(self.processor)
        self.dim = int(self.embed_pixels(self._dummy_batch()).shape[1])
        self._revision: str | None = None

    # -- loading -----------------------------------------------------------------------
    def _load(self, model_id: str):
        import transformers
        from safetensors import SafetensorError
        from transformers import AutoImageProcessor, AutoModel

        # The PIL backend resizes exactly like the pipelines DINOv2 was trained with.
        pil = ({"backend": "pil"} if int(transformers.__version__.split(".")[0]) >= 5
               else {"use_fast": False})
        local = Path(model_id).is_dir()
        offline = is_offline()
        kwargs = {"local_files_only": True} if (offline or local) else {}
        check_checkpoint(model_id, _checkpoint_files(model_id))
        try:
            processor = AutoImageProcessor.from_pretrained(model_id, **pil, **kwargs)
            check_processor(processor, None, model_id)
            model, info = AutoModel.from_pretrained(model_id, output_loading_info=True,
                                                    use_safetensors=True, **kwargs)
        except ModelUnavailableError:
            raise
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
            unknown = re.search(r"model type `([^`]*)` but Transformers does not recognize",
                                str(exc))
            if unknown:  # a hub checkpoint not checked before it was downloaded
                check_model_type(unknown.group(1), f"model {model_id!r}")
            if local:
                fix = ("check that the directory holds config.json, complete weight files that "
                       "belong to that config, and preprocessor_config.json (save_pretrained "
                       "writes them)")
            elif offline:
                fix = ("download it first (e.g. `hf download " + model_id + "`) on a machine with "
                       "network access, pass a local directory with --model, or unset "
                       "HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE")
            else:
                fix = ("check the model id, your network, or download the weights and pass the "
                       "local directory with --model")
            raise ModelUnavailableError(f"cannot load model {model_id!r}: {one_line(exc)}. "
                                        f"Fix: {fix}") from exc
        _check_weights(model_id, model, info)
        check_processor(processor, model.config, model_id)  # the patch count, now known
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
        if isinstance(self.preprocess, DevicePreprocess):
            conf["device_resize"] = True
        return conf

    def space_spec(self, name: str | None = None) -> dict:
        """How vectors made by this embedder are described in a feature store: a plain
        dict with name, model_id, revision, dim, pooling, dtype and preprocessing."""
        return {
            "name": name or default_space_name(self.model_id),
            "model_id": self.model_id,
            "revision": self.revision,
            "dim": self.dim,
            "pooling": self.pooling,
            "dtype": str(self.dtype).removeprefix("torch."),
            "preprocessing": self.preprocessing_config(),
        }

    # -- the model -----------------------------------------------------------------------
    def _dummy_batch(self) -> torch.Tensor | list[torch.Tensor]:
        pixels = self.preprocess(Image.new("RGB", (64, 48), (120, 90, 60)))
        return pixels.unsqueeze(0) if self.preprocess.stacks else [pixels]

    def _to_device(self, pixels: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """A collated chunk on the model's device; images of their own sizes (the
        device-side preprocessing) are resized and normalised there."""
        if isinstance(pixels, list):
            return self.preprocess.batch(pixels, self.device)
        return pixels.to(self.device, non_blocking=True)

    @torch.inference_mode()
    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed batch (uint8 (B,H,W,3) from the fast path, float32 (B,3,H,W),
        or a list of uint8 (H,W,3) images for the device-side path) -> float32 (B, d)
        on the model's device."""
        x = self._to_device(pixels)
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
    def draft_size(self) -> tuple[int, int] | None:
        """The size JPEGs are draft-decoded towards (``draft=True`` on the fast path), or
        None to decode in full."""
        if not (self.draft and isinstance(self.preprocess, FastPreprocess)):
            return None
        edge = self.preprocess.shortest_edge or max(self.preprocess.fixed_size or (0,))
        return (edge, edge) if edge else None

    def min_side(self) -> int | None:
        """The side the processor resizes to: images above ``REDUCE_ABOVE_PIXELS`` are
        decoded no smaller than a few times this (see :func:`embedder.load_rgb`)."""
        proc = self.processor
        size = getattr(proc, "size", None) if getattr(proc, "do_resize", True) else None
        if not size:
            return None
        edge = size.get("shortest_edge") or max(size.get("height") or 0, size.get("width") or 0)
        return int(edge) or None

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
        dataset = ImageItems(items, self.preprocess, self.max_pixels, self.draft_size(),
                             min_side=self.min_side())
        chunks = decode_chunks(dataset, chunk, workers, pin_memory=cuda)
        bar = None
        if progress:  # a bar on a terminal; one summary line in a log otherwise
            from tqdm.auto import tqdm

            bar = tqdm(total=len(items), unit="img", smoothing=0.1, dynamic_ncols=True,
                       disable=None)
            started = time.perf_counter()
        pending = None  # the previous batch, whose host copy may still be in flight
        gathered: list[tuple[torch.Tensor, torch.Tensor]] = []
        failures: list[tuple[int, str]] = []
        count = seen = 0
        try:
            # Every item comes back once, so the last chunk is known by count, without
            # waiting for one more chunk to be decoded before the first batch runs.
            for positions, pixels, failed in chunks:
                if len(positions):
                    gathered.append((positions, self._to_device(pixels)))
                    count += len(positions)
                failures.extend(failed)
                seen += len(positions) + len(failed)
                if count < batch_size and seen < len(items):
                    continue
                current = self._launch(gathered, failures, cuda)
                gathered, failures, count = [], [], 0
                if pending is not None:
                    yield self._finish(pending, bar)
                pending = current
            if gathered or failures:  # never left behind, whatever the count said
                current = self._launch(gathered, failures, cuda)
                if pending is not None:
                    yield self._finish(pending, bar)
                pending = current
            if pending is not None:
                yield self._finish(pending, bar)
        finally:
            if bar is not None:
                if bar.disable:
                    seconds = time.perf_counter() - started
                    logger.info("embedding: %d of %d images decoded (failures included) "
                                "in %.1f s", seen, len(items), seconds)
                bar.close()

    def _launch(self, gathered, failures, cuda: bool):
        """Start the forward pass of one model batch; returns what _finish needs."""
        if not gathered:
            return torch.empty(0, dtype=torch.int64), None, None, failures
        positions = torch.cat([p for p, _ in gathered])
        pixels = gathered[0][1] if len(gathered) == 1 else torch.cat([x for _, x in gathered])
        vectors = self.embed_pixels(pixels)
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

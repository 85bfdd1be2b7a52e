"""Checkpoint preprocessing: resize, centre crop, rescale and normalise.

:class:`FastPreprocess` reproduces the checkpoint's own PIL-backend processor bit
for bit for the resize -> centre crop -> rescale -> normalise pipelines (DINOv2's
``BitImageProcessor``, ``ViTImageProcessor``, ``CLIPImageProcessor``), decoding
workers hand uint8 pixels to the model process and the float conversion runs on
the model's device. :class:`ProcessorPreprocess` calls the processor itself, for
every other checkpoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

# Processors whose pipeline is resize (shortest edge or fixed) -> centre crop -> rescale ->
# normalise; the fast path reproduces them bit for bit.
_FAST_PROCESSORS = {"BitImageProcessor", "CLIPImageProcessor", "ViTImageProcessor"}


class FastPreprocess:
    """The checkpoint processor's resize and centre crop (same PIL calls), returning
    uint8 (H, W, 3); rescale and normalise happen on the model's device through a
    256-entry lookup table computed with the processor's own float arithmetic, so the
    result is bit-identical to the processor's ``pixel_values`` at a quarter of the
    bytes moved between processes.

    Exactness holds for every image decoded in full: all images up to
    ``embedder.images.REDUCE_ABOVE_PIXELS`` (64 MP). Larger ones are decoded at a
    reduced size first (see :func:`embedder.load_rgb`), which changes pixels slightly.
    """

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



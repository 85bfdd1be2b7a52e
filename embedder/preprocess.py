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
    uint8 (H, W, 3); rescale and normalise happen on the model's device with the
    processor's own float operations (float64 rescale, float32 normalise), so the
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
        # The processor rescales in float64 and casts to float32, then normalises in
        # float32; normalise() repeats exactly those IEEE operations.
        self.rescale = float(processor.rescale_factor) if processor.do_rescale else None
        self.mean = self.std = None
        if processor.do_normalize:
            self.mean = torch.tensor(processor.image_mean, dtype=torch.float32).view(3, 1, 1)
            self.std = torch.tensor(processor.image_std, dtype=torch.float32).view(3, 1, 1)

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

    stacks = True  # every image comes out the same shape

    def resized_size(self, w: int, h: int) -> tuple[int, int] | None:
        """(width, height) after the resize, or None when the processor does not resize."""
        if self.shortest_edge is not None:
            short, long = (w, h) if w <= h else (h, w)
            new_long = int(self.shortest_edge * long / short)
            return (self.shortest_edge, new_long) if w <= h else (new_long, self.shortest_edge)
        if self.fixed_size is not None:
            return self.fixed_size[1], self.fixed_size[0]
        return None

    def crop_box(self, w: int, h: int) -> tuple[int, int, int, int] | None:
        """(left, top, right, bottom) of the centre crop of a (w, h) image."""
        if self.crop is None:
            return None
        ch, cw = self.crop
        top, left = (h - ch) // 2, (w - cw) // 2
        return left, top, left + cw, top + ch

    def __call__(self, img: Image.Image) -> torch.Tensor:
        size = self.resized_size(*img.size)
        if size is not None:
            img = img.resize(size, resample=self.resample)
        box = self.crop_box(*img.size)
        if box is not None:
            img = img.crop(box)
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) on any device -> float32 (B, 3, H, W) pixel values."""
        x = x.permute(0, 3, 1, 2).contiguous()
        if self.rescale is None:
            x = x.to(torch.float32)
        else:
            x = x.to(torch.float64).mul_(self.rescale).to(torch.float32)
        if self.mean is not None:
            if self.mean.device != x.device:  # once: a pageable copy per batch would stall
                self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
            x.sub_(self.mean).div_(self.std)
        return x


class DevicePreprocess(FastPreprocess):
    """Opt-in fast mode: decoding workers only decode; resize, crop, rescale and
    normalise run as tensor ops on the model's device.

    The resize is ``torch.nn.functional.interpolate`` with ``antialias=True`` (the
    PIL-style filter; bicubic uses PIL's a = -0.5), rounded to 0..255 like PIL's
    8-bit output, so vectors stay very close to the exact path (cosine >= 0.999 in
    the tests) but are not bit-identical: the space records ``device_resize``.
    """

    stacks = False  # images keep their own sizes until they reach the device
    _MODES = {int(Image.Resampling.BICUBIC): "bicubic", int(Image.Resampling.BILINEAR): "bilinear"}

    @classmethod
    def supports(cls, processor: Any) -> bool:
        return super().supports(processor) and int(processor.resample) in cls._MODES

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())  # (H, W, 3)

    def batch(self, images: list[torch.Tensor], device: torch.device) -> torch.Tensor:
        """uint8 (H_i, W_i, 3) images of any sizes -> float32 (B, 3, H, W) on ``device``."""
        mode = self._MODES[self.resample]
        out = []
        for img in images:
            x = img.to(device, non_blocking=True).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
            h, w = x.shape[-2:]
            size = self.resized_size(w, h)
            if size is not None and size != (w, h):
                x = torch.nn.functional.interpolate(x, size=(size[1], size[0]), mode=mode,
                                                    align_corners=False, antialias=True)
                x = x.round_().clamp_(0, 255)
            box = self.crop_box(x.shape[-1], x.shape[-2])
            if box is not None:
                left, top, right, bottom = box
                x = x[..., top:bottom, left:right]
            out.append(x.to(torch.uint8))
        pixels = torch.cat(out).permute(0, 2, 3, 1)  # (B, H, W, 3) uint8
        return self.normalise(pixels)


class ProcessorPreprocess:
    """The checkpoint's own processor, one image at a time -> float32 (3, H, W)."""

    stacks = True

    def __init__(self, processor: Any):
        self.processor = processor

    def __call__(self, img: Image.Image) -> torch.Tensor:
        out = self.processor(images=img, return_tensors="np")["pixel_values"][0]
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))



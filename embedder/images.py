"""Decode photo files into RGB PIL images, or say exactly why not.

Real photo collections hold grayscale scans, CMYK exports, PNGs with alpha,
16-bit TIFF/PNG, phone pictures stored sideways with an EXIF orientation tag,
truncated uploads, empty files and the occasional gigapixel panorama. Every
file either becomes an 8-bit RGB image, upright, or raises
:class:`ImageDecodeError` whose ``reason`` is stored in ``embedding_failures``.

Example:
    >>> from embedder import load_rgb
    >>> img = load_rgb("photos/123-1.JPG")          # doctest: +SKIP
    >>> img.mode
    'RGB'
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from embedder.errors import ImageDecodeError

__all__ = ["DEFAULT_MAX_PIXELS", "ImageDecodeError", "load_rgb", "to_rgb"]

# Larger than any camera sensor (a 200 MP phone is 2e8); a decoded RGB image of this
# size takes 750 MB, so bigger files are refused rather than risking the worker's memory.
DEFAULT_MAX_PIXELS = 250_000_000


def load_rgb(
    source: str | os.PathLike | Image.Image,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Open ``source`` and return an upright 8-bit RGB image.

    ``draft_size`` (width, height) lets the JPEG decoder downscale by 1/2, 1/4
    or 1/8 in the DCT while keeping both sides at least that large: much faster
    for big photos, but not bit-identical to decoding at full size.
    """
    name = str(source) if not isinstance(source, Image.Image) else "<PIL image>"
    if isinstance(source, Image.Image):
        img = source
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ImageDecodeError(name, "missing file") from None
        except OSError as exc:
            raise ImageDecodeError(name, "unreadable file", str(exc)) from None
        if size == 0:
            raise ImageDecodeError(name, "empty file (0 bytes)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(path)
        except UnidentifiedImageError:
            raise ImageDecodeError(name, "not an image or corrupt header") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageDecodeError(name, "image too large", str(exc)) from None
        except OSError as exc:
            raise ImageDecodeError(name, "unreadable file", str(exc)) from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageDecodeError(
            name, "image too large",
            f"{width}x{height} = {width * height} pixels > max_pixels={max_pixels}",
        )
    try:
        if draft_size is not None and img.format == "JPEG":
            img.draft("RGB", draft_size)
        img.load()
        if isinstance(source, Image.Image):
            img = ImageOps.exif_transpose(img)  # a copy: never change the caller's image
        else:
            ImageOps.exif_transpose(img, in_place=True)
        return to_rgb(img)
    except ImageDecodeError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        text = str(exc)
        reason = "truncated file" if "truncated" in text.lower() else "corrupt image data"
        raise ImageDecodeError(name, reason, text) from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    Transparency is composited on white (as the ``transformers`` processors do);
    16/32-bit integer and float images are scaled to 0..255 instead of clipped.
    """
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.uint16)
        return Image.fromarray((arr >> 8).astype(np.uint8), "L").convert("RGB")
    if img.mode == "I":
        arr = np.asarray(img, dtype=np.int64)
        top = 65535 if arr.max(initial=0) > 255 else 255
        arr = np.clip(arr, 0, top) * 255 // top
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        top = 1.0 if arr.max(initial=0.0) <= 1.0 else 255.0
        arr = np.clip(np.nan_to_num(arr) / top * 255.0 + 0.5, 0, 255)
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if "A" in img.getbands() or img.info.get("transparency") is not None:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError as exc:
        raise ImageDecodeError("<image>", "unsupported image mode", img.mode) from exc

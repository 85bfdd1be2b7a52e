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
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from embedder.errors import ImageDecodeError

__all__ = ["DEFAULT_MAX_PIXELS", "MAX_ASPECT_RATIO", "REDUCE_ABOVE_PIXELS", "ImageDecodeError",
           "load_rgb", "to_rgb"]

# Larger than any camera sensor (a 200 MP phone is 2e8); a decoded RGB image of this
# size takes 750 MB, so bigger files are refused rather than risking the worker's memory.
DEFAULT_MAX_PIXELS = 250_000_000
# Longest side / shortest side. A shortest-edge resize scales the long side with the short
# one: a 6000x1 strip resized to a 256-pixel short side would be 1.5 million pixels long
# (1.2 GB as RGB). Panoramas stay far below this.
MAX_ASPECT_RATIO = 50.0
# Images up to this size are decoded in full, so the preprocessing stays exactly that of
# the checkpoint's processor; larger ones (108 and 200 MP phone photos) are decoded at a
# reduced size when the caller says how small they may get (``min_side``).
REDUCE_ABOVE_PIXELS = 64_000_000
# A reduced image keeps its short side at least this many times the size it is resized to.
REDUCE_MARGIN = 4

_PIXEL_LIMIT = threading.Lock()


@contextmanager
def _pil_pixel_limit(max_pixels: int):
    """Pillow's own decompression-bomb limit (89.5 MP by default, or what the program set)
    set to ``max_pixels`` while a file is opened and loaded, so that ``max_pixels`` alone
    decides what is too large."""
    with _PIXEL_LIMIT:
        before = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = before


def load_rgb(
    source: str | os.PathLike | Image.Image,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
    min_side: int | None = None,
    max_aspect_ratio: float = MAX_ASPECT_RATIO,
) -> Image.Image:
    """Open ``source`` and return an upright 8-bit RGB image.

    The header is checked before any pixel is decoded: more than ``max_pixels``
    pixels, or sides further apart than ``max_aspect_ratio``, raise
    :class:`ImageDecodeError`, so memory per image stays bounded.

    ``min_side`` is the short side the caller resizes to. Images above
    :data:`REDUCE_ABOVE_PIXELS` are then decoded smaller, keeping the short side
    at least ``REDUCE_MARGIN * min_side``: JPEGs by 1/2, 1/4 or 1/8 in the DCT
    (``Image.draft``), others by an integer box reduction (``Image.reduce``).
    Images up to that size are decoded in full, pixel for pixel.

    ``draft_size`` (width, height) lets the JPEG decoder downscale by 1/2, 1/4
    or 1/8 in the DCT while keeping both sides at least that large, for every
    JPEG: much faster for big photos, but not bit-identical to decoding at full size.
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
            with warnings.catch_warnings(), _pil_pixel_limit(max_pixels):
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(path)  # reads the header only
        except UnidentifiedImageError:
            raise ImageDecodeError(name, "not an image or corrupt header") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageDecodeError(name, "image too large",
                                   f"{exc} (max_pixels={max_pixels})") from None
        except OSError as exc:
            raise ImageDecodeError(name, "unreadable file", str(exc)) from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageDecodeError(
            name, "image too large",
            f"{width}x{height} = {width * height} pixels > max_pixels={max_pixels}",
        )
    if min(width, height) < 1 or max(width, height) > max_aspect_ratio * min(width, height):
        raise ImageDecodeError(
            name, "extreme aspect ratio",
            f"{width}x{height} is more than {max_aspect_ratio:g}:1; resizing its short side "
            "would make a giant image",
        )
    reduce_to = (REDUCE_MARGIN * min_side if min_side and width * height > REDUCE_ABOVE_PIXELS
                 else None)
    try:
        if img.format == "JPEG" and (draft_size is not None or reduce_to):
            want = draft_size or (reduce_to, reduce_to)
            img.draft("RGB", want)
        # some formats check frame and tile sizes only as they load: max_pixels decides there too
        with warnings.catch_warnings(), _pil_pixel_limit(max_pixels):
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
        if isinstance(source, Image.Image):
            img = ImageOps.exif_transpose(img)  # a copy: never change the caller's image
        else:
            ImageOps.exif_transpose(img, in_place=True)
        if reduce_to:
            img = _box_reduce(img, reduce_to)
        return to_rgb(img)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(name, "image too large",
                               f"{exc} (max_pixels={max_pixels})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        text = str(exc)
        reason = "truncated file" if "truncated" in text.lower() else "corrupt image data"
        raise ImageDecodeError(name, reason, text) from None


def _box_reduce(img: Image.Image, min_short_side: int) -> Image.Image:
    """Shrink by the largest integer factor that keeps the short side >= min_short_side."""
    factor = min(img.size) // min_short_side
    if factor < 2:
        return img
    try:
        return img.reduce(factor)
    except ValueError:  # modes reduce does not take (palette, 1-bit, 16-bit)
        return to_rgb(img).reduce(factor)


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

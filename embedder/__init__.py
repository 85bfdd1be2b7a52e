"""Image embeddings: a frozen ``transformers`` backbone (DINOv2 or another) with its
checkpoint's own preprocessing, robust photo decoding and batched, multi-process
decoding.

>>> from embedder import ImageEmbedder
>>> emb = ImageEmbedder("facebook/dinov2-large", device="cpu")   # doctest: +SKIP
>>> emb.embed_images(["a.jpg"]).shape                             # doctest: +SKIP
(1, 1024)
"""

from .errors import EmbedderError, ImageDecodeError, ModelUnavailableError
from .images import DEFAULT_MAX_PIXELS, load_rgb
from .model import (
    POOLINGS,
    EmbeddedBatch,
    ImageEmbedder,
    default_space_name,
    default_workers,
    is_offline,
)

__all__ = [
    "ImageEmbedder", "EmbeddedBatch", "load_rgb", "EmbedderError", "ImageDecodeError",
    "ModelUnavailableError", "default_space_name", "default_workers", "is_offline",
    "DEFAULT_MAX_PIXELS", "POOLINGS",
]

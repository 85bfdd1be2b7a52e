"""Image embeddings: a frozen ``transformers`` backbone (DINOv2 or another) with its
checkpoint's own preprocessing, robust photo decoding and batched, multi-process
decoding.

>>> from embedder import ImageEmbedder
>>> emb = ImageEmbedder("facebook/dinov2-large", device="cpu")   # doctest: +SKIP
>>> emb.embed_images(["a.jpg"]).shape                             # doctest: +SKIP
(1, 1024)
"""

from __future__ import annotations

import importlib

# Re-exported lazily: ``from embedder.errors import EmbedderError`` (which the CLI does for
# every command) must not load torch.
_EXPORTS = {
    "EmbedderError": "embedder.errors",
    "ImageDecodeError": "embedder.errors",
    "ModelUnavailableError": "embedder.errors",
    "DEFAULT_MAX_PIXELS": "embedder.images",
    "load_rgb": "embedder.images",
    "POOLINGS": "embedder.model",
    "EmbeddedBatch": "embedder.model",
    "ImageEmbedder": "embedder.model",
    "default_space_name": "embedder.model",
    "default_workers": "embedder.model",
    "is_offline": "embedder.model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'embedder' has no attribute {name!r}")

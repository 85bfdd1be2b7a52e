"""The errors of the embedder library; every user-facing one subclasses EmbedderError."""

from __future__ import annotations


class EmbedderError(Exception):
    """Base of the embedder's errors: the message names the bad value and the fix."""


class ModelUnavailableError(EmbedderError):
    """The model weights or processor config could not be loaded, or do not fit the model."""


class ImageDecodeError(EmbedderError):
    """A file could not be turned into an RGB image; ``reason`` is a short stable label."""

    def __init__(self, path: str, reason: str, detail: str = ""):
        self.path = path
        self.reason = reason if not detail else f"{reason}: {detail}"
        super().__init__(f"{path}: {self.reason}")

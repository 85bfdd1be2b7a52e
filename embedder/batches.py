"""Decoding images into preprocessed chunks, in DataLoader worker processes.

Every input item comes back exactly once, in input order: as pixels, or as a
failure with a short reason. A decoding process that dies (killed for memory, a
crash inside a codec) costs the images it was decoding, not the run: the
remaining items are decoded again by fresh workers, those near the failure one
chunk (then one image) at a time in a process of their own, so that only the
image(s) that kill a process are recorded as failures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from embedder.errors import ImageDecodeError
from embedder.images import load_rgb

logger = logging.getLogger(__name__)

PREFETCH = 4  # chunks in flight per worker
DIED = "decoding process died (e.g. killed for lack of memory)"

# (positions int64 (b,), pixels (b, ...), [(position, reason), ...])
Chunk = tuple[torch.Tensor, torch.Tensor, list[tuple[int, str]]]


class ImageItems(Dataset):
    """Decodes and preprocesses ``items[positions[k]]``; failures come back as a reason.

    Returns ``(position, pixels or None, reason or None)`` with the position in ``items``.
    """

    def __init__(self, items: Sequence, preprocess: Callable, max_pixels: int,
                 draft_size: tuple[int, int] | None = None, positions: Sequence[int] | None = None):
        self.items = items
        self.preprocess = preprocess
        self.max_pixels = max_pixels
        self.draft_size = draft_size
        self.positions = range(len(items)) if positions is None else positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, k: int):
        i = int(self.positions[k])
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

    def subset(self, positions: Sequence[int]) -> ImageItems:
        return ImageItems(self.items, self.preprocess, self.max_pixels, self.draft_size, positions)


def collate(batch) -> Chunk:
    good = [(i, x) for i, x, _ in batch if x is not None]
    failed = [(i, reason) for i, x, reason in batch if x is None]
    positions = torch.tensor([i for i, _ in good], dtype=torch.int64)
    pixels = torch.stack([x for _, x in good]) if good else torch.empty(0)
    return positions, pixels, failed


class _WorkerDied(Exception):
    pass


def _loader(dataset: ImageItems, chunk: int, workers: int, pin_memory: bool) -> DataLoader:
    return DataLoader(dataset, batch_size=chunk, shuffle=False, num_workers=workers,
                      collate_fn=collate, pin_memory=pin_memory,
                      prefetch_factor=PREFETCH if workers > 0 else None)


def _iterate(loader: DataLoader) -> Iterator[Chunk]:
    """The loader's chunks; a dead worker raises _WorkerDied from ``next()`` only."""
    it = iter(loader)
    if getattr(it, "_worker_pids_set", False):
        # torch's SIGCHLD handler raises wherever the main process happens to be (inside the
        # forward pass, inside the caller's database commit); without it the iterator's own
        # liveness check reports the death from next(), within a few seconds.
        from torch.utils.data._utils import signal_handling

        signal_handling._remove_worker_pids(id(it))
        it._worker_pids_set = False
    try:
        yield from it
    except RuntimeError as exc:
        text = str(exc)
        if "DataLoader worker" in text and ("exited unexpectedly" in text or "killed" in text):
            raise _WorkerDied(text) from exc
        raise
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def _alone(dataset: ImageItems, positions: Sequence[int], chunk: int,
           pin_memory: bool) -> Iterator[Chunk]:
    """Decode ``positions`` one chunk at a time in a process of its own; a chunk whose
    process dies is retried image by image, and an image whose process dies fails."""
    for start in range(0, len(positions), chunk):
        part = positions[start:start + chunk]
        try:
            yield from list(_iterate(_loader(dataset.subset(part), chunk, 1, pin_memory)))
            continue
        except _WorkerDied:
            pass
        for i in part:
            try:
                yield from list(_iterate(_loader(dataset.subset([i]), 1, 1, pin_memory)))
            except _WorkerDied:
                logger.warning("image %d: %s", i, DIED)
                yield torch.empty(0, dtype=torch.int64), torch.empty(0), [(int(i), DIED)]


def decode_chunks(dataset: ImageItems, chunk: int, workers: int,
                  pin_memory: bool = False) -> Iterator[Chunk]:
    """Chunks of up to ``chunk`` decoded items, in input order, each item exactly once."""
    n = len(dataset)
    if workers == 0:
        yield from _loader(dataset, chunk, 0, pin_memory)
        return
    start = 0
    while start < n:
        rest = dataset.subset(dataset.positions[start:])
        try:
            for out in _iterate(_loader(rest, chunk, workers, pin_memory)):
                start += len(out[0]) + len(out[2])
                yield out
            return
        except _WorkerDied as exc:
            logger.warning("%s; decoding the next images one process at a time", exc)
        # The dead worker held one of the chunks in flight: decode those alone.
        end = min(n, start + chunk * workers * PREFETCH)
        yield from _alone(dataset, dataset.positions[start:end], chunk, pin_memory)
        start = end

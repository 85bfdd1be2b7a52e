"""Decoding images into preprocessed chunks, in DataLoader worker processes.

Every input item comes back exactly once, in input order: as pixels, or as a
failure with a short reason. A decoding process that dies (killed for memory, a
crash inside a codec) costs the images it was decoding, not the run: the
remaining items are decoded again by fresh workers, those near the failure one
chunk (then one image) at a time in a process of their own, so that only the
image(s) that kill a process are recorded as failures.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from embedder.errors import ImageDecodeError
from embedder.images import load_rgb

logger = logging.getLogger(__name__)

PREFETCH = 4  # chunks in flight per worker
LIVENESS_CHECK_S = 0.5
DIED = "decoding process died (e.g. killed for lack of memory)"

# (positions int64 (b,), pixels (b, ...), [(position, reason), ...])
Chunk = tuple[torch.Tensor, torch.Tensor, list[tuple[int, str]]]


class ImageItems(Dataset):
    """Decodes and preprocesses ``items[positions[k]]``; failures come back as a reason.

    Returns ``(position, pixels or None, reason or None)`` with the position in ``items``.
    """

    def __init__(self, items: Sequence, preprocess: Callable, max_pixels: int,
                 draft_size: tuple[int, int] | None = None, positions: Sequence[int] | None = None,
                 min_side: int | None = None):
        self.items = items
        self.preprocess = preprocess
        self.max_pixels = max_pixels
        self.draft_size = draft_size
        self.min_side = min_side
        self.positions = range(len(items)) if positions is None else positions
        self.stack = getattr(preprocess, "stacks", True)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, k: int):
        i = int(self.positions[k])
        item = self.items[i]
        if item is None:
            return i, None, "no file path recorded for this image"
        try:
            img = load_rgb(item, max_pixels=self.max_pixels, draft_size=self.draft_size,
                           min_side=self.min_side)
            return i, self.preprocess(img), None
        except ImageDecodeError as exc:
            return i, None, exc.reason
        except Exception as exc:  # a bad file must never stop a run of thousands
            return i, None, f"preprocessing failed: {type(exc).__name__}: {exc}"

    def subset(self, positions: Sequence[int]) -> ImageItems:
        return ImageItems(self.items, self.preprocess, self.max_pixels, self.draft_size, positions,
                          self.min_side)


def collate(batch, stack: bool = True) -> Chunk:
    """Items -> (positions, pixels, failures); ``stack=False`` keeps pixels as a list of
    tensors of their own sizes."""
    good = [(i, x) for i, x, _ in batch if x is not None]
    failed = [(i, reason) for i, x, reason in batch if x is None]
    positions = torch.tensor([i for i, _ in good], dtype=torch.int64)
    if not stack:
        return positions, [x for _, x in good], failed
    pixels = torch.stack([x for _, x in good]) if good else torch.empty(0)
    return positions, pixels, failed


class _WorkerDied(Exception):
    pass


def _loader(dataset: ImageItems, chunk: int, workers: int, pin_memory: bool) -> DataLoader:
    return DataLoader(dataset, batch_size=chunk, shuffle=False, num_workers=workers,
                      collate_fn=functools.partial(collate, stack=dataset.stack),
                      pin_memory=pin_memory,
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
        if hasattr(it, "_try_get_data"):  # look for dead workers every 0.5 s, not every 5 s
            it._try_get_data = functools.partial(it._try_get_data, timeout=LIVENESS_CHECK_S)
    try:
        yield from it
    except RuntimeError as exc:
        text = str(exc)
        if "DataLoader worker" in text and ("exited unexpectedly" in text or "killed" in text):
            raise _WorkerDied(text) from exc
        raise
    except (EOFError, ConnectionError) as exc:
        # A chunk's shared memory is fetched from the worker that sent it; a worker that
        # dies meanwhile, before torch sees it dead, breaks that connection instead.
        raise _WorkerDied(f"a decoded chunk could not be received from its worker "
                          f"({type(exc).__name__}: {exc})") from exc
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def _decode_in_child(dataset: ImageItems, conn) -> None:
    torch.set_num_threads(1)  # as DataLoader workers do: a forked OpenMP pool can hang
    positions, pixels, failed = collate([dataset[k] for k in range(len(dataset))], dataset.stack)
    arrays = pixels.numpy() if dataset.stack else [x.numpy() for x in pixels]
    conn.send((positions.numpy(), arrays, failed))  # by value, not shared memory
    conn.close()


def _in_own_process(dataset: ImageItems) -> Chunk | str:
    """Decode all of ``dataset`` in a fresh process: its chunk, or why the process died."""
    ctx = multiprocessing.get_context()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_decode_in_child, args=(dataset, send), daemon=True)
    proc.start()
    send.close()
    try:
        while not receive.poll(LIVENESS_CHECK_S):
            if not proc.is_alive() and not receive.poll(0):
                raise EOFError
        positions, pixels, failed = receive.recv()
        pixels = (torch.from_numpy(pixels) if dataset.stack
                  else [torch.from_numpy(x) for x in pixels])
        return torch.from_numpy(positions), pixels, failed
    except EOFError:  # the child died before sending
        proc.join()
        code = proc.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return f"{DIED} ({how})"
    finally:
        receive.close()
        proc.join()


def _alone(dataset: ImageItems, positions: Sequence[int], chunk: int) -> Iterator[Chunk]:
    """Decode ``positions`` one chunk at a time in a process of its own; a chunk whose
    process dies is retried image by image, and an image whose process dies fails."""
    for start in range(0, len(positions), chunk):
        part = positions[start:start + chunk]
        out = _in_own_process(dataset.subset(part))
        if not isinstance(out, str):
            yield out
            continue
        for i in part:
            out = _in_own_process(dataset.subset([i]))
            if isinstance(out, str):
                logger.warning("image %d: %s", i, out)
                out = torch.empty(0, dtype=torch.int64), torch.empty(0), [(int(i), out)]
            yield out


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
        yield from _alone(dataset, dataset.positions[start:end], chunk)
        start = end

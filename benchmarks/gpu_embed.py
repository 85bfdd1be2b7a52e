"""Embedding throughput on a GPU: DINOv2-large-sized backbone, bf16, from JPEG files.

Builds a model with DINOv2-L/14 shapes (hidden 1024, 24 layers, 16 heads,
patch 14; random weights, same FLOPs) from a config, writes a few thousand
300-px JPEGs, and reports images/s for
  (a) model only, on preprocessed tensors already on the GPU, and
  (b) the full embedder path: JPEG decode + preprocessing in DataLoader workers
      -> pinned batches -> model -> float32 vectors on the host,
with the ratio (b)/(a). Needs torch, transformers and Pillow (no DuckDB).

    python benchmarks/gpu_embed.py                # on a GPU machine, < 4 minutes on an H100
    python benchmarks/gpu_embed.py --tiny         # tiny model, 64 images: checks it runs (CPU ok)
    python benchmarks/gpu_embed.py --fast-preprocess   # opt-in resize/normalise on the GPU
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the embedder package needs no DuckDB


def _write_jpeg(args: tuple[str, int, int]) -> None:
    """A photo-like JPEG: smooth colour field plus fine texture, short side 300 px."""
    from PIL import Image

    path, seed, long_side = args
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((long_side, 300), Image.BICUBIC)
    noise = rng.normal(0, 12, (300, long_side, 3))
    arr = np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    img = Image.fromarray(arr)
    if seed % 2:
        img = img.transpose(Image.Transpose.ROTATE_90)  # portrait
    img.save(path, quality=90)


def write_images(folder: Path, n: int, processes: int) -> list[str]:
    rng = np.random.default_rng(0)
    jobs = [(str(folder / f"{i:06d}.jpg"), i, int(rng.integers(300, 451))) for i in range(n)]
    with Pool(processes) as pool:
        pool.map(_write_jpeg, jobs, chunksize=32)
    return [j[0] for j in jobs]


def build_model(folder: Path, tiny: bool, registers: bool) -> None:
    import torch
    from transformers import (
        BitImageProcessor,
        Dinov2Config,
        Dinov2Model,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
    )

    shape = (dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
             if tiny else
             dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096))
    torch.manual_seed(0)
    if registers:
        model = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(
            patch_size=14, image_size=518, num_register_tokens=4, **shape))
    else:
        model = Dinov2Model(Dinov2Config(patch_size=14, image_size=518, **shape))
    model.save_pretrained(folder)
    BitImageProcessor(  # facebook/dinov2-* preprocessor_config.json values
        size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}, resample=3,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model and 64 images")
    parser.add_argument("--images", type=int, default=None, help="number of JPEGs (4096)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=None, help="decoder processes (cores - 1)")
    parser.add_argument("--registers", action="store_true", help="Dinov2WithRegistersModel")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--autocast", action="store_true",
                        help="float32 weights under torch.autocast instead of bf16 weights")
    parser.add_argument("--fast-preprocess", action="store_true",
                        help="resize/normalise on the device (opt-in, not bit-exact)")
    parser.add_argument("--draft", action="store_true", help="JPEG DCT-domain downscaling")
    args = parser.parse_args()

    import torch
    import transformers

    from embedder import ImageEmbedder

    cores = len(os.sched_getaffinity(0))
    n_images = args.images or (64 if args.tiny else 4096)
    workers = args.workers if args.workers is not None else max(1, cores - 1)
    batch = min(args.batch_size, 16) if args.tiny else args.batch_size
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = args.dtype if cuda else "float32"
    name = torch.cuda.get_device_name() if cuda else "CPU (no CUDA device)"
    print(f"device: {name}; torch {torch.__version__}, transformers {transformers.__version__}; "
          f"{cores} cores, {workers} workers, batch {batch}, {dtype}, "
          f"{'device-side' if args.fast_preprocess else 'exact'} preprocessing"
          f"{', JPEG draft' if args.draft else ''}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        paths = write_images(tmp, n_images, processes=max(1, cores))
        build_model(tmp / "model", args.tiny, args.registers)
        emb = ImageEmbedder(tmp / "model", pooling="cls", device=device, dtype=dtype,
                            autocast=args.autocast, fast_preprocess=args.fast_preprocess,
                            draft=args.draft)
        print(f"setup: {n_images} JPEGs + model in {time.perf_counter() - t0:.1f} s; "
              f"dim {emb.dim}, {type(emb.model).__name__}")

        def sync() -> None:
            if cuda:
                torch.cuda.synchronize()

        # (a) model only: one preprocessed batch, already on the device
        from embedder import load_rgb

        pre = [emb.preprocess(load_rgb(p)) for p in paths[:batch]]
        one = emb._to_device(torch.stack(pre) if emb.preprocess.stacks else pre)
        steps = max(2, n_images // batch)
        emb.embed_pixels(one)  # warm-up (kernels, autocast caches)
        sync()
        model_rates = []
        for _ in range(args.repeats):
            sync()
            t = time.perf_counter()
            for _ in range(steps):
                out = emb.embed_pixels(one)
            sync()
            model_rates.append(steps * batch / (time.perf_counter() - t))
        assert out.shape == (batch, emb.dim)

        # (c) decoding + preprocessing alone, same DataLoader settings
        from torch.utils.data import DataLoader

        from embedder.batches import ImageItems, collate

        decode_rates = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            items = ImageItems(paths, emb.preprocess, emb.max_pixels, emb.draft_size(),
                               min_side=emb.min_side())
            loader = DataLoader(items, batch_size=32, num_workers=workers,
                                collate_fn=functools.partial(collate, stack=items.stack),
                                pin_memory=cuda, prefetch_factor=4)
            done = sum(len(pos) for pos, _, _ in loader)
            decode_rates.append(done / (time.perf_counter() - t))

        # (b) full path from files
        for _ in emb.iter_batches(paths[: batch * 2], batch_size=batch, workers=workers):
            pass  # warm-up
        full_rates = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            done = 0
            for b in emb.iter_batches(paths, batch_size=batch, workers=workers):
                done += len(b.positions)
                assert np.isfinite(b.vectors).all()
            full_rates.append(done / (time.perf_counter() - t))
            assert done == n_images

    model_rate = statistics.median(model_rates)
    full_rate = statistics.median(full_rates)
    print(f"(a) model only, preprocessed tensors on device: {model_rate:,.0f} img/s "
          f"(median of {args.repeats})")
    print(f"(c) decode + preprocess only, {workers} workers:  "
          f"{statistics.median(decode_rates):,.0f} img/s")
    print(f"(b) full path, JPEG files -> host vectors:       {full_rate:,.0f} img/s "
          f"(median of {args.repeats})")
    print(f"ratio (b)/(a): {full_rate / model_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""End-to-end embedding throughput on CPU against the model alone.

Times `embed_store` (JPEG files -> decode + preprocess in DataLoader workers ->
model -> vectors committed to a DuckDB store) and, in the same run, the model's
forward pass alone on the same images already preprocessed into tensors.
Runs the two interleaved, repeat by repeat, and prints images/s of both (medians),
their ratio (target >= 0.85) and the load average while they ran.

    python benchmarks/bench_embed.py --small
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_jpegs(folder: Path, n: int) -> list[Path]:
    """Photo-like 300-px JPEGs (smooth colour field plus texture)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        long_side = int(rng.integers(300, 451))
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(coarse).resize((long_side, 300), Image.BICUBIC), float)
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        path = folder / f"{100000 + i}-1.JPG"
        Image.fromarray(img).save(path, quality=90)
        paths.append(path)
    return paths


def build_model(folder: Path) -> None:
    """A small ViT-S/14-like DINOv2 (hidden 192, 6 layers) with the DINOv2 processor config."""
    import torch
    from transformers import Dinov2Config, Dinov2Model
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=192, num_hidden_layers=6, num_attention_heads=3,
                             intermediate_size=768, patch_size=14, image_size=224)
                ).save_pretrained(folder)
    BitImageProcessorPil(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                         resample=3, image_mean=[0.485, 0.456, 0.406],
                         image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)


def make_store(path: Path, images: list[Path]) -> None:
    from store import FeatureStore

    meta = path.with_suffix(".csv")
    with open(meta, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["observationID", "image_path", "class_id"])
        for p in images:
            w.writerow([int(p.stem.split("-")[0]), p.name, 0])
    with FeatureStore(path) as fs:
        fs.ingest_metadata(meta, role="train", images_dir=images[0].parent)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer images, finishes in < 1 min")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="default: embedder's")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    n = args.images or (64 if args.small else 512)
    repeats = args.repeats or (2 if args.small else 3)

    import torch

    from embedder import ImageEmbedder, default_workers, load_rgb
    from sporeprint.embedding import embed_store
    from store import FeatureStore

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = write_jpegs(tmp / "img", n)
        build_model(tmp / "model")
        emb = ImageEmbedder(tmp / "model", device="cpu", dtype="float32")
        workers = default_workers(emb.device) if args.workers is None else args.workers
        print(f"{n} JPEGs, DINOv2 hidden 192 x 6 layers @224, batch {args.batch_size}, "
              f"{workers} workers, {torch.get_num_threads()} torch threads")

        pixels = torch.stack([emb.preprocess(load_rgb(p)) for p in images])
        batches = list(torch.split(pixels, args.batch_size))
        emb.embed_pixels(batches[0])  # warm-up

        def model_only() -> float:
            t = time.perf_counter()
            for b in batches:
                emb.embed_pixels(b)
            return n / (time.perf_counter() - t)

        def end_to_end(r: int) -> float:
            store = tmp / f"s{r}.duckdb"
            make_store(store, images)
            with FeatureStore(store) as fs:
                t = time.perf_counter()
                report = embed_store(fs, emb, "bench", batch_size=args.batch_size,
                                     workers=workers, chunk_size=256, progress=False)
                rate = n / (time.perf_counter() - t)
            assert report.embedded == n, report
            return rate

        # Interleaved, so that a change in the machine's load hits both measures alike;
        # the ratio is also taken per pair, and its median reported.
        model_rates, e2e_rates, loads = [], [], [os.getloadavg()[0]]
        for r in range(repeats):
            model_rates.append(model_only())
            e2e_rates.append(end_to_end(r))
            loads.append(os.getloadavg()[0])

    model_rate, e2e_rate = statistics.median(model_rates), statistics.median(e2e_rates)
    print(f"model only (preprocessed tensors): {model_rate:8.1f} img/s  (median of {repeats})")
    print(f"embed_store (JPEG -> stored vector): {e2e_rate:6.1f} img/s  (median of {repeats})")
    pairs = [e / m for e, m in zip(e2e_rates, model_rates, strict=True)]
    print(f"ratio end-to-end / model-only: {e2e_rate / model_rate:.2f} of the medians, "
          f"{statistics.median(pairs):.2f} median of the {repeats} interleaved pairs "
          f"({', '.join(f'{x:.2f}' for x in pairs)})  (target >= 0.85)")
    print(f"load average (1 min) during the runs: {min(loads):.2f}-{max(loads):.2f} on "
          f"{os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Embed every image of a store that has no vector yet in an embedding space.

Loads a DINOv2 checkpoint (or any transformers image backbone) from a hub id or a
local directory, with the preprocessing from its own processor config. Images are
decoded in worker processes and written in transactional chunks: interrupt the
command at any time and run it again to finish, with no image missing or stored
twice. Unreadable images are recorded in `embedding_failures` with their reason."""

from __future__ import annotations

HELP = "embed the store's images with DINOv2 (or another transformers backbone)"
EXAMPLE = "sporeprint embed --store fungi.duckdb --model facebook/dinov2-large --space dinov2_l"


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="DuckDB store file")
    parser.add_argument("--model", required=True,
                        help="hub id (e.g. facebook/dinov2-large) or local model directory")
    parser.add_argument("--space", default=None,
                        help="embedding space name (default: from the model id, e.g. dinov2_large)")
    parser.add_argument("--pooling", default="cls", choices=["cls", "cls+mean"],
                        help="CLS token (default), or CLS + mean of patch tokens")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where the model runs; auto: cuda when torch sees a GPU, else cpu")
    parser.add_argument("--dtype", default="auto",
                        choices=["auto", "float32", "bfloat16", "float16"],
                        help="auto: bfloat16 on a GPU that has it, else float32")
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding processes (default: spare cores beside a GPU, a few on CPU)")
    parser.add_argument("--chunk-size", type=int, default=2048,
                        help="images per committed transaction (default 2048)")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="refuse larger images (default 250 million pixels)")
    add_ray_arguments(parser)  # a Ray actor's model batch is --batch-size


def add_ray_arguments(parser, scoring: bool = False) -> None:
    """--engine and the Ray options (shared with `score`)."""
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="local: this process (default); ray: a Ray Data pipeline "
                             "(pip install -e .[ray]); see docs/scale-out.md")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)")
    if scoring:
        parser.add_argument("--ray-batch-size", type=int, default=256,
                            help="observations per call in a Ray scoring actor")
    parser.add_argument("--ray-concurrency", type=int, default=None,
                        help="Ray model actors (none given: one per GPU of the cluster, else 1)")
    parser.add_argument("--ray-work-dir", default=None,
                        help="folder for the Ray run's Parquet shards, on storage every node "
                             "mounts (default: beside the store, removed after the run)")


def ray_options(args, batch_size: int):
    from sporeprint.distributed import RayOptions

    return RayOptions(address=args.address, batch_size=batch_size,
                      concurrency=args.ray_concurrency, work_dir=args.ray_work_dir)


def run(args) -> int:
    from embedder import DEFAULT_MAX_PIXELS, ImageEmbedder, default_space_name
    from sporeprint.embedding import embed_store
    from store import FeatureStore

    space = args.space or default_space_name(args.model)
    if args.engine == "ray":
        return _run_ray(args, space)
    with FeatureStore(args.store, create=False) as fs:  # a mistyped store fails before loading
        embedder = ImageEmbedder(args.model, pooling=args.pooling, device=args.device,
                                 dtype=args.dtype,
                                 max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS)
        print(f"model {embedder.model_id} ({type(embedder.model).__name__}, dim {embedder.dim}, "
              f"pooling {embedder.pooling}) on {embedder.device} in "
              f"{str(embedder.dtype).removeprefix('torch.')} -> space {space!r}")
        report = embed_store(fs, embedder, space, batch_size=args.batch_size,
                             workers=args.workers, chunk_size=args.chunk_size)
        reasons = fs.embedding_failure_reasons(report.space) if report.failed else []
    print(f"space {report.space}: embedded {report.embedded}, failed {report.failed}, "
          f"skipped {report.skipped} in {report.seconds:.1f} s "
          f"({report.images_per_second:.1f} img/s)")
    if report.failed:
        for row in reasons:
            print(f"  failures recorded in this space: {row['n']} x {row['reason']}")
    return 0


def _run_ray(args, space: str) -> int:
    from sporeprint.distributed import embed_store_ray
    from store import FeatureStore

    with FeatureStore(args.store, create=False) as fs:
        report = embed_store_ray(fs, args.model, space, pooling=args.pooling, dtype=args.dtype,
                                 max_pixels=args.max_pixels,
                                 options=ray_options(args, args.batch_size))
        reasons = fs.embedding_failure_reasons(report.space) if report.failed else []
    print(f"space {report.space} (Ray): embedded {report.embedded}, failed {report.failed}, "
          f"skipped {report.skipped} in {report.seconds:.1f} s "
          f"({report.images_per_second:.1f} img/s)")
    for row in reasons:
        print(f"  failures recorded in this space: {row['n']} x {row['reason']}")
    return 0

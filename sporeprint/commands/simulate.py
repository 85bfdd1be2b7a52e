"""Write a simulated FungiCLEF-like dataset: DF20 train CSV, DF21 val CSV, a 2024-style
test CSV without labels plus its truth file, per-image embeddings as Parquet and,
with --images, small species-dependent JPEGs. The data is a simulation, not real
observations; the same seed always gives the same files."""

from __future__ import annotations

HELP = "write a simulated DF20/DF21-style dataset (metadata, embeddings, optional JPEGs)"
EXAMPLE = "sporeprint simulate --out sim --scale small --images"


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--scale", default="small", choices=["small", "medium", "full"],
                        help="small: a few thousand observations; full: DF20-sized (~296k images)")
    parser.add_argument("--classes", type=int, default=None,
                        help="keep N known classes (default: the scale's, 200 / 600 / 1604); "
                             "DF20's share of them poisonous, each with an edible look-alike")
    parser.add_argument("--poisonous-species", type=int, default=None,
                        help="poisonous species among them, 0..49 (default: DF20's ~3%%, "
                             "at least 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the simulation, 0 or more")
    parser.add_argument("--dim", type=int, default=1024, help="embedding dimension, 2..4096")
    parser.add_argument("--images", action="store_true", help="also write JPEGs under OUT/images")
    parser.add_argument("--image-size", type=int, default=96,
                        help="side of the square JPEGs, 16..1024 pixels (with --images)")
    parser.add_argument("--difficulty", action="store_true",
                        help="also measure the kNN baseline (top-1 with and without metadata)")


def run(args) -> int:
    from sporeprint.simulator.simulate import (
        SimConfig,
        check_image_size,
        simulate,
        write_simulation,
    )

    config = SimConfig(scale=args.scale, classes=args.classes, seed=args.seed, dim=args.dim,
                       images=args.images, poisonous_species=args.poisonous_species)
    config.resolved()  # every setting checked before any work
    check_image_size(args.image_size)
    print(f"simulating scale={args.scale} seed={args.seed} ...")
    sim = simulate(config)
    paths = write_simulation(sim, args.out, image_size=args.image_size, progress=True)
    species = sim.species
    print(f"{sim.class_ids.size} known classes ({sim.poisonous_class_ids.size} poisonous), "
          f"{species.num_rows - sim.class_ids.size} unknown species")
    for role, s in sim.summary().items():
        print(f"  {role:5s} {s['observations']:>8,} observations {s['images']:>8,} images   "
              f"unknown {s['unknown_share']:6.1%}   poisonous {s['poisonous_share']:6.1%}")
    if args.difficulty:
        from sporeprint.simulator.difficulty import knn_baseline

        r = knn_baseline(sim, max_queries=2000)
        print(f"kNN baseline on {r['observations']} known val observations: top-1 "
              f"{r['knn_top1']:.1%}, with metadata {r['knn_metadata_top1']:.1%}, metadata alone "
              f"{r['metadata_top1']:.1%}")
    for name, path in paths.items():
        print(f"  {name:10s} {path}")
    return 0

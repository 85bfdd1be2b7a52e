"""Build a FAISS index over one embedding space of a store and save it beside the store
(in STORE.indexes/SPACE-KIND-WHERE/) with a manifest of its image ids, so that a
later search can tell when the store changed and the index must be rebuilt."""

from __future__ import annotations

from store import SELECTIONS

HELP = "build (or inspect) the FAISS look-alike index of an embedding space"
EXAMPLE = (
    "sporeprint index build --store fungi.duckdb --space sim --kind hnsw\n"
    "sporeprint index info --store fungi.duckdb --space sim --kind hnsw"
)
ACTIONS = {
    "build": ("build and save an index",
              "Build a FAISS index of --space over the --where selection and save it with a "
              "manifest\nof its image ids (in STORE.indexes/SPACE-KIND-WHERE/ unless --dir). "
              "`sporeprint search`\nuses it while it is fresh; build again after the store "
              "changes.",
              "sporeprint index build --store fungi.duckdb --space sim --kind hnsw --where train"),
    "update": ("add the selection's new vectors to a saved index, without a rebuild",
               "Grow the saved index of --space, --kind and --where to the selection's vectors\n"
               "now: add the images it lacks (a scored batch, new photos) and remove those that\n"
               "left the selection (HNSW cannot remove: rebuild it). The manifest records the\n"
               "growth; `index info` says when a rebuild would pay off.",
               "sporeprint index update --store fungi.duckdb --space sim --kind exact"),
    "info": ("show a saved index's manifest, whether it is stale, and whether a rebuild pays off",
             "Print the manifest of the saved index of --space, --kind and --where (its kind,\n"
             "parameters, image count and checksum, vectors added since the build) and say\n"
             "whether it is up to date with the store and whether a rebuild would pay off; a\n"
             "stale or missing index is an error naming the `index update` or `index build` to run.",
             "sporeprint index info --store fungi.duckdb --space sim --kind hnsw --where train"),
}

KINDS = ["exact", "hnsw", "ivf_flat", "ivf_pq"]


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, (text, description, example) in ACTIONS.items():
        p = sub.add_parser(action, help=text, description=description,
                           epilog=f"example:\n  {example}", formatter_class=parser.formatter_class)
        p.add_argument("--store", required=True, help="DuckDB store file")
        p.add_argument("--space", required=True, help="embedding space name")
        p.add_argument("--kind", default="auto", choices=["auto", *KINDS],
                       help="auto: the kind planned for the selection's size (exact for small "
                            "stores, HNSW, IVF-PQ past millions)")
        p.add_argument("--where", default="all", choices=SELECTIONS,
                       help="which observations' images: a role, a split part, or a fold's "
                            "training set")
        p.add_argument("--dir", default=None,
                       help="index directory (default: STORE.indexes/SPACE-KIND-WHERE/)")


def run(args) -> int:
    import json
    import time

    from sporeprint.indexing import build_index, index_dir, load_index, planned_kind, update_index
    from store import FeatureStore

    with FeatureStore(args.store, read_only=True, create=False) as fs:
        if args.kind == "auto":
            args.kind, why = planned_kind(fs, args.space, args.where)
            print(f"planned index kind: {args.kind} ({why})")
        directory = args.dir or index_dir(args.store, args.space, args.kind, args.where)
        if args.action == "info":
            index = load_index(fs, args.space, args.kind, args.where, directory)
            print(json.dumps(index.manifest, indent=2))
            print("up to date")
            pays, why = index.rebuild_advice()
            print(f"{'a rebuild would pay off' if pays else 'no rebuild needed'}: {why}")
            return 0
        if args.action == "update":
            t0 = time.perf_counter()
            index, added, removed = update_index(fs, args.space, args.kind, args.where, directory)
            pays, why = index.rebuild_advice()
            print(f"added {added:,} vectors, removed {removed:,}, {time.perf_counter() - t0:.1f} s "
                  f"-> {directory} ({len(index):,} vectors)")
            print(f"{'a rebuild would pay off' if pays else 'no rebuild needed'}: {why}")
            return 0
        print(f"building {args.kind} index of space {args.space!r} ({args.where}) ...")
        t0 = time.perf_counter()
        index = build_index(fs, args.space, args.kind, args.where, directory)
    print(f"{len(index):,} vectors, dim {index.dim}, {time.perf_counter() - t0:.1f} s -> {directory}")
    return 0

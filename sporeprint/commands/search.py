"""Find the observations that look most like a query: an observation in the store
(the mean of its image vectors; the observation itself is left out), a photo
(embedded with the space's model) or a vector saved with numpy (.npy). Results
are observations ranked by their best image's cosine similarity. Filters are
applied before ranking, so k hits come back whenever k observations match."""

from __future__ import annotations

HELP = "look-alike search: the k most similar observations, with metadata filters"


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="DuckDB store file")
    parser.add_argument("--space", default=None,
                        help="embedding space (default: the store's only space)")
    parser.add_argument("--kind", default="exact", choices=["exact", "hnsw", "ivf_flat", "ivf_pq"])
    parser.add_argument("--where", default="all",
                        help="selection the index was built on (default all)")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--observation", type=int, help="observation id in the store")
    query.add_argument("--image", help="path of a photo")
    query.add_argument("--vector-file", help=".npy file with one vector (d,) or (1, d)")
    parser.add_argument("-k", type=int, default=10, help="number of observations (default 10)")
    f = parser.add_argument_group("filters")
    f.add_argument("--species")
    f.add_argument("--genus")
    f.add_argument("--family")
    f.add_argument("--poisonous", choices=["yes", "no"])
    f.add_argument("--date-from", help="YYYY-MM-DD")
    f.add_argument("--date-to", help="YYYY-MM-DD")
    f.add_argument("--near", help="LAT,LON (with --radius-km)")
    f.add_argument("--radius-km", type=float)
    f.add_argument("--role", choices=["train", "val", "test", "new"])
    f.add_argument("--split", choices=["p1", "p2", "test"])
    parser.add_argument("--format", choices=["table", "json"], default="table")


def _filters(args):
    from sporeprint.indexing import SearchFilters

    near = None
    if args.near:
        try:
            lat, lon = (float(v) for v in args.near.split(","))
        except ValueError:
            raise ValueError(f"--near {args.near!r} is not LAT,LON; e.g. --near 55.7,12.5") from None
        near = (lat, lon)
    poisonous = None if args.poisonous is None else args.poisonous == "yes"
    return SearchFilters(species=args.species, genus=args.genus, family=args.family,
                         poisonous=poisonous, date_from=args.date_from, date_to=args.date_to,
                         near=near, radius_km=args.radius_km, role=args.role, split=args.split)


def _query(fs, space, args):
    import numpy as np

    from sporeprint.indexing import observation_query

    if args.observation is not None:
        return observation_query(fs, space, args.observation), [args.observation]
    if args.vector_file:
        v = np.load(args.vector_file)
        if v.ndim == 2 and v.shape[0] == 1:
            v = v[0]
        if v.ndim != 1:
            raise ValueError(f"--vector-file {args.vector_file} holds shape {v.shape}; save one vector (d,)")
        return v.astype(np.float32)[None, :], None
    from embedder import ImageEmbedder

    spec = fs.get_space(space)
    embedder = ImageEmbedder(spec.model_id, pooling=spec.pooling)
    return embedder.embed_images([args.image]).astype(np.float32), None


def run(args) -> int:
    import json

    from sporeprint.cli import CommandError
    from sporeprint.indexing import find_lookalikes, load_index
    from store import FeatureStore

    if args.k <= 0:
        raise CommandError(f"-k {args.k} must be a positive number of observations")
    filters = _filters(args)
    with FeatureStore(args.store, read_only=True) as fs:
        space = args.space
        if space is None:
            names = fs.sql("SELECT space FROM embedding_spaces ORDER BY 1").column(0).to_pylist()
            if len(names) != 1:
                raise CommandError(f"pass --space (the store has {', '.join(names) or 'no spaces'})")
            space = names[0]
        index = load_index(fs, space, args.kind, args.where)
        query, exclude = _query(fs, space, args)
        if query.shape[1] != index.dim:
            raise CommandError(f"query vector has dim {query.shape[1]}, space {space!r} has {index.dim}")
        hits = find_lookalikes(fs, index, query, k=args.k, filters=filters,
                               exclude_observations=exclude)[0]
    rows = hits.to_pylist()
    if args.format == "json":
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print("no observation matches the filters")
        return 0
    print(f"{'#':>3} {'observation':>12} {'score':>6} {'species':30} {'poison':6} {'date':10} place")
    for r in rows:
        place = ", ".join(str(x) for x in (r["locality"], r["country_code"]) if x) or "-"
        print(f"{r['rank']:>3} {r['observation_id']:>12} {r['score']:6.3f} "
              f"{str(r['species'] or '-')[:30]:30} {'YES' if r['poisonous'] else 'no':6} "
              f"{str(r['date'] or '-'):10} {place}")
    if len(rows) < args.k:
        print(f"only {len(rows)} observations match the filters")
    return 0

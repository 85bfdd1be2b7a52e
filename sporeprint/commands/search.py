"""Find the observations that look most like a query: an observation in the store
(the mean of its image vectors; the observation itself is left out), a photo
(embedded with the space's model) or a vector saved with numpy (.npy). Results
are observations ranked by their best image's cosine similarity; a photo or a
vector is compared with training observations unless --role says otherwise. Filters are
applied before ranking, so k hits come back whenever k observations match.
No prebuilt index is needed: without a fresh saved index of --kind/--where, an
exact index is built in memory for the search. Without --space, a store with several
spaces is searched in the space of its default trained run. The store is opened
read-only."""

from __future__ import annotations

from store import PARTS, ROLES, SELECTIONS

MAX_K = 10_000  # hits a search returns at most
HELP = "look-alike search: the k most similar observations, with metadata filters"
EXAMPLE = (
    "sporeprint search --store fungi.duckdb --observation 2510150926 -k 5\n"
    "sporeprint search --store fungi.duckdb --image photo.jpg --poisonous yes --near 55.7,12.5 "
    "--radius-km 50"
)


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="DuckDB store file")
    parser.add_argument("--space", default=None,
                        help="embedding space (default: the store's only space, else the space "
                             "of its default trained run; --explain says which)")
    parser.add_argument("--kind", default="auto",
                        choices=["auto", "exact", "hnsw", "ivf_flat", "ivf_pq"],
                        help="index kind; auto plans by the store's size (exact for small "
                             "stores). A fresh saved index (sporeprint index build) is used; "
                             "otherwise an exact one is built in memory")
    parser.add_argument("--where", default="all",
                        choices=SELECTIONS,
                        help="selection the index covers")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--observation", type=int, help="observation id in the store")
    query.add_argument("--image", help="path of a photo")
    query.add_argument("--vector-file", help=".npy file with one vector (d,) or (1, d)")
    parser.add_argument("-k", type=int, default=10, help="number of observations")
    f = parser.add_argument_group("filters")
    f.add_argument("--species", help="only this species (its scientific name)")
    f.add_argument("--genus", help="only this genus")
    f.add_argument("--family", help="only this family")
    f.add_argument("--poisonous", choices=["yes", "no"],
                   help="no: only observations known to be edible (unlabelled ones excluded)")
    f.add_argument("--date-from", help="YYYY-MM-DD")
    f.add_argument("--date-to", help="YYYY-MM-DD")
    f.add_argument("--near", help="LAT,LON (with --radius-km)")
    f.add_argument("--radius-km", type=float, help="distance from --near, in km")
    f.add_argument("--role", choices=["all", *ROLES],
                   help="only observations ingested with this role (default: train for "
                        "--image and --vector-file, whose answer is the labelled training "
                        "observations they resemble; all for --observation)")
    f.add_argument("--split", choices=PARTS, help="a part of the store's current split")
    parser.add_argument("--format", choices=["table", "json"], default="table",
                        help="a text table, or JSON with the hits' metadata")
    parser.add_argument("--explain", action="store_true",
                        help="also print the index used, the filter's selectivity and rows "
                             "returned vs requested (in JSON: the 'search' field)")


def filters_from_args(args) -> dict:
    """Search filters from parsed options (validated by ``store.SearchFilters``)."""
    from sporeprint.errors import CommandError

    near = None
    if args.near:
        try:
            lat, lon = (float(v) for v in args.near.split(","))
        except ValueError:
            raise CommandError(f"--near {args.near!r} is not LAT,LON; e.g. --near 55.7,12.5") from None
        near = (lat, lon)
    out = {"species": args.species, "genus": args.genus, "family": args.family,
           "poisonous": None if args.poisonous is None else args.poisonous == "yes",
           "date_from": args.date_from, "date_to": args.date_to, "near": near,
           "radius_km": args.radius_km, "role": args.role, "split": args.split}
    if args.role is None and (args.image or args.vector_file):
        out["role"] = "train"  # a photo's look-alikes: stored photos of known species
    if out["role"] == "all":
        out["role"] = None
    return {k: v for k, v in out.items() if v is not None}


def run(args) -> int:
    import json

    import numpy as np

    from sporeprint.api import Database
    from sporeprint.errors import CommandError

    if not 0 < args.k <= MAX_K:
        raise CommandError(f"-k {args.k} must be a number of observations from 1 to {MAX_K:,}")
    filters = filters_from_args(args)
    with Database(args.store) as db:
        if args.vector_file:
            search = db.search(vector=np.load(args.vector_file), space=args.space)
        elif args.image:
            search = db.search(image=args.image, space=args.space)
        else:
            search = db.search(observation=args.observation, space=args.space)
        search = search.where(**filters).limit(args.k).using(args.kind, args.where)
        rows = search.to_list()
        info = search.info.to_dict()
    if args.format == "json":
        print(json.dumps({"hits": rows, "search": info} if args.explain else rows,
                         indent=2, default=str))
        return 0
    if args.explain:
        print(f"space {info['space']} ({info['space_why']}); "
              f"index {info['index_kind']} over {info['indexed_images']:,} images "
              f"({info['why']}), searched by {info['search_path']}; filters allow "
              f"{info['allowed_images']:,} ({info['selectivity']:.2%}); "
              f"returned {info['returned'][0]} of {info['requested']} requested")
    if not rows:
        print("no observation matches the filters")
        return 0
    print(f"{'#':>3} {'observation':>12} {'score':>6} {'species':30} {'poison':6} {'date':10} place")
    for r in rows:
        place = ", ".join(str(x) for x in (r["locality"], r["country_code"]) if x) or "-"
        poison = "?" if r["poisonous"] is None else ("YES" if r["poisonous"] else "no")
        print(f"{r['rank']:>3} {r['observation_id']:>12} {r['score']:6.3f} "
              f"{str(r['species'] or '-')[:30]:30} {poison:6} "
              f"{str(r['date'] or '-'):10} {place}")
    if len(rows) < args.k:
        print(f"only {len(rows)} observations match the filters")
    return 0

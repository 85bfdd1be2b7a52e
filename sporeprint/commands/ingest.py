"""Load metadata (DF20 train, DF21 val, FungiCLEF 2023/2024 test; CSV or Parquet) or
precomputed per-image embeddings (Parquet: image_path, embedding) into a store.
Each file is one transaction: a failure changes nothing. Re-ingesting a file
adds nothing; rows that conflict with stored ones are reported, never
overwritten."""

from __future__ import annotations

from store import CLASS_ID_MODES, ROLES

HELP = "ingest metadata CSV/Parquet or precomputed embeddings into a store"
EXAMPLE = (
    "sporeprint ingest --store fungi.duckdb --role train --metadata sim/df20_train.csv\n"
    "sporeprint ingest --store fungi.duckdb --embeddings sim/embeddings_train.parquet --space sim"
)


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True,
                        help="DuckDB store file (created if absent: the only command that "
                             "creates a store besides simulate/demo)")
    parser.add_argument("--metadata", nargs="+", metavar="FILE", help="metadata CSV/Parquet file(s)")
    parser.add_argument("--images", metavar="DIR", help="folder holding the image files")
    parser.add_argument("--role", choices=ROLES,
                        help="train for DF20, val for DF21, test/new for unlabelled batches "
                             "(required with --metadata: there is no default, so rows of unseen "
                             "species never enter training by accident)")
    parser.add_argument("--class-ids", choices=CLASS_ID_MODES, default="auto",
                        help="how the file's class_id values are read: auto (default) checks "
                             "them against the store's species names and the official poison "
                             "list, and refuses a file numbered otherwise; official: they are "
                             "DF20 class ids; species: find each row's class from its species "
                             "name (species the store does not know get -1, poison status "
                             "unknown)")
    parser.add_argument("--embeddings", metavar="FILE", help="Parquet of image_path + embedding")
    parser.add_argument("--space", help="embedding space name for --embeddings (e.g. dinov2_l)")
    parser.add_argument("--model-id", help="model that made the embeddings")


def run(args) -> int:
    from sporeprint.errors import CommandError
    from store import FeatureStore

    if not args.metadata and not args.embeddings:
        raise CommandError("nothing to ingest; pass --metadata FILE and/or --embeddings FILE "
                           "--space NAME")
    if args.metadata and not args.role:
        raise CommandError("--metadata needs --role: train (DF20), val (DF21), test or new "
                           "(unlabelled batches)")
    if args.embeddings and not args.space:
        raise CommandError("--embeddings needs --space NAME (e.g. --space dinov2_l)")
    with FeatureStore(args.store) as fs:
        for path in args.metadata or []:
            report = fs.ingest_metadata(path, role=args.role, images_dir=args.images,
                                        class_ids=args.class_ids)
            print(f"{path}: read {report.read:,}  stored {report.stored:,}  "
                  f"rejected {report.rejected:,} (conflicts {report.conflicts:,})  "
                  f"duplicate {report.duplicate:,}  new observations "
                  f"{report.observations_added:,}")
            if report.image_paths_reduced:
                print(f"  {report.image_paths_reduced:,} absolute image paths reduced to their "
                      "file names")
            if report.classes_by_species:
                print(f"  {report.classes_by_species:,} rows given the class of their species "
                      "name")
            if report.unknown_species_rows:
                print(f"  {report.unknown_species_rows:,} labelled rows name species the "
                      "official list cannot place (no stored species name or poisonous column "
                      "confirms the file's class ids): stored as class_id -1, poison status "
                      "unknown; pass --class-ids official if the file uses DF20 class ids, or "
                      "ingest the DF20 training metadata first and pass --class-ids species")
            for row, reason in report.examples:
                print(f"  row {row}: {reason}")
            if report.rejected > len(report.examples):
                print(f"  ... {report.rejected - len(report.examples):,} more; see "
                      f"`sporeprint sql --store {args.store} \"SELECT * FROM rejects\"`")
        if args.embeddings:
            report = fs.ingest_embeddings(args.embeddings, args.space, model_id=args.model_id)
            print(f"{args.embeddings}: {report}")
    return 0

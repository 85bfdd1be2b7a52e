"""Score a batch of new observations: a metadata CSV (DF20/DF21/FungiCLEF test
format, labels optional) plus either a folder of photos or precomputed
embeddings. Per observation: the species, the poison probability, an "unknown
species" flag and the reason for the answer, decided by the Track 3-optimal
rule so that a possibly poisonous mushroom is never answered "edible" or
"unknown". Writes the store's predictions table (re-scoring a batch replaces
it), a FungiCLEF submission CSV and a richer CSV/Parquet beside it."""

from __future__ import annotations

HELP = "score new observations: species, poison risk, unknown flag"
EXAMPLE = (
    "sporeprint score --store fungi.duckdb --metadata sim/test_2024.csv "
    "--embeddings sim/embeddings_test.parquet --out pred.csv"
)


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="the store (DuckDB file)")
    parser.add_argument("--metadata", required=True, help="metadata CSV/Parquet of the new batch")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder with the batch's photos (embedded with the runs' model)")
    src.add_argument("--embeddings", help="Parquet of precomputed vectors (image_path, embedding)")
    parser.add_argument("--run", default="latest",
                        help="run id(s), comma-separated: fold heads or an ensemble run (see "
                             "`sporeprint sql --store S \"SELECT run_id, kind FROM runs\"`); "
                             "latest: the most recently trained ensemble")
    parser.add_argument("--out", help="submission CSV (default: <metadata stem>.predictions.csv "
                                      "beside the metadata file)")
    parser.add_argument("--batch", help="batch name in the predictions table (default: metadata "
                                        "file stem)")
    parser.add_argument("--rule", choices=["track3", "argmax_unknown", "argmax"], default="track3",
                        help="decision rule (default: track3, the poison-safe expected-cost rule)")
    parser.add_argument("--coverage", type=_level, default=0.90,
                        help="level of each observation's conformal prediction set (default "
                             "0.90; 0: none); an observation whose set holds a poisonous "
                             "species is answered poison risk. Needs heads trained with "
                             "`--calibration holdout`")
    parser.add_argument("--poison-coverage", type=_level, default=0.99,
                        help="level of the second, larger set used only for the poison "
                             "check, fitted on the poisonous calibration observations "
                             "(default 0.99; 0: the set alone)")
    parser.add_argument("--workers", type=int, help="image decoding processes (default: auto)")
    parser.add_argument("--submission-header", default="observation_id",
                        choices=["observation_id", "observationID", "ObservationId"],
                        help="id column name of the submission CSV: observation_id (FungiCLEF "
                             "2024), observationID (the 2023 evaluator), ObservationId")
    from sporeprint.commands.embed import add_ray_arguments

    add_ray_arguments(parser, scoring=True)


def _level(text: str) -> float:
    import argparse

    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not (v == 0.0 or 0.0 < v < 1.0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a level between 0 and 1 (e.g. 0.9), "
                                         "or 0 for none")
    return v


def latest_run(fs) -> list[str]:
    from sporeprint.errors import CommandError

    run_id = fs.default_run()
    if run_id is None:
        raise CommandError(f"store {fs.path} has no trained heads; run `sporeprint train` "
                           "first or pass --run")
    return [run_id]


def run(args) -> int:
    from sporeprint.scoring import score_batch
    from store import FeatureStore

    with FeatureStore(args.store, create=False) as fs:
        run_ids = latest_run(fs) if args.run == "latest" else \
            [r.strip() for r in args.run.split(",") if r.strip()]
        if args.engine == "ray":
            from sporeprint.commands.embed import ray_options
            from sporeprint.distributed import score_batch_ray

            report = score_batch_ray(fs, args.metadata, run_ids, images_dir=args.images,
                                     embeddings=args.embeddings, out=args.out, batch=args.batch,
                                     rule=args.rule,
                                     submission_header=args.submission_header,
                                     coverage=args.coverage,
                                     poison_coverage=args.poison_coverage,
                                     options=ray_options(args, args.ray_batch_size))
            print("\n".join(report.lines()))
            return 0
        report = score_batch(fs, args.metadata, run_ids, images_dir=args.images,
                             embeddings=args.embeddings, out=args.out, batch=args.batch,
                             rule=args.rule, workers=args.workers,
                             submission_header=args.submission_header,
                             coverage=args.coverage, poison_coverage=args.poison_coverage)
    print("\n".join(report.lines()))
    return 0

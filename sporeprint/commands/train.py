"""Train a classifier head (linear, MLP or metadata-fusion transformer) on the
embeddings and encoded metadata of a store, per validation fold. Each fold's
head is saved (model.safetensors + config.json) under STORE.runs/RUN_ID/ and
recorded in the store's runs table; with --fold all the two fold heads are
also scored as an ensemble on the held-out test part. Training ends by fitting
the calibration of what it trained (the ensemble, or the one fold head) and
recording it, so `sporeprint score` can use the runs at once.

Run again with the same settings on unchanged data, it reuses the fold runs that
finished (an interrupted training resumes at the fold it lost) and says which;
--retrain trains every fold again.

The defaults are those of heads.TrainConfig and the head configs, the same as
training from Python (docs/heads.md)."""

from __future__ import annotations

import argparse

HELP = "train classifier heads on a store's folds, record the runs and their calibration"
EXAMPLE = """
  sporeprint train --store fungi.duckdb --space dinov2_l --head mlp --fold all"""


def add_arguments(parser) -> None:
    from heads.config import (
        POISON_MODES,
        SAMPLERS,
        SCHEDULERS,
        SPECIES_LOSSES,
        MLPConfig,
        TrainConfig,
    )

    tc = TrainConfig()
    parser.add_argument("--store", required=True,
                        help="DuckDB store file")
    parser.add_argument("--space", required=True,
                        help="embedding space name")
    parser.add_argument("--head", default="mlp", choices=["mlp", "fusion", "linear"],
                        help="head kind: MLP over [embedding, metadata], metadata-fusion "
                             "transformer, or one linear layer")
    parser.add_argument("--fold", default="all", choices=["1", "2", "all"],
                        help="which validation fold to train; all: both, then their ensemble")
    parser.add_argument("--loss", default=tc.loss, choices=SPECIES_LOSSES,
                        help="species loss (weighted_ce: inverse-frequency weights)")
    parser.add_argument("--poison-weight", type=float, default=tc.poison_weight,
                        help="alpha: weight of the poisonous BCE term")
    parser.add_argument("--poison-mode", default=tc.poison_mode, choices=POISON_MODES,
                        help="BCE on the poison logit or on the poisonous probability mass")
    parser.add_argument("--taxonomy-weight", type=float, default=tc.taxonomy_weight,
                        help="beta: weight of the auxiliary genus and family cross-entropy "
                             "(names from the store's species table); 0 = off")
    parser.add_argument("--sampler", default=tc.sampler, choices=SAMPLERS,
                        help="training batches: shuffled rows, class-balanced, or weighted "
                             "toward the validation class frequencies (val_matched)")
    parser.add_argument("--scheduler", default=tc.scheduler, choices=SCHEDULERS,
                        help="learning-rate schedule (cosine: warm restarts every "
                             "--restart-epochs)")
    parser.add_argument("--restart-epochs", type=int, default=tc.restart_epochs,
                        help="cosine schedule: epochs per cycle before the learning rate "
                             "restarts")
    parser.add_argument("--epochs", type=int, default=tc.epochs,
                        help="most training epochs (the cap; early stopping may end sooner)")
    parser.add_argument("--batch-size", type=int, default=tc.batch_size,
                        help="training rows per step")
    parser.add_argument("--lr", type=float, default=tc.lr,
                        help="AdamW learning rate (chosen on the earlier simulator; not yet "
                             "re-measured on the grounded one, docs/results.md)")
    parser.add_argument("--hidden", type=int, default=MLPConfig.hidden,
                        help="MLP hidden width, --head mlp only (chosen on the earlier "
                             "simulator; not yet re-measured, docs/results.md)")
    parser.add_argument("--unknown-output", action="store_true",
                        help="add an 'unknown species' output trained on unknown (-1) rows")
    parser.add_argument("--patience", type=int, default=tc.patience,
                        help="early stopping after this many epochs without improvement; 0 = off")
    parser.add_argument("--device", default=tc.device, help="auto, cpu or cuda")
    from sporeprint.scoring.settings import (
        CALIBRATION_MODES,
        DEFAULT_CALIBRATION,
        DEFAULT_POISON_SHIFT,
    )

    parser.add_argument("--calibration", default=DEFAULT_CALIBRATION, choices=CALIBRATION_MODES,
                        help="oof: train on all of the validation parts p1/p2 and calibrate "
                             "each head out-of-fold; holdout: keep the calibration slice (one "
                             "in three of p1/p2) out of training and calibrate the deployed "
                             "ensemble on it (docs/results.md measures both)")
    parser.add_argument("--poison-shift", default=DEFAULT_POISON_SHIFT,
                        action=argparse.BooleanOptionalAction,
                        help="apply the fitted poison prior shift when scoring (off: on the "
                             "grounded simulator it raised Track 3 and the poison misses; "
                             "docs/results.md)")
    parser.add_argument("--seed", type=int, default=tc.seed,
                        help="seed of the head's initialisation and batch order")
    parser.add_argument("--retrain", action="store_true",
                        help="train every fold again, even one whose finished run has the same "
                             "settings, split and data (such a run is reused otherwise)")
    parser.add_argument("--out", default=argparse.SUPPRESS,
                        help="runs directory (default: STORE.runs/)")
    parser.set_defaults(interrupt_message=(
        "interrupted: folds finished before the interrupt are saved and recorded in the runs "
        "table; run the same command again to reuse them and train only the rest (the fold "
        "that was training starts from its first epoch)"))


def run(args) -> int:
    import json

    from heads.config import MLPConfig, TrainConfig
    from sporeprint.errors import CommandError
    from sporeprint.scoring.calibration import fit_and_record
    from sporeprint.training import train_folds
    from store import FeatureStore

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         loss=args.loss, poison_weight=args.poison_weight,
                         poison_mode=args.poison_mode, taxonomy_weight=args.taxonomy_weight,
                         sampler=args.sampler, scheduler=args.scheduler,
                         restart_epochs=args.restart_epochs, patience=args.patience,
                         seed=args.seed, device=args.device)
    params: dict = {}
    if args.head == "mlp":
        params["hidden"] = args.hidden
    elif args.hidden != MLPConfig.hidden:
        raise CommandError(f"--hidden applies to --head mlp, not {args.head!r}; drop it")
    if args.unknown_output:
        params["unknown_output"] = True
    folds = [1, 2] if args.fold == "all" else [int(args.fold)]
    with FeatureStore(args.store, create=False) as fs:
        runs = train_folds(fs, args.space, args.head, folds, params, config,
                           out_dir=getattr(args, "out", None), store_path=args.store,
                           calibration=args.calibration, poison_shift=args.poison_shift,
                           reuse=not args.retrain)
        # what `sporeprint score` uses by default: the ensemble, else the (last) fold head
        cal = fit_and_record(fs, [runs[-1].run_id])
    keys = ("accuracy", "macro_f1", "track1", "track2", "track3")
    for r in runs:
        if r.reused:
            what = f"fold {r.fold}" if r.fold is not None else "ensemble"
            print(f"reused {what} run {r.run_id} (same settings and data; --retrain trains "
                  "it again)")
    for r in runs:
        shown = {k: round(r.metrics[k], 4) for k in keys if k in r.metrics}
        shown.update({k: round(r.metrics[k], 4) for k in (f"test_{k}" for k in keys)
                      if k in r.metrics})
        print(f"{r.run_id}\t{r.path}\t{json.dumps(shown)}")
    print(f"calibrated {runs[-1].run_id}\t{cal.summary()}")
    return 0

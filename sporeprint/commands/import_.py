"""Import Parquet into a store. Without --table: a folder written by `sporeprint
export` (every table) is restored into a new, empty store — the store id, splits,
runs and predictions included. With --table: a Parquet file or folder is added to
that table; rows whose key is already stored with the same content are skipped, so
importing twice adds nothing. Every row is checked as ingest checks its rows, in one
transaction: the first broken rule refuses the whole import with one line, and the
store is left as it was (a store file the import created is removed again).
--official-species makes a store's species table the official DF20 poisonous list
again (what a store that disagrees with it is told to run)."""

from __future__ import annotations

from pathlib import Path

HELP = "import Parquet (a whole export, or one table) into a store"
EXAMPLE = "sporeprint import --store copy.duckdb --path export/"


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True,
                        help="DuckDB store file (a whole export needs a new store)")
    parser.add_argument("--table", help="table to insert into (default: restore a whole export)")
    parser.add_argument("--path", help="Parquet file or folder")
    parser.add_argument("--official-species", action="store_true",
                        help="restore the official DF20 poisonous list in the store's species "
                             "table (names are kept)")


def run(args) -> int:
    from sporeprint.errors import CommandError
    from store import FeatureStore

    if args.official_species:
        if args.path or args.table:
            raise CommandError("--official-species takes only --store; import files in a "
                               "separate call")
        with FeatureStore(args.store, create=False, restore_species=True) as fs:
            n = fs.poisonous_class_ids().size
        print(f"the species table of {args.store} is the official DF20 list ({n} poisonous)")
        return 0
    if not args.path:
        raise CommandError("pass --path (a folder written by `sporeprint export`, or with "
                           "--table a Parquet file or folder)")
    store = Path(args.store)
    created = not store.exists()
    try:
        with FeatureStore(store) as fs:  # importing into a new store creates it
            if args.table:
                n = fs.import_parquet(args.table, args.path)
            else:
                added = fs.import_all(args.path)
    except BaseException:
        if created:  # a refused import leaves no store behind
            for leftover in (store, store.with_name(store.name + ".wal")):
                leftover.unlink(missing_ok=True)
        raise
    if args.table:
        print(f"imported {n:,} new rows into {args.table} from {args.path}")
        return 0
    print(f"restored {sum(added.values()):,} rows into {args.store}: " +
          ", ".join(f"{t} {n:,}" for t, n in sorted(added.items())))
    return 0

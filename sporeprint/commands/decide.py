"""Re-decide a scored batch under another cost matrix, from the four numbers stored
with each prediction (best edible and best poisonous species' probabilities, poison
mass, P(unknown)): nothing is recomputed. Prints the answer mix (answers per kind:
species, poison_risk, unknown, prior_only — each kind decided again under the new
costs), how many answers name a poisonous species, how many answers change and,
where the store has labels for the batch, the official scores. Writes a submission
CSV with --out; the stored predictions are left as they are."""

from __future__ import annotations

HELP = "replay a scored batch's decisions under another cost matrix"
EXAMPLE = "sporeprint decide --store demo-run/fungi.duckdb --batch heldout --cost-poisonous-as-edible 1000"


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="DuckDB store file")
    parser.add_argument("--batch", required=True, help="batch name given to `sporeprint score`")
    parser.add_argument("--run", default=None,
                        help="run key of the predictions (default: the one that scored it last)")
    parser.add_argument("--cost-poisonous-as-edible", type=float, default=100.0,
                        help="cost of calling a poisonous mushroom edible or unknown")
    parser.add_argument("--cost-edible-as-poisonous", type=float, default=1.0,
                        help="cost of calling an edible mushroom poisonous")
    parser.add_argument("--cost-wrong", type=float, default=1.0,
                        help="cost of any other wrong answer")
    parser.add_argument("--out", help="write the re-decided submission CSV here")


def run(args) -> int:
    import numpy as np
    import pyarrow.csv as pacsv

    from heads.decision import Costs, answer_mix
    from heads.metrics import fungiclef_scores
    from sporeprint.decisions import redecide
    from sporeprint.errors import CommandError
    from store import FeatureStore

    for name in ("cost_poisonous_as_edible", "cost_edible_as_poisonous", "cost_wrong"):
        if getattr(args, name) < 0:
            raise CommandError(f"--{name.replace('_', '-')} {getattr(args, name)} must be >= 0")
    costs = Costs(poisonous_as_edible=args.cost_poisonous_as_edible,
                  edible_as_poisonous=args.cost_edible_as_poisonous, wrong_answer=args.cost_wrong)
    with FeatureStore(args.store, read_only=True, create=False) as fs:
        preds = fs.batch_predictions(args.batch, args.run)
        poison = fs.poisonous_class_ids()
    new = redecide(preds, costs)
    cls = new.column("class_id").to_numpy()
    mix = answer_mix(new.column("kind"))
    named_poisonous = int(np.isin(cls, poison).sum())
    print(f"batch {args.batch!r}: {new.num_rows} observations re-decided with costs "
          f"poisonous-as-edible {costs.poisonous_as_edible:g}, edible-as-poisonous "
          f"{costs.edible_as_poisonous:g}, other errors {costs.wrong_answer:g}")
    print("  answers: " + ", ".join(f"{k} {v}" for k, v in mix.items()))
    print(f"  naming a poisonous species {named_poisonous}, an edible species "
          f"{int((cls >= 0).sum()) - named_poisonous}")
    print(f"  answers changed from the stored ones: {int(np.sum(new.column('changed')))}")
    truth = preds.column("true_class_id").to_numpy(zero_copy_only=False)
    labelled = ~np.isnan(truth.astype(np.float64))
    if labelled.any():
        s = fungiclef_scores(truth[labelled].astype(np.int64), cls[labelled], poison)
        print(f"  on {int(labelled.sum())} labelled observations: Track 1 {s['track1']:.4f}, "
              f"Track 2 {s['track2']:.4f}, Track 3 {s['track3']:.4f}, "
              f"poisonous called edible/unknown {s['poisonous_as_edible']}")
    if args.out:
        pacsv.write_csv(new.select(["observation_id", "class_id"]), args.out)
        print(f"  wrote {args.out}")
    return 0

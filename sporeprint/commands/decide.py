"""Re-decide a scored batch under another cost matrix, from the four numbers stored
with each prediction (best edible and best poisonous species' probabilities, poison
mass, P(unknown)): nothing is recomputed. Prints the answer mix (answers per kind:
species, poison_risk, unknown, prior_only — each kind decided again under the new
costs), how many answers name a poisonous species, how many answers change and,
where the store has labels for the batch, the official scores. With --coverage /
--poison-coverage the conformal sets, their poison check and the answer rank are made
again at those levels from the ranked options stored with each prediction (as `sporeprint
score --coverage` would give them, without rescoring). Writes a submission CSV with
--out; the stored predictions are left as they are."""

from __future__ import annotations

HELP = "replay a scored batch's decisions under another cost matrix"
EXAMPLE = "sporeprint decide --store demo-run/fungi.duckdb --batch heldout --cost-poisonous-as-edible 1000"


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="DuckDB store file")
    parser.add_argument("--batch", required=True, help="batch name given to `sporeprint score`")
    parser.add_argument("--run", default=None,
                        help="run key of the predictions (default: the one that scored it last)")
    parser.add_argument("--cost-poisonous-as-edible", type=float, default=100.0,
                        help="cost of calling a poisonous mushroom edible or unknown (0..1e12)")
    parser.add_argument("--cost-edible-as-poisonous", type=float, default=1.0,
                        help="cost of calling an edible mushroom poisonous (0..1e12; not 0 "
                        "when the cost above is 0)")
    parser.add_argument("--cost-wrong", type=float, default=1.0,
                        help="cost of any other wrong answer (0..1e12)")
    parser.add_argument("--coverage", type=_level, default=None,
                        help="give the conformal sets again at this level (e.g. 0.8; 0: none) "
                             "from the stored ranked options, as `sporeprint score --coverage` "
                             "would; default: keep the poison check of the levels the batch "
                             "was scored with")
    parser.add_argument("--poison-coverage", type=_level, default=None,
                        help="level of the poison check's set when the sets are given again "
                             "(default 0.99, as for `sporeprint score`; 0: the set alone)")
    parser.add_argument("--out", help="write the re-decided submission CSV here")


def _level(text: str) -> float:
    from sporeprint.commands.score import _level as level

    return level(text)


# Costs are compared as ratios; this cap keeps their sums finite and well conditioned.
MAX_COST = 1e12


def check_costs(args):
    """The options' :class:`~heads.decision.Costs`, or a ``CommandError`` naming the option
    and its range."""
    import math

    from heads.decision import Costs
    from sporeprint.errors import CommandError

    for name in ("cost_poisonous_as_edible", "cost_edible_as_poisonous", "cost_wrong"):
        value = getattr(args, name)
        if not (math.isfinite(value) and 0 <= value <= MAX_COST):
            raise CommandError(f"--{name.replace('_', '-')} {value:g} is outside the valid range "
                               f"0..{MAX_COST:g} (a finite cost; Track 3 uses 100 for "
                               "poisonous-as-edible, 1 for the others)")
    if args.cost_poisonous_as_edible == 0 and args.cost_edible_as_poisonous == 0:
        raise CommandError("--cost-poisonous-as-edible and --cost-edible-as-poisonous cannot both "
                           "be 0: the poison errors need a price to weigh against each other; "
                           "give one of them a cost > 0")
    return Costs(poisonous_as_edible=args.cost_poisonous_as_edible,
                 edible_as_poisonous=args.cost_edible_as_poisonous, wrong_answer=args.cost_wrong)


def check_out(out: str | None) -> None:
    from pathlib import Path

    from sporeprint.errors import CommandError

    if out is None:
        return
    path = Path(out)
    if path.is_dir():
        raise CommandError(f"--out {out} is a directory; give a file name, e.g. "
                           f"{path / 'decided.csv'}")
    if not path.parent.is_dir():
        raise CommandError(f"--out {out}: the folder {path.parent} does not exist; create it or "
                           "write elsewhere")


def run(args) -> int:
    import sys

    import numpy as np
    import pyarrow.csv as pacsv

    from heads.decision import answer_mix
    from heads.metrics import fungiclef_scores
    from sporeprint.decisions import poison_risk_warning, redecide
    from sporeprint.errors import CommandError
    from store import FeatureStore

    costs = check_costs(args)
    check_out(args.out)
    warning = poison_risk_warning(costs)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    replay = None
    with FeatureStore(args.store, read_only=True, create=False) as fs:
        preds = fs.batch_predictions(args.batch, args.run)
        poison = fs.poisonous_class_ids()
        if args.coverage is not None or args.poison_coverage is not None:
            from heads.conformal import DEFAULT_COVERAGE, DEFAULT_POISON_COVERAGE
            from sporeprint.decisions import set_replay

            replay = set_replay(
                fs, preds, DEFAULT_COVERAGE if args.coverage is None else args.coverage,
                DEFAULT_POISON_COVERAGE if args.poison_coverage is None
                else args.poison_coverage)
    new = redecide(preds, costs, replay)
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
    if replay is not None:
        print("  " + _sets_line(new, replay))
    truth = preds.column("true_class_id").to_numpy(zero_copy_only=False)
    labelled = ~np.isnan(truth.astype(np.float64))
    if labelled.any():
        s = fungiclef_scores(truth[labelled].astype(np.int64), cls[labelled], poison)
        print(f"  on {int(labelled.sum())} labelled observations: Track 1 {s['track1']:.4f}, "
              f"Track 2 {s['track2']:.4f}, Track 3 {s['track3']:.4f}, "
              f"poisonous called edible/unknown {s['poisonous_as_edible']}")
    if args.out:
        try:
            pacsv.write_csv(new.select(["observation_id", "class_id"]), args.out)
        except OSError as exc:  # pyarrow's own error for a file that cannot be written
            raise CommandError(f"--out {args.out} cannot be written ({exc})") from None
        print(f"  wrote {args.out}")
    return 0


def _sets_line(new, replay) -> str:
    """The replayed sets in one line: the levels, the sizes and the answer ranks."""
    import numpy as np

    if replay.threshold is None:
        return "no prediction sets (coverage 0)"
    size = new.column("set_size").drop_null().to_numpy()
    if not len(size):
        return "no observation of the batch has a set (every answer is prior-only)"
    ranks = new.column("answer_rank").drop_null().to_pylist()
    line = (f"sets at coverage {replay.coverage}, poison check at "
            f"{replay.poison_coverage or 'the set alone'}: size mean {size.mean():.1f}, median "
            f"{np.median(size):.0f}; answer rank: " +
            ", ".join(f"{r} {ranks.count(r)}" for r in ("species", "genus", "unknown")))
    if replay.note:
        line += f"; {replay.note}"
    return line

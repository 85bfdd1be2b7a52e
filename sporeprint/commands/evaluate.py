"""Score a predictions CSV against a truth CSV with the official FungiCLEF
definitions: accuracy, macro F1, Tracks 1-4 and the poisonous confusion counts.
Both files need an observation id column (observationID or observation_id) and
class_id (-1 = unknown species); only the first row per observation counts."""

from __future__ import annotations

import json

HELP = "score predictions against truth (accuracy, macro F1, Tracks 1-4)"
EXAMPLE = "sporeprint evaluate --predictions pred.csv --truth sim/test_2024_truth.csv"


def add_arguments(parser) -> None:
    parser.add_argument("--predictions", required=True, help="CSV with observation id and class_id")
    parser.add_argument("--truth", required=True, help="CSV with observation id and true class_id")
    parser.add_argument("--format", choices=["table", "json"], default="table",
                        help="a text table, or JSON of every score")
    parser.add_argument("--missing-as-unknown", action="store_true",
                        help="count truth observations without a prediction as 'unknown' "
                             "instead of failing")


def run(args) -> int:
    from sporeprint.evaluation import evaluate_files, format_scores

    scores = evaluate_files(args.predictions, args.truth, args.missing_as_unknown)
    print(json.dumps(scores, indent=2) if args.format == "json" else format_scores(scores))
    return 0

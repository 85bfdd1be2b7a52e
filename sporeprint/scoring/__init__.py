"""Batch scoring: runs -> loaded model -> calibrated, poison-safe decisions -> outputs.

``runs`` (which heads), ``calibration`` (fitted once per set of heads),
``observations`` (per-observation inputs), ``model`` (:class:`ScoringModel`),
``pipeline`` (:func:`score_batch`), ``outputs`` (the predictions table and files).
"""

from sporeprint.scoring.calibration import Calibration
from sporeprint.scoring.model import Decided, ScoringModel
from sporeprint.scoring.outputs import SUBMISSION_HEADERS, predictions_table, write_outputs
from sporeprint.scoring.pipeline import (
           ScoreReport,
           check_embedding_file,
           compare_rules,
           score_batch,
)

__all__ = ["SUBMISSION_HEADERS", "Calibration", "Decided", "ScoreReport", "ScoringModel",
           "check_embedding_file", "compare_rules", "predictions_table", "score_batch",
           "write_outputs"]

"""Batch scoring: runs -> loaded model -> calibrated, poison-safe decisions -> outputs.

``runs`` (which heads), ``calibration`` (fitted by training, read by scoring),
``settings`` (the calibration settings a run records), ``index`` (the training-image
index), ``observations`` (per-observation inputs), ``model`` (:class:`ScoringModel`),
``pipeline`` (:func:`score_batch`), ``outputs`` (the predictions table and files),
``sets`` (conformal prediction sets and the poison check from them),
``rules`` (every decision rule on the same labelled observations).

Names are re-exported lazily, so that the CLI can read ``settings`` without torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Calibration": "sporeprint.scoring.calibration",
    "Decided": "sporeprint.scoring.model",
    "ScoringModel": "sporeprint.scoring.model",
    "SUBMISSION_HEADERS": "sporeprint.scoring.outputs",
    "predictions_table": "sporeprint.scoring.outputs",
    "write_outputs": "sporeprint.scoring.outputs",
    "ScoreReport": "sporeprint.scoring.pipeline",
    "check_embedding_file": "sporeprint.scoring.pipeline",
    "RULE_LABELS": "sporeprint.scoring.rules",
    "RuleComparison": "sporeprint.scoring.rules",
    "compare_rules": "sporeprint.scoring.rules",
    "decide_every_rule": "sporeprint.scoring.rules",
    "score_batch": "sporeprint.scoring.pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sporeprint.scoring' has no attribute {name!r}")

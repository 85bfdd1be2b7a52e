"""PyTorch classifier heads, losses, training, ensembles, metrics and the decision rule.

Names are re-exported lazily so that ``import heads.metrics`` does not load torch.

Example:
    >>> from heads import Classifier, TrainConfig
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "HeadsError": "heads.errors",
    "NotFittedError": "heads.errors",
    "HeadConfig": "heads.config",
    "LinearConfig": "heads.config",
    "MLPConfig": "heads.config",
    "FusionConfig": "heads.config",
    "LinearHead": "heads.modules",
    "MLPHead": "heads.modules",
    "FusionHead": "heads.modules",
    "HeadOutput": "heads.modules",
    "build_head": "heads.modules",
    "make_config": "heads.config",
    "metadata_groups": "heads.modules",
    "SeesawLoss": "heads.losses",
    "FocalLoss": "heads.losses",
    "HeadLoss": "heads.losses",
    "species_loss": "heads.losses",
    "HeadData": "heads.train",
    "TrainConfig": "heads.config",
    "TrainResult": "heads.train",
    "train_head": "heads.train",
    "evaluate": "heads.train",
    "Classifier": "heads.classifier",
    "Ensemble": "heads.classifier",
    "EvalSet": "heads.classifier",
    "SavedHead": "heads.checkpoint",
    "load_head": "heads.checkpoint",
    "save_head": "heads.checkpoint",
    "TemperatureScaler": "heads.calibration",
    "PlattScaler": "heads.calibration",
    "PoisonPrior": "heads.calibration",
    "PoisonFusion": "heads.calibration",
    "conformal": "heads.conformal",
    "Costs": "heads.decision",
    "Decision": "heads.decision",
    "DecisionSummary": "heads.decision",
    "KINDS": "heads.decision",
    "answer_mix": "heads.decision",
    "decide": "heads.decision",
    "decide_summary": "heads.decision",
    "summarise": "heads.decision",
    "aggregate_by_observation": "heads.inference",
    "fungiclef_scores": "heads.metrics",
    "macro_f1_score": "heads.metrics",
    "roc_auc_score": "heads.metrics",
    "topk_accuracy": "heads.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name == "conformal":  # the module itself: fit / predict_sets / threshold
        return importlib.import_module("heads.conformal")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'heads' has no attribute {name!r}")

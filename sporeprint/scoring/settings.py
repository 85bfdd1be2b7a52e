"""The calibration settings a training run records in its config (no torch, so the
CLI shows them as defaults); ``sporeprint.scoring.calibration`` reads them back."""

CALIBRATION_MODES = ("holdout", "oof")
# oof: on the measurement in docs/results.md ("Calibrating what is deployed") the slice
# costs more (training data) than calibrating the ensemble itself gains
DEFAULT_CALIBRATION = "oof"
# the PoisonPrior shift of the calibrated probabilities: on, it lowers the Track 3 rule's
# Track 3 (docs/results.md, "The poison prior shift")
DEFAULT_POISON_SHIFT = True

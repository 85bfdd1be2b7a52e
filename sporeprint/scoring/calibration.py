"""Calibration of a set of trained heads, fitted once on the validation parts.

Out-of-fold: fold 1's head is calibrated on part ``p1`` and fold 2's on ``p2``
(of the split the heads were trained on), so no head sees its own training
rows. The fitted estimators (temperature, the unknown detector, the score ->
P(unknown) mapping and the poison prior shift) keep their own state
(``get_state``/``from_state``); this module only stores those states together
in the store's ``runs`` table (kind ``calibration``) and hands them back.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from heads.calibration import PlattScaler, PoisonPrior, TemperatureScaler
from heads.classifier import Ensemble
from retrieval import OpenSetDetector, VectorIndex
from sporeprint.errors import SporeprintError
from sporeprint.scoring.observations import ObservationScores, observation_scores, uncertainty
from sporeprint.scoring.runs import Member, run_key, split_seed_of
from sporeprint.training import load_rows

log = logging.getLogger(__name__)

KIND = "calibration"
FORMAT = 2


@dataclass
class Calibration:
    """The fitted states, JSON-able; ``metrics`` holds validation quality figures."""

    temperature: dict
    platt: dict
    detector: dict
    poison_prior: dict
    unknown_rate: float
    split_seed: int | None = None
    metrics: dict = field(default_factory=dict)
    format: int = FORMAT

    @cached_property
    def temperature_scaler(self) -> TemperatureScaler:
        return TemperatureScaler.from_state(self.temperature)

    @cached_property
    def platt_scaler(self) -> PlattScaler:
        return PlattScaler.from_state(self.platt)

    @cached_property
    def prior(self) -> PoisonPrior:
        return PoisonPrior.from_state(self.poison_prior)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> Calibration | None:
        """None for a record of another format (it is refitted)."""
        if d.get("format") != FORMAT:
            return None
        return cls(**{k: d[k] for k in ("temperature", "platt", "detector", "poison_prior",
                                        "unknown_rate", "split_seed", "metrics", "format")})

    def species_probs(self, log_probs: np.ndarray, poisonous: np.ndarray,
                      shift: bool = True) -> np.ndarray:
        """Calibrated probabilities over known species: the temperature, then (with
        ``shift``) the poison prior shift between training and the scoring period."""
        p = self.temperature_scaler.transform(log_probs)
        return self.prior.apply(p, poisonous) if shift else p

    def detector_for(self, index: VectorIndex) -> OpenSetDetector:
        return OpenSetDetector.from_state(self.detector, index)

    def unknown_prob(self, scores: np.ndarray) -> np.ndarray:
        return self.platt_scaler.transform(scores)


def known_classes(ensemble: Ensemble) -> np.ndarray:
    return ensemble.classes_[ensemble.classes_ >= 0]


def calibrate(fs, members: list[Member], ensemble: Ensemble, poisonous: np.ndarray,
              index: VectorIndex, space: str, detector_k: int = 10,
              fusion_weight: float = 0.5) -> Calibration:
    """Fit every calibration state on out-of-fold validation predictions.

    ``poisonous`` is the official flag of each known class of ``ensemble``.
    """
    classes = known_classes(ensemble)
    seed = split_seed_of(members)
    parts: list[ObservationScores] = []
    truth: list[np.ndarray] = []
    for m in members:
        if len(members) > 1 and m.fold is None:
            continue
        for fold in ([m.fold] if m.fold in (1, 2) else [1, 2]):
            rows, _ = load_rows(fs, space, fs.fold_observations(fold, seed=seed)["val"])
            if len(rows) == 0:
                continue
            one = Ensemble([m.classifier]) if len(members) > 1 else ensemble
            s = observation_scores(one, rows)
            # re-express the member's columns in the ensemble's class order
            full = np.full((len(s.observation_ids), len(classes)), np.log(1e-12))
            full[:, np.searchsorted(classes, known_classes(one))] = s.log_probs
            parts.append(ObservationScores(s.observation_ids, full, s.queries))
            truth.append(fs.observation_class_ids(s.observation_ids))
    if not parts:
        raise SporeprintError("no validation observations with vectors to calibrate on; make "
                              "splits and train with `sporeprint train --fold all` first")
    log_probs = np.concatenate([p.log_probs for p in parts])
    queries = np.concatenate([p.queries for p in parts])
    y = np.concatenate(truth)
    is_unknown = ~np.isin(y, classes)
    if is_unknown.all() or not is_unknown.any():
        raise SporeprintError("the validation parts need both known and unknown observations "
                              "to calibrate the unknown detector")
    label_idx = np.where(is_unknown, -1,
                         np.searchsorted(classes, np.where(is_unknown, classes[0], y)))

    ts = TemperatureScaler().fit(log_probs, label_idx)
    probs = ts.transform(log_probs)
    det = OpenSetDetector(k=min(detector_k, len(index)), fusion_weight=fusion_weight)
    det.fit_index(index)
    unc = uncertainty(probs)
    correct = classes[probs.argmax(1)] == y
    det.calibrate(queries, is_unknown, uncertainty=unc, known_correct=correct)
    scores = det.score_samples(queries, unc)
    platt = PlattScaler().fit(scores, is_unknown)
    quality = det.evaluate(queries, is_unknown, unc)
    prior = PoisonPrior().fit(probs, poisonous, platt.transform(scores),
                              np.isin(y, classes[poisonous]))
    return Calibration(
        temperature=ts.get_state(), platt=platt.get_state(), detector=det.get_state(),
        poison_prior=prior.get_state(), unknown_rate=float(is_unknown.mean()), split_seed=seed,
        metrics={"n_val_observations": int(len(y)), "nll_before": ts.nll_before_,
                 "nll_after": ts.nll_after_, "val_track1_open_set": det.val_error_,
                 "val_track1_never_unknown": det.val_error_never_, **quality},
    )


def load_or_fit(fs, members: list[Member], ensemble: Ensemble, poisonous: np.ndarray,
                index: VectorIndex, space: str, refit: bool = False) -> Calibration:
    """The stored calibration of these heads, fitted (and stored when writable) if absent."""
    cal_id = f"{KIND}:{run_key(members)}"
    if not refit:
        run = fs.get_run(cal_id)
        cal = Calibration.from_dict(run["metrics"]) if run else None
        if cal is not None and cal.split_seed == split_seed_of(members):
            return cal
    cal = calibrate(fs, members, ensemble, poisonous, index, space)
    if not fs.read_only:
        fs.record_run(cal_id, KIND, space, None, None,
                      {"members": [m.run_id for m in members]}, cal.to_dict(), None,
                      split_seed=cal.split_seed)
    log.info("calibrated: temperature %.3f, poison shift %+.2f, unknown threshold %.4f, "
             "AUROC %.3f on the validation parts it was fitted on", cal.temperature_scaler.temperature_, cal.prior.bias_,
             cal.detector["threshold"], cal.metrics.get("auroc", float("nan")))
    return cal

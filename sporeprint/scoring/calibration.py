"""Calibration of a set of trained heads, fitted once on validation observations.

Fitted by ``sporeprint train`` at the end of training (and refitted by ``sporeprint
calibrate``) with :func:`fit_and_record`; scoring only reads the record (:func:`load`).
Two modes, recorded by ``sporeprint train`` in each run's config
(``config["calibration"]``, see ``sporeprint.training.calibration_settings``):

- ``oof`` (the default): fold 1's head is calibrated on part ``p1`` and fold 2's on
  ``p2``, so no head sees its own training rows; the states are then applied to
  the ensemble average, which can be sharper than either head, and no
  out-of-fold ensemble prediction exists (each member trained on the other part).
  Runs recorded before the setting existed are ``oof`` (they trained on all of
  p1/p2); ``holdout`` cannot be used for them.
- ``holdout``: the heads were trained without the store's calibration slice
  (``store/splits.py``: one in three of the p1 and p2 observations,
  species-stratified), so no member trained or early-stopped on it. Every state
  is fitted on the *deployed ensemble's* predictions over that slice: what is
  calibrated is what scores.

Why ``oof`` is the default (docs/results.md, "Calibrating what is deployed"): on
the grounded simulator, over five seeds, heads trained without the slice and an
ensemble calibrated on it have a slightly better test NLL but a worse Track 3 and
Track 1 than the default; ``holdout`` is what gives conformal prediction sets.

The fitted estimators (temperature, the unknown detector, the score -> P(unknown)
mapping and the poison prior shift) keep their own state
(``get_state``/``from_state``); this module only stores those states together in
the store's ``runs`` table (kind ``calibration``) and hands them back. With
``poison_shift`` off (the run setting) the shift is still fitted and stored, but
``Calibration.prior`` is the identity.

The record also keeps the **conformal scores** of the calibration observations
(``heads/conformal.py``: APS over the known species and "unknown", computed from the
probabilities scoring decides with), so that scoring applies any coverage level
without refitting: all of them for the prediction set, and those of the observations
of a poisonous species for the poison check. Only ``holdout`` records them: with
``oof`` no observation is unseen by the deployed ensemble (each member trained on the
other's part), so no set is promised and the record says why (``conformal["none"]``).
Records of format 3 (before the scores were kept) still load, with no conformal part.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from heads import conformal as cp
from heads.calibration import PlattScaler, PoisonPrior, TemperatureScaler
from heads.classifier import Ensemble
from retrieval import OpenSetDetector, VectorIndex
from sporeprint.errors import SporeprintError
from sporeprint.rows import load_rows
from sporeprint.scoring.index import training_index
from sporeprint.scoring.observations import ObservationScores, observation_scores, uncertainty
from sporeprint.scoring.runs import Member, load_members, run_key, split_seed_of
from sporeprint.scoring.settings import CALIBRATION_MODES, POISON_SHIFT_RECORDED_BEFORE

log = logging.getLogger(__name__)

KIND = "calibration"
FORMAT = 4  # 4: conformal scores; 3: mode and poison_shift (loads, without them)
FORMATS = (3, 4)  # older records are refused until refitted
NO_CONFORMAL_OOF = ("no conformal guarantee: trained with calibration mode oof; retrain with "
                    "`sporeprint train --calibration holdout`")
NO_CONFORMAL_OLD = ("no conformal guarantee: the calibration record predates conformal sets; "
                    "refit it with `sporeprint calibrate`")


def slice_digest(observation_ids: np.ndarray) -> str:
    """A short fingerprint of a calibration slice (its sorted observation ids)."""
    import hashlib

    ids = np.sort(np.asarray(observation_ids, dtype=np.int64))
    return f"{len(ids)}:" + hashlib.sha256(ids.tobytes()).hexdigest()[:16]


def record_id(runs: list[Member] | list[str]) -> str:
    """The ``runs`` row id of the calibration of these heads (members or run ids of
    the fold heads, as :func:`~sporeprint.scoring.runs.run_key` takes them)."""
    return f"{KIND}:{run_key(runs)}"


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
    mode: str = "oof"
    poison_shift: bool = True
    # {"scores", "poisonous_scores", "lam", "k_reg"} or {"none": why no set is promised}
    conformal: dict = field(default_factory=lambda: {"none": NO_CONFORMAL_OLD})

    @cached_property
    def temperature_scaler(self) -> TemperatureScaler:
        return TemperatureScaler.from_state(self.temperature)

    @cached_property
    def platt_scaler(self) -> PlattScaler:
        return PlattScaler.from_state(self.platt)

    @cached_property
    def fitted_prior(self) -> PoisonPrior:
        """The fitted poison prior shift, whether or not scoring applies it."""
        return PoisonPrior.from_state(self.poison_prior)

    @cached_property
    def prior(self) -> PoisonPrior:
        """The shift scoring applies: the fitted one, or the identity with
        ``poison_shift`` off."""
        if self.poison_shift:
            return self.fitted_prior
        return PoisonPrior.from_state({**self.poison_prior, "bias": 0.0})

    def conformal_threshold(self, coverage: float, poisonous: bool = False
                            ) -> tuple[float | None, str]:
        """``(threshold, "")`` of the prediction set at ``coverage`` (``poisonous``: of the
        poison check, from the poisonous calibration observations only), or ``(None, why
        not)`` where the record promises no such set."""
        c = self.conformal or {}
        if "none" in c:
            return None, c["none"]
        s = c["poisonous_scores" if poisonous else "scores"]
        try:
            return cp.threshold(np.asarray(s, dtype=np.float64), coverage), ""
        except ValueError as exc:
            return None, f"no conformal guarantee: {exc}"

    def conformal_bound(self, *thresholds: float | None) -> float:
        """How far the ranked options stored with a prediction reach (the largest of
        ``thresholds`` and of the thresholds at ``sets.REPLAY_COVERAGE``, or the highest
        level the slice can promise if lower, for the set and the poison set), so that
        ``sporeprint decide`` can replay the sets at any level up to that."""
        from sporeprint.scoring.sets import REPLAY_COVERAGE

        c = self.conformal or {}
        out = [t for t in thresholds if t is not None]
        for key in ("scores", "poisonous_scores"):
            s = np.asarray(c.get(key) or [], dtype=np.float64)
            if len(s):
                out.append(cp.threshold(s, min(REPLAY_COVERAGE, cp.max_coverage(len(s)))))
        return max(out, default=0.0)

    def conformal_summary(self) -> str:
        """The slice sizes and the highest levels they can promise."""
        c = self.conformal or {}
        if "none" in c:
            return c["none"]
        n, n_p = len(c["scores"]), len(c["poisonous_scores"])
        return (f"conformal sets from {n} observations (coverage up to "
                f"{cp.max_coverage(n):.4f}), poison check from {n_p} poisonous ones (poison "
                f"coverage up to {cp.max_coverage(n_p):.4f} = n/(n+1))")

    def summary(self) -> str:
        """One line: the mode and the fitted states' headline numbers."""
        return (f"mode {self.mode}, temperature {self.temperature_scaler.temperature_:.3f}, "
                f"poison shift {self.fitted_prior.bias_:+.2f}"
                f"{'' if self.poison_shift else ' (not applied)'}, unknown threshold "
                f"{self.detector['threshold']:.4f}, AUROC "
                f"{self.metrics.get('auroc', float('nan')):.3f} on "
                f"{self.metrics.get('n_val_observations', 0)} observations; "
                f"{self.conformal_summary()}")

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> Calibration | None:
        """None for a record of a format that no longer loads (``sporeprint calibrate``
        refits it); a format 3 record loads without conformal scores."""
        if d.get("format") not in FORMATS:
            return None
        cal = cls(**{k: d[k] for k in ("temperature", "platt", "detector", "poison_prior",
                                       "unknown_rate", "split_seed", "metrics", "format",
                                       "mode", "poison_shift")})
        if "conformal" in d:
            cal.conformal = d["conformal"]
        return cal

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


# plain APS (no rank regulariser): see heads/conformal.py
CONFORMAL_LAM, CONFORMAL_K_REG = 0.0, 0


def known_classes(ensemble: Ensemble) -> np.ndarray:
    return ensemble.classes_[ensemble.classes_ >= 0]


def run_settings(fs, members: list[Member]) -> dict:
    """The calibration settings the members were trained with (one set for all);
    runs recorded before the settings existed count as ``oof`` with the poison shift on
    (what they were calibrated with then)."""
    found = set()
    for m in members:
        run = fs.get_run(m.run_id) or {}
        c = (run.get("config") or {}).get("calibration") or {}
        found.add((c.get("mode", "oof"), c.get("one_in"),
                   bool(c.get("poison_shift", POISON_SHIFT_RECORDED_BEFORE)),
                   c.get("slice_digest")))
    if len(found) != 1:
        raise SporeprintError(f"the heads were trained with different calibration settings "
                              f"{sorted(found, key=str)}; score heads of one training run")
    mode, one_in, shift, digest = found.pop()
    return {"mode": mode, "one_in": one_in, "poison_shift": shift, "slice_digest": digest}


def _member_scores(one: Ensemble, classes: np.ndarray, rows) -> ObservationScores:
    """``one``'s observation scores with its columns in the order of ``classes``."""
    s = observation_scores(one, rows)
    full = np.full((len(s.observation_ids), len(classes)), np.log(1e-12))
    full[:, np.searchsorted(classes, known_classes(one))] = s.log_probs
    return ObservationScores(s.observation_ids, full, s.queries)


def oof_scores(fs, members: list[Member], ensemble: Ensemble, space: str
               ) -> list[ObservationScores]:
    """Single-head out-of-fold scores: fold k's head on all of part p_k."""
    classes = known_classes(ensemble)
    seed = split_seed_of(members)
    parts = []
    for m in members:
        if len(members) > 1 and m.fold is None:
            continue
        for fold in ([m.fold] if m.fold in (1, 2) else [1, 2]):
            rows, _ = load_rows(fs, space, fs.fold_observations(fold, seed=seed)["val"])
            if len(rows):
                one = Ensemble([m.classifier]) if len(members) > 1 else ensemble
                parts.append(_member_scores(one, classes, rows))
    return parts


def holdout_scores(fs, members: list[Member], ensemble: Ensemble, space: str,
                   one_in: int, digest: str | None = None) -> list[ObservationScores]:
    """The deployed ensemble's scores on the calibration slice; refuses a slice that is
    no longer the one held out in training (``digest``: the runs' record of it)."""
    ids = fs.calibration_observations(seed=split_seed_of(members), one_in=one_in)
    if digest is not None and slice_digest(ids) != digest:
        raise SporeprintError(
            f"the calibration slice of runs {run_key(members)} has changed since they were "
            "trained (labels or validation observations changed), so the heads may have "
            "trained on part of it; retrain with `sporeprint train --calibration holdout`, or "
            "calibrate them with mode 'oof'")
    rows, _ = load_rows(fs, space, ids)
    return [_member_scores(ensemble, known_classes(ensemble), rows)] if len(rows) else []


def calibrate(fs, members: list[Member], ensemble: Ensemble, poisonous: np.ndarray,
              index: VectorIndex, space: str, detector_k: int = 10,
              fusion_weight: float = 0.5, mode: str | None = None,
              poison_shift: bool | None = None) -> Calibration:
    """Fit every calibration state; ``mode`` and ``poison_shift`` default to the runs'
    recorded settings (``run_settings``).

    ``poisonous`` is the official flag of each known class of ``ensemble``.
    """
    settings = run_settings(fs, members)
    mode = mode or settings["mode"]
    shift = settings["poison_shift"] if poison_shift is None else bool(poison_shift)
    if mode == "holdout":
        if settings["mode"] != "holdout" or not settings["one_in"]:
            raise SporeprintError(
                f"runs {run_key(members)} were trained on all of p1/p2 (calibration mode "
                "'oof', or recorded before the calibration slice existed): no calibration "
                "slice is held out from them. Calibrate them with mode 'oof', or retrain with "
                "`sporeprint train --calibration holdout`")
        parts = holdout_scores(fs, members, ensemble, space, int(settings["one_in"]),
                               settings["slice_digest"])
        where = "the calibration slice"
    elif mode == "oof":
        parts = oof_scores(fs, members, ensemble, space)
        where = "the validation parts"
    else:
        raise SporeprintError(f"calibration mode {mode!r} does not exist; choose one of "
                              f"{', '.join(CALIBRATION_MODES)}")
    if not parts:
        raise SporeprintError(f"no observations with vectors in {where} to calibrate on; make "
                              "splits and train with `sporeprint train --fold all` first")
    log_probs = np.concatenate([p.log_probs for p in parts])
    queries = np.concatenate([p.queries for p in parts])
    y = fs.observation_class_ids(np.concatenate([p.observation_ids for p in parts]))
    return fit_states(log_probs, queries, y, known_classes(ensemble), poisonous, index,
                      detector_k, fusion_weight, mode=mode, poison_shift=shift,
                      split_seed=split_seed_of(members))


def fit_states(log_probs: np.ndarray, queries: np.ndarray, y: np.ndarray, classes: np.ndarray,
               poisonous: np.ndarray, index: VectorIndex, detector_k: int = 10,
               fusion_weight: float = 0.5, mode: str = "holdout", poison_shift: bool = True,
               split_seed: int | None = None) -> Calibration:
    """Every calibration state from one set of observation scores (``log_probs`` in the
    order of ``classes``, ``y`` the true class ids, ``-1`` or unseen ids = unknown)."""
    is_unknown = ~np.isin(y, classes)
    if is_unknown.all() or not is_unknown.any():
        raise SporeprintError("the calibration observations need both known and unknown "
                              "species to calibrate the unknown detector")
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
    cal = Calibration(
        temperature=ts.get_state(), platt=platt.get_state(), detector=det.get_state(),
        poison_prior=prior.get_state(), unknown_rate=float(is_unknown.mean()),
        split_seed=split_seed, mode=mode, poison_shift=bool(poison_shift),
        metrics={"n_val_observations": int(len(y)), "nll_before": ts.nll_before_,
                 "nll_after": ts.nll_after_, "val_track1_open_set": det.val_error_,
                 "val_track1_never_unknown": det.val_error_never_, **quality},
    )
    if mode != "holdout":
        cal.conformal = {"none": NO_CONFORMAL_OOF}
        return cal
    # the options scoring decides with: the probabilities after the poison shift (as the
    # run applies it) and P(unknown)
    options = cp.with_unknown(cal.prior.apply(probs, poisonous), platt.transform(scores))
    s = cp.scores(options, cp.option_index(y, classes), CONFORMAL_LAM, CONFORMAL_K_REG)
    cal.conformal = {"scores": s.tolist(),
                     "poisonous_scores": s[np.isin(y, classes[poisonous])].tolist(),
                     "lam": CONFORMAL_LAM, "k_reg": CONFORMAL_K_REG}
    return cal


def load(fs, members: list[Member], run_ids: list[str] | None = None) -> Calibration:
    """The stored calibration of these heads; reads only. Refuses, naming the command
    that fits it, when there is none, or it is of an older format or another split.
    ``run_ids``: the runs as the caller named them (for the command in the message)."""
    cal_id = record_id(members)
    run = fs.get_run(cal_id)
    cal = Calibration.from_dict(run["metrics"]) if run else None
    if cal is not None and cal.split_seed == split_seed_of(members):
        return cal
    why = ("has no calibration record" if run is None else
           "has a calibration record of an older format" if cal is None else
           f"has a calibration record of split seed {cal.split_seed}, not "
           f"{split_seed_of(members)}")
    names = list(run_ids or [m.run_id for m in members])
    named = " ".join(names)
    raise SporeprintError(f"{'runs' if len(names) > 1 else 'run'} {named} {why}; fit it with "
                          f"`sporeprint calibrate --store {fs.path} --run {named}`")


def fit_and_record(fs, run_ids: list[str], mode: str | None = None,
                   poison_shift: bool | None = None) -> Calibration:
    """Fit the calibration of the heads of ``run_ids`` (an ensemble run or fold heads)
    and store it as their ``calibration`` run, replacing an older one; ``mode`` and
    ``poison_shift`` default to the runs' recorded settings. Needs a writable store:
    ``sporeprint train`` calls it for the runs it trained, ``sporeprint calibrate``
    for runs named on its command line.

    >>> fit_and_record(fs, ["dinov2_l-mlp-ensemble-..."]).metrics["auroc"]  # doctest: +SKIP
    """
    if fs.read_only:
        raise SporeprintError(f"store {fs.path} is open read-only; calibrating writes its "
                              "runs table: open it writable")
    space, members = load_members(fs, run_ids)
    ensemble = Ensemble([m.classifier for m in members])
    poisonous = np.isin(known_classes(ensemble), fs.poisonous_class_ids())
    cal = calibrate(fs, members, ensemble, poisonous, training_index(fs, space), space,
                    mode=mode, poison_shift=poison_shift)
    fs.record_run(record_id(members), KIND, space, None, None,
                  {"members": [m.run_id for m in members]}, cal.to_dict(), None,
                  split_seed=cal.split_seed)
    log.info("calibrated %s: %s", record_id(members), cal.summary())
    return cal

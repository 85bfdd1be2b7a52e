"""Probability calibration fitted on validation data.

The Track 3 decision rule compares a poison probability with a threshold of a
percent or two, so the probabilities must mean what they say.

- ``TemperatureScaler``: one temperature ``T`` for the species logits,
  ``softmax(z / T)``, fitted by minimising the validation negative log-likelihood.
- ``PlattScaler``: a one-feature logistic regression turning a score (the
  open-set detector's unknown score) into a probability.
- ``PoisonPrior``: one shift ``b`` added to the poisonous species' log-probabilities,
  for when poisonous species are more or less common where the model is used
  than in its training data.
- ``PoisonFusion``: one poison probability from the species mass on poisonous
  species and the head's own poison logit (a stacked logistic regression).

Every fitted calibrator turns into a plain JSON-able dict with ``get_state()``
and back with ``from_state(state)``; using one before ``fit`` raises
:class:`heads.errors.NotFittedError`.

Example:
    >>> import json
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(size=(500, 5)) * 4
    >>> labels = logits.argmax(1)
    >>> ts = TemperatureScaler().fit(logits, labels)
    >>> ts.temperature_ < 1.0   # over-cautious logits get sharpened
    True
    >>> back = TemperatureScaler.from_state(json.loads(json.dumps(ts.get_state())))
    >>> bool((back.transform(logits) == ts.transform(logits)).all())
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from heads.errors import HeadsError, NotFittedError

_GOLDEN = (3.0 - math.sqrt(5.0)) / 2.0  # the golden-section fraction, 0.381966...
_SQRT_EPS = math.sqrt(np.finfo(float).eps)


class Minimum(NamedTuple):
    x: float
    fun: float
    evaluations: int


def minimize_bounded(f: Callable[[float], float], lo: float, hi: float, xatol: float = 1e-5,
                     max_evaluations: int = 500) -> Minimum:
    """The minimum of a 1-d function on ``[lo, hi]`` by Brent's method: parabolic steps
    through the three best points so far where they behave, golden-section steps where
    they do not. The ends themselves are never evaluated; a minimum at an end is found
    to within ``xatol`` of it.

    Example:
        >>> m = minimize_bounded(lambda x: (x - 2.0) ** 2, 0.0, 5.0, xatol=1e-8)
        >>> round(m.x, 6)
        2.0
    """
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise HeadsError(f"minimize_bounded needs finite bounds lo < hi, got ({lo}, {hi})")
    a, b = float(lo), float(hi)
    x = w = v = a + _GOLDEN * (b - a)  # best, second best, previous second best
    fx = fw = fv = float(f(x))
    step = last = 0.0  # this step and the one before the last
    n = 1
    while n < max_evaluations:
        mid = 0.5 * (a + b)
        tol = _SQRT_EPS * abs(x) + xatol / 3.0
        if abs(x - mid) <= 2.0 * tol - 0.5 * (b - a):
            break
        golden = True
        if abs(last) > tol:  # try a parabola through x, w, v
            r = (x - w) * (fx - fv)
            q = (x - v) * (fx - fw)
            p = (x - v) * q - (x - w) * r
            q = 2.0 * (q - r)
            if q > 0.0:
                p = -p
            q = abs(q)
            before, last = last, step
            if abs(p) < abs(0.5 * q * before) and q * (a - x) < p < q * (b - x):
                step = p / q  # inside the bracket and shrinking: accept it
                u = x + step
                if u - a < 2.0 * tol or b - u < 2.0 * tol:
                    step = tol if x < mid else -tol
                golden = False
        if golden:
            last = (b - x) if x < mid else (a - x)
            step = _GOLDEN * last
        u = x + (step if abs(step) >= tol else math.copysign(tol, step))
        fu = float(f(u))
        n += 1
        if fu <= fx:
            if u < x:
                b = x
            else:
                a = x
            v, fv, w, fw, x, fx = w, fw, x, fx, u, fu
        else:
            if u < x:
                a = u
            else:
                b = u
            if fu <= fw or w == x:
                v, fv, w, fw = w, fw, u, fu
            elif fu <= fv or v == x or v == w:
                v, fv = u, fu
    return Minimum(x, fx, n)


def fit_logistic(x: np.ndarray, y: np.ndarray, C: float = 1.0, tol: float = 1e-10,
                 max_iter: int = 100) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method; ``(coef (d,), intercept)``.

    Minimises ``||coef||² / 2 + C · Σ log(1 + exp(-s_i (x_i·coef + intercept)))`` with
    ``s_i = ±1`` from ``y``: the intercept is not penalised, and ``C`` means what it
    means in scikit-learn's ``LogisticRegression(C=...)``. Each step solves the
    (d+1)-square Newton system and backs off until the objective falls, so it converges
    in a handful of steps for the few features calibration uses.

    Example:
        >>> coef, b = fit_logistic(np.array([[0.0], [1.0], [2.0], [3.0]]),
        ...                        np.array([False, True, False, True]), C=1e4)
        >>> round(float(coef[0]), 3), round(b, 3)
        (0.908, -1.362)
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=bool)
    if x.ndim != 2 or y.shape != (len(x),):
        raise HeadsError(f"fit_logistic needs x (n, d) and y (n,), got {x.shape} and {y.shape}")
    if not C > 0:
        raise HeadsError(f"C must be positive, got {C}")
    design = np.column_stack([x, np.ones(len(x))])  # (n, d+1): the intercept last
    target = y.astype(np.float64)
    penalty = np.r_[np.full(x.shape[1], 1.0 / C), 0.0]  # the objective divided by C
    w = np.zeros(design.shape[1])

    def objective(w: np.ndarray) -> float:
        z = design @ w
        return float(np.sum(np.logaddexp(0.0, z) - target * z) + 0.5 * np.sum(penalty * w * w))

    f = objective(w)
    for _ in range(max_iter):
        z = design @ w
        p = np.exp(-np.logaddexp(0.0, -z))  # sigmoid without overflow
        grad = design.T @ (p - target) + penalty * w
        hess = (design * (p * (1.0 - p))[:, None]).T @ design + np.diag(penalty)
        try:
            direction = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            direction = np.linalg.lstsq(hess, grad, rcond=None)[0]
        t, slope = 1.0, float(grad @ direction)
        while True:
            trial = w - t * direction
            f_trial = objective(trial)
            if f_trial <= f - 1e-4 * t * slope or t < 1e-12:
                break
            t *= 0.5
        moved = np.max(np.abs(trial - w))
        w, f = trial, f_trial
        if moved <= tol * (1.0 + np.max(np.abs(w))):
            break
    return w[:-1].copy(), float(w[-1])


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _read_state(cls: type, state: Any, floats: tuple[str, ...]) -> dict[str, float]:
    """Check a saved state's kind and numbers; return them as floats."""
    name = cls.__name__
    if not isinstance(state, dict):
        raise HeadsError(f"{name} state must be a dict, got {type(state).__name__}; "
                         f"pass what {name}.get_state() returned")
    if state.get("kind") != name:
        raise HeadsError(f"state has kind {state.get('kind')!r}, expected {name!r}; "
                         f"pass what {name}.get_state() returned")
    missing = [k for k in floats if k not in state]
    if missing:
        raise HeadsError(f"{name} state lacks {', '.join(missing)}; refit and save it again")
    out = {}
    for k in floats:
        v = state[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise HeadsError(f"{name} state field {k!r} must be a number, got {v!r}")
        out[k] = float(v)
    return out


class TemperatureScaler:
    """``fit(logits, labels)`` then ``transform(logits) -> probabilities``.

    Log-probabilities of an ensemble average work as logits too.
    """

    def __init__(self, min_temperature: float = 0.05, max_temperature: float = 20.0):
        self.min_temperature = min_temperature
        self.max_temperature = max_temperature

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> TemperatureScaler:
        logits = np.asarray(logits, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.int64)
        if logits.ndim != 2 or labels.shape != (len(logits),):
            raise HeadsError(f"logits must be (n, C) and labels (n,), got {logits.shape}, {labels.shape}")
        keep = (labels >= 0) & (labels < logits.shape[1])  # unknowns have no column
        if keep.sum() == 0:
            raise HeadsError("no labelled rows with a known class to fit the temperature on")
        z, y = logits[keep], labels[keep]
        rows = np.arange(len(y))

        def nll(log_t: float) -> float:
            return -float(np.mean(_log_softmax(z / np.exp(log_t))[rows, y]))

        res = minimize_bounded(nll, np.log(self.min_temperature), np.log(self.max_temperature),
                               xatol=1e-4)
        self.temperature_ = float(np.exp(res.x))
        self.nll_before_ = nll(0.0)
        self.nll_after_ = float(res.fun)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "temperature_"):
            raise NotFittedError("TemperatureScaler is not fitted yet; call fit first "
                                 "(or TemperatureScaler.from_state)")

    def transform(self, logits: np.ndarray) -> np.ndarray:
        self._check_fitted()
        z = np.asarray(logits, dtype=np.float64) / self.temperature_  # a new array: edit in place
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def get_state(self) -> dict[str, Any]:
        """The fitted temperature (and the fit's NLLs) as a JSON-able dict."""
        self._check_fitted()
        return {"kind": "TemperatureScaler", "temperature": self.temperature_,
                "min_temperature": float(self.min_temperature),
                "max_temperature": float(self.max_temperature),
                "nll_before": self.nll_before_, "nll_after": self.nll_after_}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TemperatureScaler:
        v = _read_state(cls, state, ("temperature", "min_temperature", "max_temperature"))
        if not np.isfinite(v["temperature"]) or v["temperature"] <= 0:
            raise HeadsError(f"TemperatureScaler state has temperature {v['temperature']}; "
                             "it must be a positive number")
        out = cls(v["min_temperature"], v["max_temperature"])
        out.temperature_ = v["temperature"]
        out.nll_before_ = float(state.get("nll_before", np.nan))
        out.nll_after_ = float(state.get("nll_after", np.nan))
        return out


class PlattScaler:
    """``P(positive | score) = sigmoid(a·score + b)``, fitted by maximum likelihood."""

    def fit(self, scores: np.ndarray, positive: np.ndarray) -> PlattScaler:
        s = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
        y = np.asarray(positive, dtype=bool)
        if y.shape != (len(s),):
            raise HeadsError(f"scores and positive need one entry per row, got {len(s)} and {y.shape}")
        if len(np.unique(y)) < 2:
            raise HeadsError("PlattScaler needs both positive and negative examples")
        coef, self.intercept_ = fit_logistic(s, y, C=1e4)
        self.coef_ = float(coef[0])
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError("PlattScaler is not fitted yet; call fit first (or PlattScaler.from_state)")

    def transform(self, scores: np.ndarray) -> np.ndarray:
        self._check_fitted()
        z = self.coef_ * np.asarray(scores, dtype=np.float64) + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))

    def get_state(self) -> dict[str, Any]:
        """``{"kind", "coef", "intercept"}``, JSON-able."""
        self._check_fitted()
        return {"kind": "PlattScaler", "coef": self.coef_, "intercept": self.intercept_}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PlattScaler:
        v = _read_state(cls, state, ("coef", "intercept"))
        out = cls()
        out.coef_, out.intercept_ = v["coef"], v["intercept"]
        return out


def _check_poison_flags(probs: np.ndarray, poisonous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(probs float64 (n, C), poisonous bool (C,))`` after checking their shapes."""
    probs = np.asarray(probs, dtype=np.float64)
    poisonous = np.asarray(poisonous)
    if probs.ndim != 2:
        raise HeadsError(f"probs must be (n, C), got shape {probs.shape}")
    if poisonous.dtype != bool or poisonous.shape != (probs.shape[1],):
        raise HeadsError(f"poisonous must be a bool flag per column ({probs.shape[1]},), got "
                         f"{poisonous.dtype} {poisonous.shape}")
    return probs, poisonous


def _poison_masses(probs: np.ndarray, poisonous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes; return the (n,) poisonous and edible probability masses."""
    probs, poisonous = _check_poison_flags(probs, poisonous)
    return probs[:, poisonous].sum(axis=1), probs[:, ~poisonous].sum(axis=1)


class PoisonPrior:
    """A shift ``b`` of the poisonous species' log-probabilities, fitted on validation.

    Training and use can differ in how common poisonous species are. ``fit``
    picks ``b`` in ``[min_bias, max_bias]`` maximising the binary log-likelihood
    of ``P(poisonous) = (1 - P(unknown)) · Σ_poisonous p'`` on validation
    observations (unknown species count as edible), where ``p'`` are the
    probabilities after the shift. ``apply`` multiplies the poisonous columns by
    ``exp(b)`` and renormalises each row.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.5, 0.5]])
        >>> prior = PoisonPrior.from_state({"kind": "PoisonPrior", "bias": float(np.log(9.0)),
        ...                                 "min_bias": -8.0, "max_bias": 8.0})
        >>> prior.apply(probs, np.array([False, True])).round(2).tolist()
        [[0.5, 0.5], [0.1, 0.9]]
    """

    def __init__(self, min_bias: float = -8.0, max_bias: float = 8.0):
        self.min_bias = min_bias
        self.max_bias = max_bias

    def fit(self, probs: np.ndarray, poisonous: np.ndarray, p_unknown: np.ndarray,
            is_poisonous: np.ndarray) -> PoisonPrior:
        """``probs`` (n, C) calibrated species probabilities of validation observations,
        ``poisonous`` (C,) bool per column, ``p_unknown`` (n,) probability of an unseen
        species, ``is_poisonous`` (n,) bool truth."""
        mass_p, mass_e = _poison_masses(probs, poisonous)
        n = len(mass_p)
        p_unknown = np.asarray(p_unknown, dtype=np.float64)
        is_poisonous = np.asarray(is_poisonous, dtype=bool)
        if p_unknown.shape != (n,) or is_poisonous.shape != (n,):
            raise HeadsError(f"p_unknown and is_poisonous need one entry per row ({n},), got "
                             f"{p_unknown.shape} and {is_poisonous.shape}")
        if n == 0:
            raise HeadsError("no validation observations to fit the poison prior on")
        if not np.isfinite(p_unknown).all() or (p_unknown < 0).any() or (p_unknown > 1).any():
            raise HeadsError("p_unknown must be probabilities in [0, 1]")
        # floor the masses like log(max(p, 1e-300)) per column would
        mass_p = np.maximum(mass_p, 1e-300)
        mass_e = np.maximum(mass_e, 1e-300)

        def nll(b: float) -> float:
            shifted = np.exp(b) * mass_p
            pp = np.clip((1 - p_unknown) * shifted / (shifted + mass_e), 1e-9, 1 - 1e-9)
            return -float(np.mean(np.where(is_poisonous, np.log(pp), np.log1p(-pp))))

        res = minimize_bounded(nll, float(self.min_bias), float(self.max_bias))
        self.bias_ = float(res.x)
        self.nll_before_ = nll(0.0)
        self.nll_after_ = float(res.fun)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "bias_"):
            raise NotFittedError("PoisonPrior is not fitted yet; call fit first (or PoisonPrior.from_state)")

    def apply(self, probs: np.ndarray, poisonous: np.ndarray) -> np.ndarray:
        """``probs`` with the poisonous columns scaled by ``exp(bias_)``, rows renormalised."""
        self._check_fitted()
        probs, poisonous = _check_poison_flags(probs, poisonous)
        p = probs * np.where(poisonous, np.exp(self.bias_), 1.0)  # one pass, a new array
        p /= np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
        return p

    def get_state(self) -> dict[str, Any]:
        """``{"kind", "bias", "min_bias", "max_bias"}``, JSON-able."""
        self._check_fitted()
        return {"kind": "PoisonPrior", "bias": self.bias_, "min_bias": float(self.min_bias),
                "max_bias": float(self.max_bias)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PoisonPrior:
        v = _read_state(cls, state, ("bias", "min_bias", "max_bias"))
        if not np.isfinite(v["bias"]):
            raise HeadsError(f"PoisonPrior state has bias {v['bias']}; it must be finite")
        out = cls(v["min_bias"], v["max_bias"])
        out.bias_ = v["bias"]
        return out


def _logit(p: np.ndarray, eps: float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


class PoisonFusion:
    """One poison probability from two signals: the species probability mass on
    poisonous species and the head's own poison logit.

    ``P(poisonous) = sigmoid(a·logit(mass) + b·poison_logit + c)``, a stacked
    logistic regression fitted on validation observations (unknown species
    count as edible). With ``b = 0`` it is a Platt scaling of the mass alone, with
    ``a = 0`` a Platt scaling of the poison logit alone, so the fit keeps the
    poison output only as far as it adds to the mass. The result can stand in for
    the poison mass of a :class:`heads.decision.DecisionSummary`
    (``dataclasses.replace(summary, poison_prob=fused)``).

    Example:
        >>> fusion = PoisonFusion.from_state({"kind": "PoisonFusion", "coef_mass": 1.0,
        ...                                   "coef_logit": 0.0, "intercept": 0.0, "eps": 1e-6})
        >>> fusion.transform(np.array([0.2]), np.array([5.0])).round(3).tolist()
        [0.2]
    """

    def __init__(self, eps: float = 1e-6):
        self.eps = eps

    def _features(self, species_mass: np.ndarray, poison_logit: np.ndarray) -> np.ndarray:
        mass = np.asarray(species_mass, dtype=np.float64)
        z = np.asarray(poison_logit, dtype=np.float64)
        if mass.ndim != 1 or z.shape != mass.shape:
            raise HeadsError(f"species_mass and poison_logit must be (n,) each, got {mass.shape} "
                             f"and {z.shape}")
        if not (np.isfinite(mass).all() and np.isfinite(z).all()):
            raise HeadsError("species_mass and poison_logit must be finite")
        return np.column_stack([_logit(mass, self.eps), z])

    def fit(self, species_mass: np.ndarray, poison_logit: np.ndarray,
            is_poisonous: np.ndarray) -> PoisonFusion:
        """``species_mass`` (n,) probability on poisonous species (already scaled by
        ``1 - P(unknown)``), ``poison_logit`` (n,) the head's poison output before the
        sigmoid, ``is_poisonous`` (n,) bool truth."""
        x = self._features(species_mass, poison_logit)
        y = np.asarray(is_poisonous, dtype=bool)
        if y.shape != (len(x),):
            raise HeadsError(f"is_poisonous needs one entry per row ({len(x)},), got {y.shape}")
        if len(np.unique(y)) < 2:
            raise HeadsError("PoisonFusion needs poisonous and edible validation observations")
        coef, self.intercept_ = fit_logistic(x, y, C=1e4)
        self.coef_mass_, self.coef_logit_ = (float(c) for c in coef)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "intercept_"):
            raise NotFittedError("PoisonFusion is not fitted yet; call fit first "
                                 "(or PoisonFusion.from_state)")

    def transform(self, species_mass: np.ndarray, poison_logit: np.ndarray) -> np.ndarray:
        """The fused probability that each observation is poisonous (n,)."""
        self._check_fitted()
        x = self._features(species_mass, poison_logit)
        z = self.coef_mass_ * x[:, 0] + self.coef_logit_ * x[:, 1] + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))

    def get_state(self) -> dict[str, Any]:
        """``{"kind", "coef_mass", "coef_logit", "intercept", "eps"}``, JSON-able."""
        self._check_fitted()
        return {"kind": "PoisonFusion", "coef_mass": self.coef_mass_,
                "coef_logit": self.coef_logit_, "intercept": self.intercept_,
                "eps": float(self.eps)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PoisonFusion:
        v = _read_state(cls, state, ("coef_mass", "coef_logit", "intercept", "eps"))
        if not 0 < v["eps"] < 0.5:
            raise HeadsError(f"PoisonFusion state has eps {v['eps']}; it must lie in (0, 0.5)")
        out = cls(v["eps"])
        out.coef_mass_, out.coef_logit_, out.intercept_ = v["coef_mass"], v["coef_logit"], v["intercept"]
        return out

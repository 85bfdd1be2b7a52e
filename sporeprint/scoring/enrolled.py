"""Enrolled species in scoring: answered without retraining, from their observations'
vectors, beside the trained heads.

**The rule.** The heads and the open-set detector answer two questions: which trained
species (q, calibrated, conditional on a trained species) and whether the observation is
of a species the heads never saw (P(unknown) = u). An enrolled species is, for the
heads, one they never saw, so it can only be part of u. Each enrolled species e has a
prototype (the normalised mean of its enrolled observations' query vectors) and a
membership probability

    r_e = exp(z_e) / (exp(b) + sum_j exp(z_j)),   z_e = a * cos(query, prototype_e) + c * log(n_e)

(n_e: its enrolled observations; ``b`` the logit of "none of the enrolled species"),
fitted on held-out data (below). The answer's options then get

    trained species t:  (1 - u) * q_t
    enrolled species e: u * r_e
    unknown:            u * (1 - sum_e r_e)

so the unknown mass is what no enrolled species claims: the open-set answer stops
calling an observation unknown when its prototype explains it, and a trained species
keeps every bit of the heads' mass. The decision rule, the poison mass and the
conformal sets read these options as they read the trained ones; the detector's
unknown flag (rules ``argmax_unknown``) is cleared where the enrolled species claim
more than half of u.

**Calibration (a, b, c)** is a maximum-likelihood fit of that softmax on a *pseudo-enrollment* of the
store's validation parts p1 and p2 (held out from every head's training data except
the fold head that trained on the other part; the heads play no part here, only the
vectors): for 1, 2 and 4 shots, half of the species with enough observations are
"enrolled" from that many randomly chosen observations, and every other held-out
observation is one example whose answer is its species when that species is enrolled,
else "none". So the probability an enrolled species gets is how often a held-out
observation that similar to a prototype of that many shots (and that dissimilar to
the others) is of its species, measured on species whose truth is known; "none" takes
the place of the species still not enrolled (half of them in the fit: a deployment
where far fewer of the unseen species are enrolled gets enrolled species' mass a
little too generously). It assumes enrolled species sit in the
embedding space as the validation species do; where the trained heads are confident
(u small), an enrolled species can win only a little mass, by design.

Poison status: an enrolled species with no stated status (NULL) is treated as
poisonous by the decision rule, so it is never answered as edible; one labelled
``poisonous=no`` is edible, one on the official list has its official flag.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from sporeprint.errors import SporeprintError

log = logging.getLogger(__name__)

SHOTS = (1, 2, 4)
TRIALS = 2
CALIBRATION_SEED = 0
MAX_QUERIES = 2000  # held-out observations a calibration reads at most
MAX_POOL = 300  # pseudo-enrolled species per trial at most
MIN_POSITIVES = 10


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def observation_queries(fs, space: str, observation_ids) -> tuple[np.ndarray, np.ndarray]:
    """``(observation ids, (n, d) query vectors)`` of those of the observations with
    vectors in ``space``: the normalised mean of their normalised image vectors (the
    query scoring makes)."""
    ids = np.asarray(observation_ids, np.int64)
    images = fs.observation_images(ids, labelled_only=False)
    image_ids = images.column("image_id").to_numpy().astype(np.int64)
    image_obs = images.column("observation_id").to_numpy().astype(np.int64)
    if image_ids.size == 0:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    found, vectors = fs.fetch_embeddings(space, image_ids)
    if found.size == 0:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    obs_of = dict(zip(image_ids.tolist(), image_obs.tolist(), strict=True))
    obs = np.asarray([obs_of[int(i)] for i in found], np.int64)
    uniq, inverse = np.unique(obs, return_inverse=True)
    sums = np.zeros((len(uniq), vectors.shape[1]), np.float64)
    np.add.at(sums, inverse, _normalise(vectors.astype(np.float64)))
    return uniq, _normalise(sums).astype(np.float32)


def fit_softmax(sims: list[np.ndarray], shots: list[np.ndarray], labels: list[np.ndarray],
                iters: int = 100, l2: float = 1e-3) -> np.ndarray:
    """``(a, c, b)`` maximising the likelihood of each query's option under
    ``P(e) = exp(a*s_e + c*log n_e) / (exp(b) + sum_j exp(a*s_j + c*log n_j))`` and
    ``P(none) = exp(b) / (...)``; ``labels``: the option index per query (-1 = none).
    Newton's method on the three parameters (the likelihood is concave)."""
    sets = []
    for s_, k_, y_ in zip(sims, shots, labels, strict=True):
        q, e = s_.shape
        feats = np.zeros((q, e + 1, 3))
        feats[:, :e, 0] = s_
        feats[:, :e, 1] = np.log(k_)[None, :]
        feats[:, e, 2] = 1.0
        sets.append((feats, np.where(y_ >= 0, y_, e)))
    def loglik(w: np.ndarray) -> float:
        total = 0.0
        for feats, chosen in sets:
            z = feats @ w
            top = z.max(1)
            total += float((z[np.arange(len(z)), chosen] - top
                            - np.log(np.exp(z - top[:, None]).sum(1))).sum())
        return total / n_all - 0.5 * l2 * float(w @ w)

    n_all = sum(len(f) for f, _ in sets)
    w = np.zeros(3)
    current = loglik(w)
    for _ in range(iters):
        grad, hess = np.zeros(3), np.zeros((3, 3))
        for feats, chosen in sets:
            q = len(feats)
            z = feats @ w
            z -= z.max(1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(1, keepdims=True)
            mean = np.einsum("qo,qof->qf", p, feats)
            grad += (feats[np.arange(q), chosen] - mean).sum(0)
            centred = feats - mean[:, None, :]
            hess -= np.einsum("qo,qof,qog->fg", p, centred, centred)
        grad, hess = grad / n_all - l2 * w, hess / n_all - l2 * np.eye(3)
        step = -np.linalg.solve(hess, grad)  # an ascent direction: hess is negative definite
        t = 1.0
        while t > 1e-6 and loglik(w + t * step) < current:
            t /= 2
        w = w + t * step
        new = loglik(w)
        if abs(new - current) < 1e-10:
            break
        current = new
    return w


@dataclass
class MembershipCalibration:
    """Each enrolled species' logit ``a * similarity + c * log(shots)`` against the
    logit ``b`` of "none of them", and what it was fitted on."""

    a: float
    c: float
    b: float
    n_pairs: int = 0
    n_positive: int = 0
    n_observations: int = 0
    notes: list[str] = field(default_factory=list)

    def prob(self, sims: np.ndarray, n_shots: np.ndarray) -> np.ndarray:
        """(n, E) P(enrolled species e | not a trained species); each row sums to < 1,
        the rest being "none of them"."""
        z = self.a * sims + self.c * np.log(np.asarray(n_shots, np.float64))
        top = np.maximum(z.max(1, keepdims=True), self.b)
        ez = np.exp(z - top)
        return ez / (np.exp(self.b - top) + ez.sum(1, keepdims=True))

    def line(self) -> str:
        return (f"enrolled-species logit {self.a:.2f} * cos + {self.c:.2f} * log(shots) "
                f"against {self.b:.2f} for none, from {self.n_pairs:,} held-out queries "
                f"({self.n_positive:,} of an enrolled species) over {self.n_observations:,} "
                "observations")


def held_out_observations(fs) -> np.ndarray:
    """The validation parts p1 and p2 of the current split (test is left for evaluation)."""
    if fs.has_splits():
        return np.union1d(fs.fold_observations(1)["val"], fs.fold_observations(2)["val"])
    raise SporeprintError("answering enrolled species needs the store's validation parts to "
                          "calibrate on; make splits with `sporeprint train` (or "
                          "FeatureStore.make_splits) first")


def fit_membership(fs, space: str, seed: int = CALIBRATION_SEED) -> MembershipCalibration:
    """Fit the membership calibration on a pseudo-enrollment of the held-out parts (see
    the module docstring); reads only."""
    ids = held_out_observations(fs)
    y_all = fs.observation_class_ids(ids)
    ids = ids[y_all >= 0]
    obs, queries = observation_queries(fs, space, ids)
    if len(obs) == 0:
        raise SporeprintError(f"no labelled validation observation has vectors in space "
                              f"{space!r}; embed or ingest their vectors to answer enrolled "
                              "species")
    rng = np.random.default_rng(seed)
    if len(obs) > MAX_QUERIES:
        keep = np.sort(rng.choice(len(obs), MAX_QUERIES, replace=False))
        obs, queries = obs[keep], queries[keep]
    y = fs.observation_class_ids(obs)
    species, counts = np.unique(y, return_counts=True)
    sims_l, shots_l, labels_l = [], [], []
    for _ in range(TRIALS):
        for k in SHOTS:
            eligible = species[counts >= k + 1]
            if len(eligible) < 2:
                continue
            pool = rng.permutation(eligible)[:max(1, min(MAX_POOL, len(eligible) // 2))]
            shot_rows, protos = [], []
            for s in pool:
                rows = rng.permutation(np.flatnonzero(y == s))[:k]
                shot_rows.append(rows)
                protos.append(queries[rows].astype(np.float64).mean(0))
            used = np.zeros(len(obs), bool)
            used[np.concatenate(shot_rows)] = True
            sims_l.append(queries[~used].astype(np.float64) @ _normalise(np.asarray(protos)).T)
            shots_l.append(np.full(len(pool), float(k)))
            where = {int(c): i for i, c in enumerate(pool)}
            labels_l.append(np.asarray([where.get(int(c), -1) for c in y[~used]], np.int64))
    if not sims_l:
        raise SporeprintError("too few labelled validation observations per species to "
                              "calibrate enrolled species (a species needs at least 2); "
                              "ingest more validation observations")
    labels = np.concatenate(labels_l)
    n_pos = int((labels >= 0).sum())
    if n_pos < MIN_POSITIVES or len(labels) - n_pos < MIN_POSITIVES:
        raise SporeprintError(f"the held-out pseudo-enrollment gave {n_pos} queries of an "
                              f"enrolled species of {len(labels)}; at least {MIN_POSITIVES} of "
                              "each kind are needed: ingest more validation observations")
    w = fit_softmax(sims_l, shots_l, labels_l)
    return MembershipCalibration(float(w[0]), float(w[1]), float(w[2]), int(len(labels)),
                                 n_pos, int(len(obs)))


@dataclass
class EnrolledSpecies:
    """The enrolled species a model answers beside its trained ones."""

    class_ids: np.ndarray  # (E,) enrolled classes the heads were not trained on
    prototypes: np.ndarray  # (E, d)
    n_shots: np.ndarray  # (E,) enrolled observations with vectors behind each prototype
    poisonous: np.ndarray  # (E,) bool: for the decision rule (unknown status -> True)
    status: dict[int, bool | None]  # class -> stated status (None: unknown)
    names: dict[int, str]
    genus: dict[int, str | None]
    calibration: MembershipCalibration
    joined_trained: list[int] = field(default_factory=list)  # enrolled into trained classes
    without_vectors: int = 0  # enrolled observations with no vector in the space

    def __len__(self) -> int:
        return int(self.class_ids.size)

    @classmethod
    def load(cls, fs, space: str, trained_classes: np.ndarray) -> EnrolledSpecies | None:
        """The store's enrollments in force as seen by a model of ``space`` trained on
        ``trained_classes``; None when there are none (or only of trained classes)."""
        species = fs.enrolled_species()
        if species.num_rows == 0:
            return None
        active = fs.enrolled_observations()
        obs_class = dict(zip(active.column("observation_id").to_pylist(),
                             active.column("class_id").to_pylist(), strict=True))
        rows = species.to_pylist()
        names = {r["class_id"]: r["species"] for r in rows}
        genus = {r["class_id"]: r["genus"] for r in rows}
        status = {r["class_id"]: r["poisonous"] for r in rows}
        joined = sorted(c for c in names if np.isin(c, trained_classes))
        wanted = [c for c in names if c not in joined]
        if not wanted:
            return None
        obs, queries = observation_queries(fs, space, list(obs_class))
        cls_of = np.asarray([obs_class[int(o)] for o in obs], np.int64)
        keep, protos, shots = [], [], []
        for c in wanted:
            mine = queries[cls_of == c]
            if len(mine) == 0:
                continue
            keep.append(c)
            protos.append(_normalise(mine.astype(np.float64).mean(0, keepdims=True))[0])
            shots.append(len(mine))
        without = len(obs_class) - len(obs)
        if not keep:
            log.warning("no enrolled observation has a vector in space %r: enrolled species "
                        "are not answered by this model", space)
            return None
        return cls(np.asarray(keep, np.int64), np.asarray(protos, np.float32),
                   np.asarray(shots, np.float64),
                   np.asarray([status[c] is not False for c in keep], bool),
                   status, names, genus, fit_membership(fs, space), joined, without)

    def membership(self, queries: np.ndarray) -> np.ndarray:
        """(n, E) r_e of each query (rows sum to less than 1)."""
        sims = np.asarray(queries, np.float64) @ self.prototypes.T.astype(np.float64)
        return self.calibration.prob(sims, self.n_shots)

    def extend(self, probs: np.ndarray, unknown_prob: np.ndarray, unknown_flag: np.ndarray,
               queries: np.ndarray, classes: np.ndarray, poisonous: np.ndarray):
        """``(probs, unknown_prob, unknown_flag, classes, poisonous)`` over the trained and
        the enrolled species (classes sorted), by the rule of the module docstring."""
        u = np.asarray(unknown_prob, np.float64)
        r = self.membership(queries)
        joint = np.concatenate([(1.0 - u)[:, None] * probs, u[:, None] * r], axis=1)
        new_u = u * (1.0 - r.sum(1))
        mass = joint.sum(1, keepdims=True)
        fallback = np.concatenate([probs, np.zeros_like(r)], axis=1)
        out = np.where(mass > 1e-12, joint / np.maximum(mass, 1e-300), fallback)
        all_classes = np.concatenate([classes, self.class_ids])
        order = np.argsort(all_classes, kind="stable")
        flag = np.asarray(unknown_flag, bool) & (r.sum(1) < 0.5)
        return (out[:, order], np.clip(new_u, 0.0, 1.0), flag, all_classes[order],
                np.concatenate([poisonous, self.poisonous])[order])

    def status_word(self, class_id: int) -> str | None:
        """``poisonous`` / ``edible`` / ``unknown`` for an enrolled class, None otherwise."""
        if class_id not in self.status:
            return None
        s = self.status[class_id]
        return "unknown" if s is None else "poisonous" if s else "edible"

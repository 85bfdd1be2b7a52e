"""``ScoringModel``: the runs' ensemble, the training index and the calibration,
loaded once; turns image vectors + metadata into one decision per observation.

The official poisonous list of the store (``species.poisonous``) decides which
classes are poisonous; heads whose own flags disagree are refused on load.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from heads.classifier import Ensemble
from heads.conformal import DEFAULT_COVERAGE, DEFAULT_POISON_COVERAGE, with_unknown
from heads.decision import RULES, DecisionSummary, decide, decide_summary, summarise
from retrieval import VectorIndex
from sporeprint.errors import SporeprintError
from sporeprint.lookalikes import TrainingNeighbours
from sporeprint.rows import Rows, load_rows
from sporeprint.scoring import calibration as calib
from sporeprint.scoring.enrolled import EnrolledSpecies
from sporeprint.scoring.index import training_index
from sporeprint.scoring.observations import ObservationScores, observation_scores, uncertainty
from sporeprint.scoring.runs import Member, load_members, run_key
from sporeprint.scoring.sets import Ranked, SetAnswers, apply_sets, ranked_options

log = logging.getLogger(__name__)

N_EVIDENCE = 5


@dataclass
class Decided:
    """One answer per observation, with what it was decided from."""

    observation_ids: np.ndarray
    class_id: np.ndarray
    probs: np.ndarray  # calibrated, conditional on a known species
    classes: np.ndarray
    poisonous: np.ndarray
    unknown_prob: np.ndarray
    unknown_score: np.ndarray
    unknown_flag: np.ndarray
    poison_prob: np.ndarray
    reason: list[str]
    kind: np.ndarray  # one of heads.decision.KINDS per observation
    evidence: np.ndarray | None = None  # (n, N_EVIDENCE) training observation ids, -1 = none
    summary: DecisionSummary | None = None  # the four numbers `sporeprint decide` replays
    sets: SetAnswers | None = None  # the conformal sets; None where none is promised
    coverage_note: str = ""  # why there is no set, or why the poison check reads it alone
    ranked: Ranked | None = None  # the options stored for replay where there is no set


def check_levels(coverage: float, poison_coverage: float) -> None:
    """Refuse a coverage level outside (0, 1); 0 means no set."""
    for name, level in (("coverage", coverage), ("poison coverage", poison_coverage)):
        if level and not 0.0 < level < 1.0:
            raise SporeprintError(f"{name} {level!r} must be between 0 and 1 (e.g. 0.9), "
                                  "or 0 for no prediction set")


def check_feature_names(members: list[Member], encoder) -> None:
    """Refuse heads trained on other metadata columns than the store's encoder makes
    (the encoder was refitted after training, or the heads come from another store)."""
    for m in members:
        names = m.classifier.feature_names
        if names is None or list(names) == list(encoder.columns):
            continue
        pairs = zip(names, encoder.columns, strict=False)  # the shorter list's length
        diff = next((i for i, (a, b) in enumerate(pairs) if a != b),
                    min(len(names), len(encoder.columns)))
        raise SporeprintError(
            f"head of run {m.run_id!r} was trained on {len(names)} metadata features but the "
            f"store's encoder (version {encoder.version}) makes {len(encoder.columns)}, first "
            f"differing at column {diff}; retrain on this store with `sporeprint train` (or "
            "re-encode the metadata with the encoder the heads were trained on)")


class ScoringModel:
    """Load with :meth:`load`; :meth:`predict` scores vectors that need not be in the store.

    >>> model = ScoringModel.load(fs, ["dinov2_l-mlp-ensemble-..."])   # doctest: +SKIP
    >>> model.predict(vectors, metadata).to_pandas()                  # doctest: +SKIP
    """

    def __init__(self, space: str, members: list[Member], index: VectorIndex,
                 calibration: calib.Calibration, official_poisonous: np.ndarray,
                 neighbours: TrainingNeighbours, prior_counts: np.ndarray, encoder=None):
        self.space = space
        self.members = members
        self.ensemble = Ensemble([m.classifier for m in members])
        self.index = index
        self.calibration = calibration
        self.classes = calib.known_classes(self.ensemble)
        self.poisonous = np.isin(self.classes, official_poisonous)
        self.neighbours = neighbours
        self.prior_counts = prior_counts
        self.encoder = encoder
        # the levels of the conformal sets `decide` gives (0: no set); `score` sets them
        self.coverage = DEFAULT_COVERAGE
        self.poison_coverage = DEFAULT_POISON_COVERAGE
        self.genus_of: dict[int, str | None] = {}  # the store's taxonomy, for the sets
        self.names_of: dict[int, str] = {}

    @classmethod
    def load(cls, fs, run_ids: list[str]) -> ScoringModel:
        """The runs' heads, training index and stored calibration; reads only. Runs
        without a calibration record are refused with the command that fits one
        (``sporeprint calibrate``; ``sporeprint train`` records it for what it trains)."""
        space, members = load_members(fs, run_ids)
        cal = calib.load(fs, members, run_ids)
        index = training_index(fs, space)
        classes = calib.known_classes(Ensemble([m.classifier for m in members]))
        official = fs.poisonous_class_ids()
        counts = fs.training_image_counts(classes) + 1.0
        try:
            encoder = fs.encoder()
        except Exception:  # noqa: BLE001 - a store without an encoder scores without metadata
            encoder = None
        if encoder is not None:
            check_feature_names(members, encoder)
        model = cls(space, members, index, cal, official, TrainingNeighbours(fs, index), counts,
                    encoder)
        taxa = fs.species_table()
        ids = taxa.column("class_id").to_pylist()
        model.genus_of = dict(zip(ids, taxa.column("genus").to_pylist(), strict=True))
        model.names_of = {i: n for i, n in zip(ids, taxa.column("species").to_pylist(),
                                               strict=True) if n}
        model.attach_enrolled(EnrolledSpecies.load(fs, space, classes))
        return model

    # the enrolled species answered beside the trained ones (sporeprint.scoring.enrolled)
    enrolled: EnrolledSpecies | None = None

    def attach_enrolled(self, enrolled: EnrolledSpecies | None) -> None:
        """Answer ``enrolled`` species too (None: the trained species only)."""
        self.enrolled = enrolled
        if enrolled is not None:
            self.names_of = {**self.names_of, **enrolled.names}
            self.genus_of = {**self.genus_of, **enrolled.genus}
            if self.species_names is not None:
                self.species_names = {**self.species_names, **enrolled.names}

    @property
    def answer_classes(self) -> np.ndarray:
        """The class ids answers can name: the trained ones and any enrolled ones."""
        if self.enrolled is None:
            return self.classes
        return np.union1d(self.classes, self.enrolled.class_ids)

    def sets_line(self) -> str:
        """What the sets of :meth:`decide` promise at the model's levels, in one line."""
        if not self.coverage:
            return "no prediction sets (coverage 0)"
        cal = self.calibration
        threshold, why = cal.conformal_threshold(self.coverage)
        if threshold is None:
            return why
        line = (f"prediction sets at coverage {self.coverage} (marginal, over observations "
                f"exchangeable with the {len(cal.conformal['scores'])} of the calibration "
                "slice)")
        if self.poison_coverage:
            p_threshold, p_why = cal.conformal_threshold(self.poison_coverage, poisonous=True)
            line += (f"; poison check at poison coverage {self.poison_coverage} from "
                     f"{len(cal.conformal['poisonous_scores'])} poisonous calibration "
                     "observations" if p_threshold is not None else
                     f"; poison coverage {self.poison_coverage}: {p_why}; the poison check "
                     "reads the set alone")
        return line

    @property
    def run_key(self) -> str:
        return run_key(self.members)

    # -- scoring --------------------------------------------------------------------------
    def scores(self, fs, observation_ids: np.ndarray) -> tuple[ObservationScores | None, Rows]:
        """``(scores, rows)`` of the stored observations that have vectors in the space."""
        rows, _ = load_rows(fs, self.space, observation_ids, labelled_only=False)
        if len(rows) == 0:
            return None, rows
        return observation_scores(self.ensemble, rows), rows

    def decide(self, scores: ObservationScores, rule: str = "track3",
               knn: np.ndarray | None = None, evidence: np.ndarray | None = None,
               coverage: float | None = None, poison_coverage: float | None = None
               ) -> Decided:
        """Calibrated probabilities, P(unknown) and the rule's answer per observation;
        the kNN score and the evidence are searched when ``knn`` is not given.

        ``coverage`` / ``poison_coverage`` (default: the model's ``coverage`` and
        ``poison_coverage``; 0 for no set): the conformal sets and the poison check from
        them (``sporeprint.scoring.sets``), where the calibration record promises them."""
        if rule not in RULES:
            raise SporeprintError(f"unknown decision rule {rule!r}; choose one of "
                                  f"{', '.join(RULES)}")
        cal = self.calibration
        det = cal.detector_for(self.index)
        if knn is None:
            near = self.neighbours.search(scores.queries, N_EVIDENCE, det.k)
            knn, evidence = near.unknown_score, near.observation_ids
        plain = cal.species_probs(scores.log_probs, self.poisonous, shift=False)
        probs = cal.prior.apply(plain, self.poisonous)
        s = det.fuse(knn, uncertainty(plain))  # as calibrated: before the poison shift
        flag = s > det.threshold_
        p_unknown = cal.unknown_prob(s)
        classes, poisonous = self.classes, self.poisonous
        if self.enrolled is not None:  # enrolled species share the unknown mass
            probs, p_unknown, flag, classes, poisonous = self.enrolled.extend(
                probs, p_unknown, flag, scores.queries, classes, poisonous)
        summary = summarise(probs, p_unknown, classes, poisonous)
        # Track 3 decides from the summary it stores (what `decide(rule="track3")` does
        # inside, computed once here); the other rules need the full probabilities.
        d = decide_summary(summary) if rule == "track3" else decide(
            probs, None, classes, poisonous, rule=rule, unknown_flag=flag)
        out = Decided(scores.observation_ids, d.class_id, probs, classes, poisonous,
                      p_unknown, s, flag, d.poison_prob, d.reason, d.kind, evidence, summary)
        return self._with_sets(out, self.coverage if coverage is None else coverage,
                               self.poison_coverage if poison_coverage is None
                               else poison_coverage)

    def _with_sets(self, d: Decided, coverage: float, poison_coverage: float) -> Decided:
        """``d`` with its conformal sets and the poison check applied, or with the line
        saying why no set is promised."""
        check_levels(coverage, poison_coverage)
        cal = self.calibration
        threshold, why = cal.conformal_threshold(coverage) if coverage else (None, "")
        if threshold is None:
            d.coverage_note = why
            if "scores" in (cal.conformal or {}):  # no set at this level, but at others:
                # the ranked options `sporeprint decide --coverage` gives them from
                d.ranked = ranked_options(with_unknown(d.probs, d.unknown_prob), d.classes,
                                          cal.conformal_bound(), cal.conformal.get("lam", 0.0),
                                          cal.conformal.get("k_reg", 0))
            return d
        p_threshold, p_why = (cal.conformal_threshold(poison_coverage, poisonous=True)
                              if poison_coverage else (None, ""))
        sets = apply_sets(d.probs, d.unknown_prob, d.classes, d.poisonous, d.class_id,
                          d.kind, d.reason, threshold, p_threshold, coverage,
                          cal.conformal.get("lam", 0.0), cal.conformal.get("k_reg", 0),
                          self.genus_of, self.species_names or self.names_of,
                          bound=cal.conformal_bound(threshold, p_threshold))
        if p_why:
            sets.note = (f"poison coverage {poison_coverage}: {p_why}; the poison check reads "
                         f"the {coverage} set alone")
        d.class_id, d.kind, d.reason, d.sets = sets.class_id, sets.kind, sets.reason, sets
        d.coverage_note = sets.note
        return d

    def unknown_auroc(self, fs, observation_ids: np.ndarray) -> dict[str, float]:
        """How well the unknown score separates unseen species on labelled stored
        observations: AUROC (unknown = positive) and the number of each kind. Pass
        observations the calibration was not fitted on (the held-out ``test`` part);
        the calibration's own ``auroc`` is measured on its validation parts."""
        from heads.metrics import roc_auc_score

        scores, _ = self.scores(fs, np.asarray(observation_ids, np.int64))
        if scores is None:
            raise SporeprintError("none of these observations has vectors in the runs' space")
        truth = fs.observation_class_ids(scores.observation_ids)
        unknown = ~np.isin(truth, self.classes)
        if unknown.all() or not unknown.any():
            raise SporeprintError("the AUROC needs both known-species and unknown-species "
                                  "observations among those given")
        cal = self.calibration
        det = cal.detector_for(self.index)
        knn = self.neighbours.search(scores.queries, N_EVIDENCE, det.k).unknown_score
        plain = cal.species_probs(scores.log_probs, self.poisonous, shift=False)
        s = det.fuse(knn, uncertainty(plain))
        return {"auroc": float(roc_auc_score(unknown, s)), "n_unknown": int(unknown.sum()),
                "n_known": int((~unknown).sum())}

    def prior_decision(self, observation_ids: np.ndarray, why: str) -> Decided:
        """Observations with no usable image or no accepted row: the Track 3 rule on the
        training class prior."""
        n = len(observation_ids)
        cal = self.calibration
        prior = np.tile(self.prior_counts / self.prior_counts.sum(), (n, 1))
        probs = cal.prior.apply(prior, self.poisonous)
        pu = np.full(n, cal.unknown_rate)
        d = decide(probs, pu, self.classes, self.poisonous, rule="track3",
                   prior_only=np.ones(n, bool))
        return Decided(np.asarray(observation_ids, np.int64), d.class_id, probs, self.classes,
                       self.poisonous, pu, np.full(n, np.nan), np.zeros(n, bool), d.poison_prob,
                       [f"{why}: training prior only; {r}" for r in d.reason], d.kind,
                       np.full((n, N_EVIDENCE), -1, np.int64),
                       summarise(probs, pu, self.classes, self.poisonous))

    # class id -> species name for `predict`'s output; set by `sporeprint.open().model()`
    species_names: dict[int, str] | None = None

    def predict(self, vectors: np.ndarray, metadata=None, observation_ids=None,
                rule: str = "track3", coverage: float | None = None,
                poison_coverage: float | None = None) -> pa.Table:
        """Decisions for image vectors that need not be in the store.

        ``vectors``: (n, d) float image vectors of this model's space. ``metadata``: None,
        or one row per image (a ``pyarrow.Table``, a pandas DataFrame or a list of dicts)
        in the metadata contract's columns (``store/contract.py``: DF20/FungiCLEF
        spellings such as ``Habitat``, ``Substrate``, ``Latitude`` or ``habitat``,
        ``month``, ``latitude`` — case and underscores do not matter); missing fields
        encode as missing. An unknown column or an invalid value raises
        ``store.MetadataError``, as ingestion rejects it. ``observation_ids``: one
        per image (images of one observation are averaged); default: the metadata's own
        observation-id column, else each image alone. Returns the predictions table
        (``sporeprint.scoring.outputs``) sorted by id, with ``species`` (the answer's
        name) and ``warnings`` (per observation: metadata values never seen in training,
        encoded as unseen). ``coverage`` / ``poison_coverage``: as for :meth:`decide`
        (columns ``prediction_set``, ``set_size``, ``answer_rank``, ``genus``).
        """
        from sporeprint.scoring.outputs import predictions_table
        from store import InvalidValueError, check_vectors

        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        try:  # the store's rule for vectors, so a vector predict takes the store would take
            check_vectors(x, self.index.dim, what=f"space {self.space!r}",
                          outcome="nothing was scored", fix="Drop them or re-embed their images")
        except InvalidValueError as exc:
            raise SporeprintError(str(exc)) from exc
        typed, found = self.check_metadata(metadata, len(x))
        obs = self._observation_ids(observation_ids, typed, found, len(x))
        features, warnings = self.encode_metadata(typed, len(x))
        rows = Rows(np.arange(len(x), dtype=np.int64), obs, np.full(len(x), -1, np.int64), x,
                    features)
        decided = self.decide(observation_scores(self.ensemble, rows), rule,
                              coverage=coverage, poison_coverage=poison_coverage)
        table = predictions_table([(decided, "scored")])
        per_obs: dict[int, list[str]] = {}
        for o, w in zip(obs.tolist(), warnings, strict=True):
            per_obs.setdefault(o, [])
            per_obs[o] += [m for m in w if m not in per_obs[o]]
        ids = table.column("observation_id").to_pylist()
        names = self.species_names or {}
        species = [names.get(int(c)) if c >= 0 else None
                   for c in table.column("class_id").to_pylist()]
        at = table.column_names.index("class_id") + 1
        table = table.add_column(at, "species", pa.array(species, pa.string()))
        return table.append_column("warnings", pa.array([per_obs.get(i, []) for i in ids],
                                                        pa.list_(pa.string())))

    @staticmethod
    def check_metadata(metadata, n: int) -> tuple[pa.Table | None, dict[str, str]]:
        """The metadata contract's typed rows (None without metadata) and the columns given."""
        from store import check_metadata

        if metadata is None:
            return None, {}
        return check_metadata(metadata, n)

    @staticmethod
    def _observation_ids(given, typed, found: dict, n: int) -> np.ndarray:
        own = typed.column("observation_id").to_numpy(zero_copy_only=False).astype(np.int64) \
            if "observation_id" in found else None
        if given is None:
            return np.arange(n, dtype=np.int64) if own is None else own
        obs = np.asarray(given, dtype=np.int64)
        if obs.shape != (n,):
            raise SporeprintError(f"observation_ids has {obs.size} entries for {n} vectors; "
                                  "pass one id per vector")
        if own is not None and not np.array_equal(own, obs):
            k = int(np.flatnonzero(own != obs)[0])
            raise SporeprintError(
                f"observation_ids[{k}] is {obs[k]} but the metadata's {found['observation_id']!r} "
                f"column says {own[k]}; pass one of them")
        return obs

    def encode_metadata(self, typed: pa.Table | None, n: int
                        ) -> tuple[np.ndarray | None, list[list[str]]]:
        """Encode checked metadata rows (:meth:`check_metadata`) with the store's encoder
        (the columns the heads saw): ``(features or None, warnings per row)``."""
        from store import ENCODER_INPUT_SCHEMA
        from store.encoding import encode_table, unseen_values

        if self.encoder is None:
            return None, [[] for _ in range(n)]
        if typed is None:  # every field missing
            rows = pa.table({f.name: pa.nulls(n, f.type) for f in ENCODER_INPUT_SCHEMA})
        else:
            rows = pa.table({f.name: typed[f.name].cast(f.type) for f in ENCODER_INPUT_SCHEMA})
        return encode_table(rows, self.encoder), unseen_values(rows, self.encoder)

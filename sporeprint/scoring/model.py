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
from heads.decision import RULES, DecisionSummary, decide, decide_summary, summarise
from retrieval import VectorIndex
from sporeprint.errors import SporeprintError
from sporeprint.lookalikes import TrainingNeighbours
from sporeprint.rows import Rows, load_rows
from sporeprint.scoring import calibration as calib
from sporeprint.scoring.index import training_index
from sporeprint.scoring.observations import ObservationScores, observation_scores, uncertainty
from sporeprint.scoring.runs import Member, load_members, run_key

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
        return cls(space, members, index, cal, official, TrainingNeighbours(fs, index), counts,
                   encoder)

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
               knn: np.ndarray | None = None, evidence: np.ndarray | None = None) -> Decided:
        """Calibrated probabilities, P(unknown) and the rule's answer per observation;
        the kNN score and the evidence are searched when ``knn`` is not given."""
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
        summary = summarise(probs, p_unknown, self.classes, self.poisonous)
        # Track 3 decides from the summary it stores (what `decide(rule="track3")` does
        # inside, computed once here); the other rules need the full probabilities.
        d = decide_summary(summary) if rule == "track3" else decide(
            probs, None, self.classes, self.poisonous, rule=rule, unknown_flag=flag)
        return Decided(scores.observation_ids, d.class_id, probs, self.classes, self.poisonous,
                       p_unknown, s, flag, d.poison_prob, d.reason, d.kind, evidence, summary)

    def unknown_auroc(self, fs, observation_ids: np.ndarray) -> dict[str, float]:
        """How well the unknown score separates unseen species on labelled stored
        observations: AUROC (unknown = positive) and the number of each kind. Pass
        observations the calibration was not fitted on (the held-out ``test`` part);
        the calibration's own ``auroc`` is measured on its validation parts."""
        from sklearn.metrics import roc_auc_score

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

    def predict(self, vectors: np.ndarray, metadata=None, observation_ids=None,
                rule: str = "track3") -> pa.Table:
        """Decisions for image vectors that need not be in the store.

        ``vectors``: (n, d) float image vectors of this model's space. ``metadata``: None,
        or one row per image (a ``pyarrow.Table``, a pandas DataFrame or a list of dicts)
        with the store's observation fields (substrate, meta_substrate, habitat, month, day,
        latitude, longitude); missing fields encode as missing. ``observation_ids``: one
        per image (images of one observation are averaged); default: each image alone.
        Returns the predictions table (``sporeprint.scoring.outputs``) sorted by id.
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
        obs = np.arange(len(x), dtype=np.int64) if observation_ids is None else \
            np.asarray(observation_ids, dtype=np.int64)
        if obs.shape != (len(x),):
            raise SporeprintError(f"observation_ids has {obs.size} entries for {len(x)} vectors; "
                                  "pass one id per vector")
        rows = Rows(np.arange(len(x), dtype=np.int64), obs, np.full(len(x), -1, np.int64), x,
                    self.encode_metadata(metadata, len(x)))
        decided = self.decide(observation_scores(self.ensemble, rows), rule)
        return predictions_table([(decided, "scored")])

    def encode_metadata(self, metadata, n: int) -> np.ndarray | None:
        """Encode metadata rows with the store's encoder (the columns the heads saw)."""
        from store import ENCODER_INPUT_SCHEMA
        from store.encoding import encode_table

        if self.encoder is None:
            return None
        if metadata is None:  # every field missing
            metadata = pa.table({"observation_id": pa.nulls(n, pa.int64())})
        if hasattr(metadata, "to_dict") and not isinstance(metadata, pa.Table):  # pandas
            metadata = pa.Table.from_pandas(metadata, preserve_index=False)
        if not isinstance(metadata, pa.Table):  # one dict per row; absent keys are missing
            rows = list(metadata)
            metadata = pa.table({name: pa.array([r.get(name) for r in rows])
                                 for name in ENCODER_INPUT_SCHEMA.names
                                 if any(name in r for r in rows)}
                                or {"observation_id": pa.nulls(len(rows), pa.int64())})
        if metadata.num_rows != n:
            raise SporeprintError(f"metadata has {metadata.num_rows} rows for {n} vectors; "
                                  "pass one row per vector")
        cols = {}
        for f in ENCODER_INPUT_SCHEMA:
            if f.name in metadata.column_names:
                cols[f.name] = metadata[f.name].cast(f.type)
            else:
                cols[f.name] = pa.nulls(n, f.type)
        return encode_table(pa.table(cols), self.encoder)

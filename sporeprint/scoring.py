"""Batch scoring: new observations in, species + poison risk + unknown flag out.

The pipeline (``score_batch``):

1. ingest the metadata file as role ``new`` (rejected rows are reported, not lost);
2. get vectors in the runs' embedding space: precomputed Parquet, or the images
   embedded with the space's own model;
3. encode metadata with the stored vocabularies;
4. run the ensemble per image and average the probabilities per observation;
5. score "unknown" with the open-set detector (kNN over the training images,
   fused with the head's uncertainty) and turn it into a probability;
6. decide with the Track 3-optimal rule (``heads.decision``) on calibrated
   probabilities: never "edible" or "unknown" while the poison probability is
   above the rule's threshold;
7. replace this batch's predictions for these runs in the store, and write a
   FungiCLEF submission CSV (``observation_id,class_id``) plus a richer file.

Calibration (``calibrate``) is fitted once per set of runs on the validation
parts, with out-of-fold predictions (fold 1's head on part p1, fold 2's on p2),
and cached in the ``runs`` table (kind ``calibration``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from heads.calibration import PlattScaler, PoisonPrior, TemperatureScaler
from heads.classifier import Classifier, Ensemble
from heads.decision import RULES, decide
from heads.inference import aggregate_by_observation
from retrieval import OpenSetDetector, VectorIndex
from sporeprint.indexing import nearest_training_observations, selection_image_ids
from sporeprint.training import load_rows, poisonous_ids
from store import FeatureStore, StoreError

log = logging.getLogger(__name__)

CALIBRATION_KIND = "calibration"
N_EVIDENCE = 5
TOP = 5


# ------------------------------------------------------------------ the runs
@dataclass
class Member:
    run_id: str
    fold: int | None
    classifier: Classifier


def resolve_runs(fs: FeatureStore, run_ids: list[str]) -> list[tuple[str, int | None, str, str]]:
    """``(run_id, fold, path, space)`` of trained heads; an ensemble run expands to its members."""
    out: list[tuple[str, int | None, str, str]] = []
    for run_id in run_ids:
        rows = fs.sql("SELECT kind, fold, path, space, config FROM runs WHERE run_id = ?",
                      [run_id]).to_pylist()
        if not rows:
            known = fs.sql("SELECT run_id FROM runs WHERE kind IN ('train', 'ensemble') "
                           "ORDER BY created_at DESC LIMIT 5").column(0).to_pylist()
            raise StoreError(f"run {run_id!r} is not in the store's runs table (latest: "
                             f"{', '.join(known) or 'none'}); train heads with `sporeprint train`")
        row = rows[0]
        if row["kind"] == "ensemble":
            out.extend(resolve_runs(fs, json.loads(row["config"])["members"]))
        elif row["kind"] == "train":
            out.append((run_id, row["fold"], row["path"], row["space"]))
        else:
            raise StoreError(f"run {run_id!r} is a {row['kind']!r} run, not a trained head")
    spaces = {r[3] for r in out}
    if len(spaces) != 1:
        raise StoreError(f"runs {run_ids} were trained on different embedding spaces {sorted(spaces)}; "
                         "score with heads of one space")
    return list(dict.fromkeys(out))


def load_members(fs: FeatureStore, run_ids: list[str]) -> tuple[str, list[Member]]:
    runs = resolve_runs(fs, run_ids)
    space = runs[0][3]
    spec = fs.get_space(space)
    if spec is None:
        raise StoreError(f"embedding space {space!r} of run {runs[0][0]!r} is not in the store")
    members = [Member(rid, fold, Classifier.load(path, space=space, dim=spec.dim))
               for rid, fold, path, _ in runs]
    return space, members


def run_key(members: list[Member]) -> str:
    return ",".join(sorted(m.run_id for m in members))


# -------------------------------------------------------- per-observation scoring
@dataclass
class ObservationScores:
    """Everything the decision needs, one row per observation."""

    observation_ids: np.ndarray  # (n,)
    log_probs: np.ndarray  # (n, C) log of the ensemble's mean image probabilities
    queries: np.ndarray  # (n, d) normalised mean image vector


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def observation_scores(ensemble: Ensemble, rows) -> ObservationScores:
    """Ensemble probabilities averaged over each observation's images, plus the
    observation's query vector for the kNN detector."""
    probs = ensemble.predict_proba(rows.embeddings, rows.metadata)
    obs, mean = aggregate_by_observation(probs, rows.observation_ids)
    _, qmean = aggregate_by_observation(_normalise(rows.embeddings), rows.observation_ids)
    if ensemble.classes_[-1] == -1:  # explicit "unknown" output: fold into the open-set score
        mean = mean[:, :-1] / np.maximum(mean[:, :-1].sum(1, keepdims=True), 1e-12)
    return ObservationScores(np.asarray(obs), np.log(np.maximum(mean, 1e-12)),
                             _normalise(qmean).astype(np.float32))


def uncertainty(probs: np.ndarray) -> np.ndarray:
    """Head uncertainty fed to the detector: 1 - max probability."""
    return 1.0 - probs.max(axis=1)


# ------------------------------------------------------------------ calibration
@dataclass
class Calibration:
    """Fitted on out-of-fold validation predictions; stored as JSON in ``runs``."""

    temperature: float
    platt_coef: float
    platt_intercept: float
    detector_k: int
    detector_threshold: float
    knn_stats: list[float]
    uncertainty_stats: list[float]
    fusion_weight: float
    unknown_rate: float
    poison_bias: float = 0.0
    metrics: dict = field(default_factory=dict)

    def species_probs(self, log_probs: np.ndarray, poisonous: np.ndarray) -> np.ndarray:
        """Calibrated probabilities over known species: temperature, then the poison
        prior shift (training and the scoring period differ in how common poisonous
        species are)."""
        z = log_probs / self.temperature + self.poison_bias * poisonous[None, :]
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)


def _known_species_classes(ensemble: Ensemble) -> np.ndarray:
    return ensemble.classes_[ensemble.classes_ >= 0]


# Saved training-image indexes tried first (fastest first); exact in memory otherwise.
SAVED_INDEX_KINDS = ("ivf_flat", "hnsw", "ivf_pq", "exact")
# The unknown score needs the distance to the 10th neighbour, not an exact top list:
# scoring probes 1/64 of an IVF index's lists (at least 8).
SCORING_NPROBE_SHARE, SCORING_MIN_NPROBE = 64, 8


def _train_index(fs: FeatureStore, space: str) -> VectorIndex:
    """The index of the training images: a fresh saved one (`sporeprint index build
    --where train`), else an exact one built in memory."""
    from retrieval import RetrievalError
    from sporeprint.indexing import index_dir, load_index

    for kind in SAVED_INDEX_KINDS:
        if (index_dir(fs.path, space, kind, "train") / "manifest.json").is_file():
            try:
                index = load_index(fs, space, kind, "train")
                if kind.startswith("ivf"):
                    index.set_search_params(nprobe=max(
                        SCORING_MIN_NPROBE, int(index.params["nlist"]) // SCORING_NPROBE_SHARE))
                log.info("using the saved %s index of training images (%d vectors)", kind, len(index))
                return index
            except RetrievalError as exc:  # stale: say so, fall through to the next
                log.warning("%s", exc)
    spec = fs.get_space(space)
    ids, vectors = fs.fetch_embeddings(space, selection_image_ids(fs, space, "train"))
    if len(ids) == 0:
        raise StoreError(f"no role=train images have {space!r} vectors; the open-set detector "
                         "needs the training images' vectors")
    index = VectorIndex(spec.dim, "exact")
    index.add(ids, vectors)
    return index


def _detector(index: VectorIndex, k: int, fusion_weight: float) -> OpenSetDetector:
    return OpenSetDetector(k=min(k, len(index)), fusion_weight=fusion_weight).fit_index(index)


def calibrate(fs: FeatureStore, space: str, members: list[Member], index: VectorIndex,
              detector_k: int = 10, fusion_weight: float = 0.5) -> Calibration:
    """Temperature, open-set threshold and P(unknown) mapping from out-of-fold predictions."""
    ensemble = Ensemble([m.classifier for m in members])
    classes = _known_species_classes(ensemble)
    parts: list[ObservationScores] = []
    truth: list[np.ndarray] = []
    for m in members:
        folds = [m.fold] if m.fold in (1, 2) else [1, 2]
        for fold in folds:
            if len(members) > 1 and m.fold is None:
                continue
            rows, _ = load_rows(fs, space, fs.fold_observations(fold)["val"])
            if len(rows) == 0:
                continue
            one = Ensemble([m.classifier]) if len(members) > 1 else ensemble
            s = observation_scores(one, rows)
            # re-express the member's columns in the ensemble's class order
            full = np.full((len(s.observation_ids), len(classes)), np.log(1e-12))
            cols = np.searchsorted(classes, _known_species_classes(one))
            full[:, cols] = s.log_probs
            parts.append(ObservationScores(s.observation_ids, full, s.queries))
            _, first = np.unique(rows.observation_ids, return_index=True)
            truth.append(rows.class_ids[np.sort(first)])
    if not parts:
        raise StoreError("no validation observations with vectors to calibrate on; "
                         "make splits and train with `sporeprint train --fold all` first")
    log_probs = np.concatenate([p.log_probs for p in parts])
    queries = np.concatenate([p.queries for p in parts])
    y = np.concatenate(truth)
    is_unknown = ~np.isin(y, classes)
    if is_unknown.all() or not is_unknown.any():
        raise StoreError("validation parts need both known and unknown observations to calibrate "
                         "the unknown detector")
    label_idx = np.where(is_unknown, -1, np.searchsorted(classes, np.where(is_unknown, classes[0], y)))

    ts = TemperatureScaler().fit(log_probs, label_idx)
    probs = ts.transform(log_probs)
    det = _detector(index, detector_k, fusion_weight)
    unc = uncertainty(probs)
    correct = classes[probs.argmax(1)] == y
    det.calibrate(queries, is_unknown, uncertainty=unc, known_correct=correct)
    scores = det.score_samples(queries, unc)
    platt = PlattScaler().fit(scores, is_unknown)
    quality = det.evaluate(queries, is_unknown, unc)
    poisonous = ensemble.poisonous_[: len(classes)]
    bias = PoisonPrior().fit(probs, poisonous, platt.transform(scores),
                             np.isin(y, classes[poisonous])).bias_
    return Calibration(
        temperature=ts.temperature_, platt_coef=platt.coef_, platt_intercept=platt.intercept_,
        detector_k=det.k, detector_threshold=det.threshold_, knn_stats=list(det.knn_stats_),
        uncertainty_stats=list(det.uncertainty_stats_), fusion_weight=fusion_weight,
        unknown_rate=float(is_unknown.mean()), poison_bias=bias,
        metrics={"n_val_observations": int(len(y)), "nll_before": ts.nll_before_,
                 "nll_after": ts.nll_after_, "val_track1_open_set": det.val_error_,
                 "val_track1_never_unknown": det.val_error_never_, **quality},
    )


def load_or_fit_calibration(fs: FeatureStore, space: str, members: list[Member],
                            index: VectorIndex, refit: bool = False) -> Calibration:
    key = run_key(members)
    cal_id = f"calibration:{key}"
    if not refit:
        rows = fs.sql("SELECT metrics FROM runs WHERE run_id = ?", [cal_id]).to_pylist()
        if rows:
            return Calibration(**json.loads(rows[0]["metrics"]))
    cal = calibrate(fs, space, members, index)
    if not fs.read_only:
        fs.record_run(cal_id, CALIBRATION_KIND, space, None, None,
                      {"members": [m.run_id for m in members]}, asdict(cal), None)
    log.info("calibrated: temperature %.3f, poison shift %+.2f, unknown threshold %.4f, AUROC %.3f",
             cal.temperature, cal.poison_bias, cal.detector_threshold,
             cal.metrics.get("auroc", float("nan")))
    return cal


# --------------------------------------------------------------------- deciding
@dataclass
class Decided:
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


def decide_observations(scores: ObservationScores, ensemble: Ensemble, cal: Calibration,
                        index: VectorIndex, rule: str = "track3",
                        knn: np.ndarray | None = None) -> Decided:
    """Calibrated probabilities, P(unknown) and the rule's answer per observation;
    ``knn`` (1 - similarity to the k-th nearest training image) is searched when not given."""
    classes = _known_species_classes(ensemble)
    poisonous = ensemble.poisonous_[: len(classes)]
    plain = Calibration.species_probs(replace(cal, poison_bias=0.0), scores.log_probs, poisonous)
    probs = cal.species_probs(scores.log_probs, poisonous)
    det = _detector(index, cal.detector_k, cal.fusion_weight)
    det.threshold_ = cal.detector_threshold
    det.knn_stats_ = tuple(cal.knn_stats)
    det.uncertainty_stats_ = tuple(cal.uncertainty_stats)
    if knn is None:
        knn = det.knn_scores(scores.queries)
    s = det.fuse(knn, uncertainty(plain))  # as calibrated: before the poison shift
    flag = s > det.threshold_
    p_unknown = 1.0 / (1.0 + np.exp(-(cal.platt_coef * s + cal.platt_intercept)))
    d = decide(probs, p_unknown if rule == "track3" else None, classes, poisonous, rule=rule,
               unknown_flag=flag)
    return Decided(scores.observation_ids, d.class_id, probs, classes, poisonous, p_unknown, s,
                   flag, d.poison_prob, d.reason)


def prior_decision(ensemble: Ensemble, cal: Calibration, counts: np.ndarray, n: int) -> Decided:
    """Observations without a usable image: the Track 3 rule on the training class prior."""
    classes = _known_species_classes(ensemble)
    poisonous = ensemble.poisonous_[: len(classes)]
    prior = cal.species_probs(np.log(np.tile(counts / counts.sum(), (n, 1))), poisonous)
    pu = np.full(n, cal.unknown_rate)
    d = decide(prior, pu, classes, poisonous, rule="track3")
    return Decided(np.zeros(n, np.int64), d.class_id, prior, classes, poisonous, pu,
                   np.full(n, np.nan), np.zeros(n, bool), d.poison_prob,
                   ["no usable image: training prior only; " + r for r in d.reason])


# ---------------------------------------------------------------- the pipeline
@dataclass
class ScoreReport:
    batch: str
    run_key: str
    rows_read: int = 0
    rows_rejected: int = 0
    observations: int = 0
    scored: int = 0
    no_usable_image: int = 0
    rejected_observations: int = 0
    embedded: int = 0
    embedding_failures: int = 0
    answers: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [
            f"batch {self.batch!r} scored with {self.run_key}",
            f"  metadata rows read {self.rows_read}, rejected {self.rows_rejected}",
            f"  observations {self.observations}: scored from images {self.scored}, "
            f"no usable image {self.no_usable_image} (prior-only answer), "
            f"all rows rejected {self.rejected_observations} (prior-only answer)",
        ]
        if self.embedded or self.embedding_failures:
            out.append(f"  images embedded {self.embedded}, failed {self.embedding_failures}")
        out.append("  answers: " + ", ".join(f"{k} {v}" for k, v in sorted(self.answers.items())))
        out += [f"  {k}: {v}" for k, v in self.outputs.items()]
        return out


def _batch_observation_ids(path: Path) -> np.ndarray:
    from store.ingest import read_metadata_table

    table = read_metadata_table(path)
    col = next((c for c in ("observationID", "observation_id") if c in table.column_names), None)
    if col is None:
        return np.zeros(0, np.int64)
    values = pa.compute.cast(table[col], pa.string(), safe=False).to_pylist()
    ids = []
    for v in values:
        try:
            ids.append(int(str(v).strip()))
        except (TypeError, ValueError):
            continue  # rows without a usable id are counted as rejected rows
    return np.unique(np.asarray(ids, dtype=np.int64))


@dataclass
class ScoringModel:
    """The runs' ensemble, the training index and the calibration, loaded once."""

    space: str
    members: list[Member]
    ensemble: Ensemble
    index: VectorIndex
    calibration: Calibration

    @classmethod
    def load(cls, fs: FeatureStore, run_ids: list[str], recalibrate: bool = False) -> ScoringModel:
        space, members = load_members(fs, run_ids)
        index = _train_index(fs, space)
        cal = load_or_fit_calibration(fs, space, members, index, refit=recalibrate)
        return cls(space, members, Ensemble([m.classifier for m in members]), index, cal)

    @property
    def run_key(self) -> str:
        return run_key(self.members)

    def scores(self, fs: FeatureStore, observation_ids: np.ndarray):
        """``(ObservationScores, rows)`` of the observations that have vectors."""
        rows, _ = load_rows(fs, self.space, observation_ids, labelled_only=False)
        if len(rows) == 0:
            return None, rows
        return observation_scores(self.ensemble, rows), rows

    def decide(self, scores: ObservationScores, rule: str = "track3",
               knn: np.ndarray | None = None) -> Decided:
        return decide_observations(scores, self.ensemble, self.calibration, self.index, rule, knn)


def compare_rules(fs: FeatureStore, model: ScoringModel, observation_ids: np.ndarray,
                  truth: np.ndarray) -> dict[str, dict[str, float]]:
    """Official scores of every decision rule on labelled observations (decision analysis)."""
    from heads.metrics import fungiclef_scores

    scores, _ = model.scores(fs, observation_ids)
    if scores is None:
        raise StoreError("none of these observations has vectors in the runs' space")
    order = np.argsort(observation_ids)
    pos = np.searchsorted(observation_ids[order], scores.observation_ids)
    y = np.asarray(truth)[order][pos]
    poison = poisonous_ids(fs)
    cal = model.calibration
    knn = _detector(model.index, cal.detector_k, cal.fusion_weight).knn_scores(scores.queries)
    return {rule: fungiclef_scores(y, model.decide(scores, rule, knn).class_id, poison)
            for rule in ("argmax", "argmax_unknown", "track3")}


def score_batch(fs: FeatureStore, metadata: str | Path, run_ids: list[str],
                images_dir: str | Path | None = None, embeddings: str | Path | None = None,
                out: str | Path | None = None, batch: str | None = None, rule: str = "track3",
                workers: int | None = None, recalibrate: bool = False,
                model: ScoringModel | None = None) -> ScoreReport:
    """Score every observation of ``metadata``; see the module docstring. ``model``
    (loaded for ``run_ids``) saves reloading the heads and index when scoring again."""
    if rule not in RULES:
        raise ValueError(f"unknown decision rule {rule!r}; choose one of {', '.join(RULES)}")
    metadata = Path(metadata)
    model = model or ScoringModel.load(fs, run_ids, recalibrate=recalibrate)
    space = model.space
    batch = batch or metadata.stem
    report = ScoreReport(batch=batch, run_key=model.run_key)

    if embeddings is not None:
        check_embedding_file(embeddings, fs.get_space(space))
    ingest = fs.ingest_metadata(metadata, role="new", images_dir=images_dir)
    report.rows_read, report.rows_rejected = ingest.read, ingest.rejected
    batch_ids = _batch_observation_ids(metadata)
    stored = fs.sql("SELECT observation_id FROM observations WHERE observation_id IN "
                    "(SELECT unnest(?::BIGINT[]))", [batch_ids.tolist()]).column(0)
    stored_ids = np.sort(stored.to_numpy().astype(np.int64))
    rejected_ids = np.setdiff1d(batch_ids, stored_ids)
    report.observations, report.rejected_observations = len(batch_ids), len(rejected_ids)

    if embeddings is not None:
        fs.ingest_embeddings(embeddings, space)
    elif images_dir is not None:
        from store.embedding import ImageEmbedder, embed_store

        spec = fs.get_space(space)
        embedder = ImageEmbedder(spec.model_id, pooling=spec.pooling, dtype=spec.dtype)
        er = embed_store(fs, embedder, space, workers=workers)
        report.embedded, report.embedding_failures = er.embedded, er.failed

    scores, rows = model.scores(fs, stored_ids)
    parts: list[tuple[Decided, str]] = []
    evidence = np.zeros((0, N_EVIDENCE), np.int64)
    if scores is not None:  # one search gives the evidence and the kNN unknown score
        near = nearest_training_observations(fs, space, scores.queries, k=N_EVIDENCE, where="train",
                                             detector_k=model.calibration.detector_k,
                                             index=model.index)
        parts.append((model.decide(scores, rule, knn=near.unknown_score), "scored"))
        evidence = near.observation_ids
    imageless = np.setdiff1d(stored_ids, rows.observation_ids)
    report.scored, report.no_usable_image = len(stored_ids) - len(imageless), len(imageless)
    counts = _training_counts(fs, _known_species_classes(model.ensemble))
    for ids, status in ((imageless, "no_usable_image"), (rejected_ids, "rejected")):
        if len(ids):
            d = prior_decision(model.ensemble, model.calibration, counts, len(ids))
            d.observation_ids = ids
            parts.append((d, status))

    table = _predictions_table(parts, evidence)
    fs.write_predictions(model.run_key, batch, table)
    report.answers = _answer_counts(table)
    report.outputs = write_outputs(table, out or metadata.with_name(f"{batch}.predictions.csv"))
    return report


def check_embedding_file(path: str | Path, spec) -> None:
    """Refuse, before anything is written, a vector file whose dimension is not the space's."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embeddings file {path} does not exist")
    try:
        f = pq.ParquetFile(path)
        kind = f.schema_arrow.field("embedding").type
        if pa.types.is_fixed_size_list(kind):
            dim = kind.list_size
        else:  # variable-length lists: look at the first vector
            first = f.read_row_group(0, columns=["embedding"]).slice(0, 1) if f.num_row_groups else None
            dim = len(first.column(0)[0]) if first is not None and first.num_rows else spec.dim
    except (pa.ArrowInvalid, KeyError, OSError) as exc:
        raise ValueError(f"{path} is not a Parquet file with an 'embedding' column: {exc}") from exc
    if dim != spec.dim:
        raise ValueError(
            f"{path} holds {dim}-d vectors but the runs' embedding space "
            f"{spec.name!r} is {spec.dim}-d ({spec.model_id}); embed the batch with that model "
            "or score with heads trained on your vectors' space")


def _training_counts(fs: FeatureStore, classes: np.ndarray) -> np.ndarray:
    t = fs.sql("SELECT o.class_id, count(*) AS n FROM images i JOIN observations o "
               "USING (observation_id) WHERE o.role = 'train' GROUP BY 1")
    got = dict(zip(t.column(0).to_pylist(), t.column(1).to_pylist(), strict=True))
    return np.asarray([got.get(int(c), 0) for c in classes], dtype=np.float64) + 1.0


def _predictions_table(parts: list[tuple[Decided, str]], evidence: np.ndarray) -> pa.Table:
    cols: dict[str, list] = {k: [] for k in (
        "observation_id", "class_id", "status", "reason", "poison_prob", "unknown_score",
        "unknown_prob", "top5_class_ids", "top5_probs", "evidence_observation_ids")}
    for d, status in parts:
        top = np.argsort(-d.probs, axis=1)[:, :TOP]
        scale = (1.0 - d.unknown_prob)[:, None]
        cols["observation_id"] += d.observation_ids.tolist()
        cols["class_id"] += d.class_id.tolist()
        cols["status"] += [status] * len(d.class_id)
        cols["reason"] += d.reason
        cols["poison_prob"] += d.poison_prob.tolist()
        cols["unknown_score"] += [None if np.isnan(v) else float(v) for v in d.unknown_score]
        cols["unknown_prob"] += d.unknown_prob.tolist()
        cols["top5_class_ids"] += d.classes[top].tolist()
        cols["top5_probs"] += np.round(np.take_along_axis(d.probs, top, 1) * scale, 6).tolist()
        if status == "scored":
            cols["evidence_observation_ids"] += [[int(x) for x in row if x >= 0] for row in evidence]
        else:
            cols["evidence_observation_ids"] += [[] for _ in d.class_id]
    return pa.table({
        "observation_id": pa.array(cols["observation_id"], pa.int64()),
        "class_id": pa.array(cols["class_id"], pa.int32()),
        "status": pa.array(cols["status"], pa.string()),
        "reason": pa.array(cols["reason"], pa.string()),
        "poison_prob": pa.array(cols["poison_prob"], pa.float64()),
        "unknown_score": pa.array(cols["unknown_score"], pa.float64()),
        "unknown_prob": pa.array(cols["unknown_prob"], pa.float64()),
        "top5_class_ids": pa.array(cols["top5_class_ids"], pa.list_(pa.int32())),
        "top5_probs": pa.array(cols["top5_probs"], pa.list_(pa.float64())),
        "evidence_observation_ids": pa.array(cols["evidence_observation_ids"], pa.list_(pa.int64())),
    }).sort_by("observation_id")


def _answer_counts(table: pa.Table) -> dict[str, int]:
    reasons = table.column("reason").to_pylist()
    cls = table.column("class_id").to_numpy()
    return {
        "species": int(np.sum(cls >= 0)),
        "unknown": int(np.sum(cls < 0)),
        "raised for poison risk": sum("poison-risk" in r for r in reasons),
    }


def write_outputs(table: pa.Table, out: str | Path) -> dict[str, str]:
    """Submission CSV (``observation_id,class_id``) at ``out`` and the full table beside it
    as ``<out stem>.full.parquet`` and ``<out stem>.full.csv``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table.select(["observation_id", "class_id"]), out)
    full_pq = out.with_name(out.stem + ".full.parquet")
    pq.write_table(table, full_pq)
    flat = table.set_column(
        table.column_names.index("top5_class_ids"), "top5_class_ids",
        pa.array([" ".join(map(str, x)) for x in table.column("top5_class_ids").to_pylist()]))
    for name in ("top5_probs", "evidence_observation_ids"):
        flat = flat.set_column(flat.column_names.index(name), name,
                               pa.array([" ".join(map(str, x)) for x in flat.column(name).to_pylist()]))
    full_csv = out.with_name(out.stem + ".full.csv")
    pacsv.write_csv(flat, full_csv)
    return {"submission": str(out), "full (parquet)": str(full_pq), "full (csv)": str(full_csv)}

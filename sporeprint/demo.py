"""`sporeprint demo`: the whole job on simulated data, end to end.

simulate (metadata, precomputed vectors and a photo of every image) → ingest →
encode metadata → splits → index → two-fold ensemble on the precomputed vectors →
embed the photos with a tiny DINOv2 built here → two-fold ensemble on the photo
vectors → score the held-out batch twice (precomputed vectors; its photos) →
evaluate → decision analysis → one SQL query and look-alike searches → report. The
store is left in place for the user.

Two trained runs, two spaces: ``sim`` (the simulator's vectors, whose difficulty is
measured in docs/simulator.md) gives the quality measures; ``dinov2_tiny`` (photos in)
is trained last, so it is the store's default run: ``score``, ``serve``, ``report``
and the Python API use it unless ``--run`` names the other.

The data is a simulation (see the README): the numbers show that the
machinery works, not how well it identifies real fungi.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sporeprint.errors import SporeprintError

log = logging.getLogger(__name__)

SPACE = "sim"  # the simulator's precomputed 1024-d vectors
PHOTO_SPACE = "dinov2_tiny"  # the photos, through a tiny randomly initialised DINOv2
PHOTO_SIZE = 64  # side of the simulated JPEGs, in pixels
# The demo's photo model: 56-px crops in 7-px patches (64 tokens), two layers of width
# 128, random weights drawn with std 0.2; CLS token + mean patch token (256-d).
PHOTO_MODEL = {"image_size": 56, "patch_size": 7, "hidden_size": 128, "layers": 2,
               "init_std": 0.2}
PHOTO_POOLING = "cls+mean"

SCALES = {
    # scale: (simulator scale, epochs, held-out observations photographed; None: all)
    "small": ("small", 12, None),
    "medium": ("medium", 15, None),
    "full": ("full", 20, 1000),
}

EXAMPLE_SQL = """SELECT s.genus,
       count(DISTINCT o.observation_id) AS observations,
       round(avg(CASE WHEN s.poisonous THEN 1 ELSE 0 END), 3) AS poisonous_share,
       mode(o.habitat) AS usual_habitat
FROM observations o JOIN species s USING (class_id)
WHERE o.role = 'train'
GROUP BY s.genus HAVING bool_or(s.poisonous)
ORDER BY observations DESC LIMIT 5"""


@dataclass
class DemoReport:
    directory: Path
    store: Path
    seconds: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    runs: dict[str, str] = field(default_factory=dict)  # space -> its ensemble run
    top1: dict[str, tuple[float, int]] = field(default_factory=dict)  # space -> (top-1, n)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)


class _Steps:
    """Numbered step headers with timings."""

    def __init__(self, total: int, report: DemoReport):
        self.total, self.n, self.report = total, 0, report
        self._t, self._name = None, None

    def __call__(self, name: str) -> None:
        self._close()
        self.n += 1
        self._name, self._t = name, time.perf_counter()
        print(f"[{self.n}/{self.total}] {name} ...", flush=True)

    def _close(self) -> None:
        if self._name is not None:
            self.report.seconds[self._name] = time.perf_counter() - self._t

    def done(self) -> None:
        self._close()
        self._name = None


def build_tiny_dinov2(directory: Path, seed: int = 0, image_size: int = 224, patch_size: int = 14,
                      hidden_size: int = 64, layers: int = 2, init_std: float = 0.02) -> Path:
    """A small randomly initialised DINOv2 saved like a hub checkpoint (weights +
    processor config), so it loads through the same path as ``facebook/dinov2-large``.

    The processor resizes the shortest edge to ``image_size * 8/7`` (256 for 224, as the
    DINOv2 checkpoints do) and centre-crops ``image_size``. ``init_std`` is the spread of
    the random weights: at the training-time 0.02 the untrained network is close to
    linear in its pixels and its pooled output keeps little but the mean colour; the
    demo's 0.2 keeps more of the colour mix (docs/simulator.md, "Photos")."""
    import torch
    from transformers import Dinov2Config, Dinov2Model
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    if (directory / "config.json").is_file():
        return directory
    torch.manual_seed(seed)
    config = Dinov2Config(hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=4,
                          intermediate_size=2 * hidden_size, patch_size=patch_size,
                          image_size=image_size, initializer_range=init_std)
    Dinov2Model(config).eval().save_pretrained(directory)
    # The DINOv2 checkpoints' processor settings: shortest edge 256 (bicubic), crop 224.
    BitImageProcessorPil(size={"shortest_edge": round(image_size * 8 / 7)}, resample=3,
                         crop_size={"height": image_size, "width": image_size},
                         do_center_crop=True, image_mean=[0.485, 0.456, 0.406],
                         image_std=[0.229, 0.224, 0.225], do_convert_rgb=True
                         ).save_pretrained(directory)
    return directory


def run_demo(directory: str | Path = "demo-run", scale: str = "small", seed: int = 0,
             epochs: int | None = None, photos: int | None = None) -> DemoReport:
    """``photos``: held-out observations that get photos (default: every one at small and
    medium scale); every training and validation image always gets one."""
    from embedder import ImageEmbedder
    from heads.train import TrainConfig
    from sporeprint.embedding import embed_store
    from sporeprint.evaluation import evaluate_files, format_scores
    from sporeprint.indexing import build_index
    from sporeprint.lookalikes import find_lookalikes, observation_query
    from sporeprint.scoring import ScoringModel, compare_rules, score_batch
    from sporeprint.scoring.calibration import fit_and_record
    from sporeprint.simulator.images import SpeciesLook, write_images
    from sporeprint.simulator.simulate import SimConfig, simulate, write_simulation
    from sporeprint.training import train_folds
    from store import FeatureStore, SearchFilters

    if scale not in SCALES:
        raise SporeprintError(f"scale={scale!r}; choose one of {', '.join(SCALES)}")
    if photos is not None and photos < 1:
        raise SporeprintError(f"photos={photos}; give at least 1 held-out observation to "
                              "photograph, or leave --photos out")
    sim_scale, default_epochs, default_photos = SCALES[scale]
    epochs = epochs or default_epochs
    photos = default_photos if photos is None else photos
    directory = Path(directory)
    store_path = directory / "fungi.duckdb"
    if store_path.exists():
        raise SporeprintError(f"{store_path} already exists; pass another --dir, or delete "
                         f"{directory} to start over")
    directory.mkdir(parents=True, exist_ok=True)
    report = DemoReport(directory, store_path)
    step = _Steps(11, report)
    config = TrainConfig(epochs=epochs, seed=seed)

    step("simulating FungiCLEF-like data and its photos (a simulation, not real observations)")
    sim = simulate(SimConfig(scale=sim_scale, seed=seed))
    files = write_simulation(sim, directory / "data", progress=True)
    # A photo of every training and validation image (the photo heads learn from them) and
    # of the first `photos` held-out observations (the rest are answered from the prior).
    roles = np.asarray(sim.image_roles)
    test_rows = np.flatnonzero(roles == "test")
    obs = sim.image_observation_ids[test_rows]
    keep_obs = np.unique(obs)[:photos]
    pick = np.concatenate([np.flatnonzero(roles != "test"), test_rows[np.isin(obs, keep_obs)]])
    looks = [SpeciesLook.draw(seed, g, k) for g, k in
             zip(sim.species["genus"].to_pylist(), sim.species["key"].to_pylist(), strict=True)]
    images_dir = directory / "data" / "images"
    write_images(sim.image_paths[pick], sim.image_observation_ids[pick], sim.image_species[pick],
                 looks, images_dir, seed, size=PHOTO_SIZE, progress=True)
    s = sim.summary()
    report.add(f"simulated {s['train']['observations']:,} training, {s['val']['observations']:,} "
               f"validation and {s['test']['observations']:,} held-out observations; "
               f"{len(pick):,} photos ({PHOTO_SIZE} px): every training and validation image, "
               f"and the {int(np.isin(obs, keep_obs).sum())} images of {len(keep_obs)} held-out "
               "observations")

    with FeatureStore(store_path) as fs:
        step("ingesting metadata (with its photos) and precomputed embeddings")
        for role, key in (("train", "train"), ("val", "val")):
            r = fs.ingest_metadata(files[key], role=role, images_dir=images_dir)
            print(f"  {Path(files[key]).name}: {r}")
            e = fs.ingest_embeddings(files[f"embeddings_{role}"], SPACE, model_id="simulator")
            print(f"  {Path(files[f'embeddings_{role}']).name}: {e}")

        step("encoding metadata and making seeded validation splits")
        info = fs.fit_encoder()
        fs.encode_observations()
        fs.make_splits(seed)
        print(f"  encoder version {info.version}: {len(info.columns)} columns")

        step("building the look-alike index over training images")
        index = build_index(fs, SPACE, "exact", "train")
        print(f"  {len(index):,} vectors")

        step(f"training a two-fold MLP ensemble on the simulated vectors ({epochs} epochs per fold)")
        sim_run = _train(fs, SPACE, config, train_folds, fit_and_record)
        report.runs[SPACE] = sim_run

        step("embedding the training and validation photos with a tiny DINOv2 built here")
        model_dir = build_tiny_dinov2(directory / "models" / "dinov2-tiny", seed, **PHOTO_MODEL)
        embedder = ImageEmbedder(str(model_dir), pooling=PHOTO_POOLING, device="cpu",
                                 dtype="float32")
        er = embed_store(fs, embedder, PHOTO_SPACE, batch_size=64, workers=0)
        print(f"  {er.embedded:,} photos embedded into space {PHOTO_SPACE!r} "
              f"({embedder.dim}-d, {er.failed} failed)")

        step(f"training a two-fold MLP ensemble on the photo vectors ({epochs} epochs per fold)")
        photo_run = _train(fs, PHOTO_SPACE, config, train_folds, fit_and_record)
        report.runs[PHOTO_SPACE] = photo_run
        assert fs.default_run() == photo_run  # trained last: the store's default run

        step("scoring the held-out batch: precomputed vectors, then its photos")
        out_csv = directory / "predictions.csv"
        model = ScoringModel.load(fs, [sim_run])  # heads, training index, calibration
        sr = score_batch(fs, files["test"], [sim_run], images_dir=images_dir,
                         embeddings=files["embeddings_test"], out=out_csv, batch="heldout",
                         model=model)
        print("\n".join("  " + line for line in sr.lines()))
        photo_csv = directory / "photo-predictions.csv"
        pr = score_batch(fs, files["test"], [photo_run], images_dir=images_dir, out=photo_csv,
                         batch="heldout_photos", workers=0)
        print("\n".join("  " + line for line in pr.lines()))

        step("evaluating against the truth file")
        scores = evaluate_files(out_csv, files["truth"])
        photo_scores = evaluate_files(photo_csv, files["truth"])
        truth = sim.test_truth()
        table = compare_rules(fs, model, truth["observation_id"].to_numpy(),
                              truth["class_id"].to_numpy())
        costs = cost_analysis(fs.batch_predictions("heldout"), truth, fs.poisonous_class_ids())
        report.top1 = heads_top1(fs, truth, {SPACE: "heldout", PHOTO_SPACE: "heldout_photos"})

        step("one SQL query and look-alike searches")
        genus = fs.sql(EXAMPLE_SQL)
        query_obs = int(truth["observation_id"][0].as_py())
        hits = find_lookalikes(fs, index, observation_query(fs, SPACE, query_obs), k=5,
                               filters=SearchFilters(poisonous=True))[0]
        photo_query = _photo_query(sim, keep_obs)
        photo_hits = None
        if photo_query is not None:
            photo_index = build_index(fs, PHOTO_SPACE, "exact", "train")
            q = embedder.embed_images([images_dir / photo_query[1]])
            photo_hits = find_lookalikes(fs, photo_index, q / np.linalg.norm(q), k=5,
                                         filters=SearchFilters(role="train"))[0]
        step.done()

    p1, n1 = report.top1[PHOTO_SPACE]
    s1, m1 = report.top1[SPACE]
    report.add(
        "", "Photos in, answers out (space dinov2_tiny: simulated photos through a randomly "
        "initialised tiny DINOv2; the store's default run):",
        f"  heads' top-1 on the known-species held-out observations scored from photos: "
        f"{_pct(p1)} of {n1} (the simulated-vector heads: {_pct(s1)} of {m1})",
        f"  held-out batch from photos, Track 1 {photo_scores['track1']:.4f}, Track 3 "
        f"{photo_scores['track3']:.4f}, poisonous called edible/unknown "
        f"{photo_scores['poisonous_as_edible']}",
        f"  runs: {photo_run} (photos, default); {SPACE}: {sim_run} (pass --run)")
    report.add("", "Held-out batch, official scores (simulated vectors, Track 3-optimal decisions):",
               format_scores(scores))
    report.add("", "Decision analysis on the held-out batch:", format_rule_table(table))
    report.add("", "The Track 3 rule under three cost matrices (sporeprint decide):", costs)
    report.add("", "Example SQL (poisonous genera in training):", EXAMPLE_SQL, _table_text(genus))
    report.add("", f"Look-alikes of observation {query_obs} among poisonous training observations:",
               _table_text(hits.select(["rank", "observation_id", "score", "species", "poisonous"])))
    photo_arg = ""
    if photo_hits is not None:
        photo_arg = str(images_dir / photo_query[1])
        report.add("", f"Look-alikes of the photo {photo_arg} (held-out observation "
                       f"{photo_query[0]}) among training photos:",
                   _table_text(photo_hits.select(["rank", "observation_id", "score", "species",
                                                  "poisonous"])))
    report.add("", f"store: {store_path}", f"predictions: {out_csv} (vectors), {photo_csv} (photos)",
               "time per step: " + ", ".join(f"{k.split(' (')[0]} {v:.1f}s"
                                             for k, v in report.seconds.items()))
    report.add("", "Try next:",
               f"  sporeprint serve --store {store_path}      # drop a photo from {images_dir}/ "
               "on http://127.0.0.1:8000",
               f"  sporeprint score --store {store_path} --metadata {files['test']} --images "
               f"{images_dir} --out {directory / 'again.csv'}",
               f"  sporeprint sql --store {store_path} \"SELECT * FROM predictions LIMIT 5\"",
               f"  sporeprint search --store {store_path} --space {SPACE} --role train "
               f"--observation {query_obs} -k 10")
    if photo_arg:
        report.add(f"  sporeprint search --store {store_path} --image {photo_arg} -k 5")
    report.add(f"  sporeprint evaluate --predictions {out_csv} --truth {files['truth']}",
               f"  sporeprint decide --store {store_path} --batch heldout --cost-poisonous-as-edible 1000",
               f"  sporeprint report --store {store_path} --run {sim_run} --batch heldout "
               f"--out {directory / 'report-sim.html'}")
    return report


def _train(fs, space: str, config, train_folds, fit_and_record) -> str:
    """A two-fold MLP ensemble on ``space``, calibrated as `sporeprint train` ends; its run id."""
    runs = train_folds(fs, space, head="mlp", folds=[1, 2], config=config)
    for r in runs[:-1]:
        print(f"  {r.run_id}: validation accuracy {r.metrics.get('accuracy', float('nan')):.3f}")
    cal = fit_and_record(fs, [runs[-1].run_id])
    print(f"  calibrated the ensemble: {cal.summary()}")
    return runs[-1].run_id


def _photo_query(sim, observation_ids: np.ndarray) -> tuple[int, str] | None:
    """``(observation id, photo file name)`` of the first known-species observation among
    ``observation_ids`` (held-out observations that have photos), or None."""
    for i in np.flatnonzero(np.isin(sim.image_observation_ids, observation_ids)
                            & (sim.image_class_ids >= 0)):
        return int(sim.image_observation_ids[i]), str(sim.image_paths[i])
    return None


def heads_top1(fs, truth, batches: dict[str, str]) -> dict[str, tuple[float, int]]:
    """Per space, the heads' top-1 (the first of the top-5, before the decision rule) on the
    known-species observations of its batch that were scored from vectors: ``(share, n)``."""
    t_ids = truth["observation_id"].to_numpy()
    t_cls = truth["class_id"].to_numpy()
    order = np.argsort(t_ids)
    out = {}
    for space, batch in batches.items():
        p = fs.batch_predictions(batch)
        scored = np.asarray(p["status"].to_pylist()) == "scored"
        ids = p["observation_id"].to_numpy()[scored]
        top = np.array([t[0] for t, ok in zip(p["top5_class_ids"].to_pylist(), scored,
                                              strict=True) if ok], dtype=np.int64)
        y = t_cls[order][np.searchsorted(t_ids[order], ids)]
        known = y >= 0
        out[space] = (float((top[known] == y[known]).mean()) if known.any() else float("nan"),
                      int(known.sum()))
    return out


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}%"


def cost_analysis(predictions, truth, poisonous_ids) -> str:
    """Track 1-3 and the answer mix of the stored decisions replayed under each of
    ``sporeprint.decisions.COST_MATRICES``."""
    from heads.decision import Costs, answer_mix
    from heads.metrics import fungiclef_scores
    from sporeprint.decisions import COST_MATRICES, redecide

    t_ids = truth["observation_id"].to_numpy()
    t_cls = truth["class_id"].to_numpy()
    pos = np.searchsorted(t_ids[np.argsort(t_ids)], predictions["observation_id"].to_numpy())
    y = t_cls[np.argsort(t_ids)][pos]
    head = (f"{'costs (poisonous→edible : edible→poisonous)':<46} {'Track 1':>8} {'Track 2':>8} "
            f"{'Track 3':>8} {'pois. answers':>13} {'unknown':>8}")
    rows = [head, "-" * len(head)]
    for name, (a, b) in COST_MATRICES.items():
        new = redecide(predictions, Costs(poisonous_as_edible=a, edible_as_poisonous=b))
        cls = new["class_id"].to_numpy()
        s = fungiclef_scores(y, cls, poisonous_ids)
        mix = answer_mix(new["kind"])
        rows.append(f"{name:<46} {s['track1']:>8.4f} {s['track2']:>8.4f} {s['track3']:>8.4f} "
                    f"{int(np.isin(cls, poisonous_ids).sum()):>13d} {mix['unknown']:>8d}")
    return "\n".join(rows)


RULE_NAMES = {"argmax": "plain argmax", "argmax_unknown": "argmax + calibrated unknown",
              "track3": "Track 3-optimal rule"}


def format_rule_table(table: dict[str, dict[str, float]]) -> str:
    head = f"{'rule':<30} {'Track 1':>8} {'Track 2':>8} {'Track 3':>8} {'macro F1':>9} {'pois→edible':>12}"
    rows = [head, "-" * len(head)]
    for rule, s in table.items():
        rows.append(f"{RULE_NAMES.get(rule, rule):<30} {s['track1']:>8.4f} {s['track2']:>8.4f} "
                    f"{s['track3']:>8.4f} {s['macro_f1']:>9.2f} {s['poisonous_as_edible']:>12d}")
    return "\n".join(rows)


def _table_text(table) -> str:
    cols = table.column_names
    data = [[_cell(v) for v in table.column(c).to_pylist()] for c in cols]
    widths = [max([len(c)] + [len(v) for v in col]) for c, col in zip(cols, data, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    for i in range(table.num_rows):
        lines.append("  ".join(data[j][i].ljust(widths[j]) for j in range(len(cols))))
    return "\n".join(lines)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return "" if v is None else str(v)

"""`sporeprint demo`: the whole job on simulated data, end to end.

simulate → ingest (metadata + precomputed vectors) → encode metadata → splits →
index → two-fold ensemble → embed a few hundred photos with a tiny DINOv2 built
here → score the held-out batch → evaluate → decision analysis → one SQL query
and one look-alike search → report. The store is left in place for the user.

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
IMAGE_SPACE = "dinov2_tiny"  # the photos, through a tiny randomly initialised DINOv2

SCALES = {
    # scale: (simulator scale, epochs, photos embedded)
    "small": ("small", 12, 406),
    "medium": ("medium", 15, 500),
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


def build_tiny_dinov2(directory: Path, seed: int = 0) -> Path:
    """A small randomly initialised DINOv2 saved like a hub checkpoint (weights +
    processor config), so it loads through the same path as ``facebook/dinov2-large``."""
    import torch
    from transformers import Dinov2Config, Dinov2Model
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    if (directory / "config.json").is_file():
        return directory
    torch.manual_seed(seed)
    config = Dinov2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=128, patch_size=14, image_size=224)
    Dinov2Model(config).eval().save_pretrained(directory)
    # The DINOv2 checkpoints' processor settings: shortest edge 256 (bicubic), crop 224.
    BitImageProcessorPil(size={"shortest_edge": 256}, resample=3, crop_size={"height": 224, "width": 224},
                      do_center_crop=True, image_mean=[0.485, 0.456, 0.406],
                      image_std=[0.229, 0.224, 0.225], do_convert_rgb=True).save_pretrained(directory)
    return directory


def run_demo(directory: str | Path = "demo-run", scale: str = "small", seed: int = 0,
             epochs: int | None = None, photos: int | None = None) -> DemoReport:
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
    step = _Steps(10, report)

    step("simulating FungiCLEF-like data (a simulation, not real observations)")
    sim = simulate(SimConfig(scale=sim_scale, seed=seed))
    files = write_simulation(sim, directory / "data", progress=True)
    # Photos for the first observations of the held-out batch: the image path runs for real.
    test_rows = np.flatnonzero(np.asarray(sim.image_roles) == "test")
    obs = sim.image_observation_ids[test_rows]
    keep_obs = np.unique(obs)[:photos]
    pick = test_rows[np.isin(obs, keep_obs)]
    looks = [SpeciesLook.draw(seed, g, k) for g, k in
             zip(sim.species["genus"].to_pylist(), sim.species["key"].to_pylist(), strict=True)]
    images_dir = directory / "data" / "images"
    write_images(sim.image_paths[pick], sim.image_observation_ids[pick], sim.image_species[pick],
                 looks, images_dir, seed, size=160, progress=True)
    s = sim.summary()
    report.add(f"simulated {s['train']['observations']:,} training, {s['val']['observations']:,} "
               f"validation and {s['test']['observations']:,} test observations; "
               f"{len(pick)} photos of {len(keep_obs)} test observations")

    with FeatureStore(store_path) as fs:
        step("ingesting metadata and precomputed embeddings")
        for role, key in (("train", "train"), ("val", "val")):
            r = fs.ingest_metadata(files[key], role=role)
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

        step(f"training a two-fold MLP ensemble ({epochs} epochs per fold)")
        runs = train_folds(fs, SPACE, head="mlp", folds=[1, 2],
                           config=TrainConfig(epochs=epochs, seed=seed))
        ensemble_run = runs[-1].run_id
        for r in runs[:-1]:
            print(f"  {r.run_id}: validation accuracy {r.metrics.get('accuracy', float('nan')):.3f}")
        cal = fit_and_record(fs, [ensemble_run])  # as `sporeprint train` ends
        print(f"  calibrated the ensemble: {cal.summary()}")

        step("scoring the held-out batch (new observations, precomputed vectors)")
        out_csv = directory / "predictions.csv"
        model = ScoringModel.load(fs, [ensemble_run])  # heads, training index, calibration
        sr = score_batch(fs, files["test"], [ensemble_run], images_dir=images_dir,
                         embeddings=files["embeddings_test"], out=out_csv, batch="heldout",
                         model=model)
        print("\n".join("  " + line for line in sr.lines()))

        step("embedding the batch's photos with a tiny DINOv2 built here")
        model_dir = build_tiny_dinov2(directory / "models" / "dinov2-tiny", seed)
        embedder = ImageEmbedder(str(model_dir), pooling="cls", device="cpu", dtype="float32")
        er = embed_store(fs, embedder, IMAGE_SPACE, batch_size=32, workers=1)
        report.add(f"photos: {er.embedded} embedded into space {IMAGE_SPACE!r} "
               f"({er.failed} failed: held-out images with no photo written), "
               f"{er.skipped} training/validation images have vectors but no photo")

        step("evaluating against the truth file")
        scores = evaluate_files(out_csv, files["truth"])
        truth = sim.test_truth()
        table = compare_rules(fs, model, truth["observation_id"].to_numpy(),
                              truth["class_id"].to_numpy())
        costs = cost_analysis(fs.batch_predictions("heldout"), truth, fs.poisonous_class_ids())

        step("one SQL query and one look-alike search")
        genus = fs.sql(EXAMPLE_SQL)
        query_obs = int(truth["observation_id"][0].as_py())
        hits = find_lookalikes(fs, index, observation_query(fs, SPACE, query_obs), k=5,
                               filters=SearchFilters(poisonous=True))[0]

        step("writing the report")
        step.done()

    report.add("", "Held-out batch, official scores (Track 3-optimal decisions):", format_scores(scores))
    report.add("", "Decision analysis on the held-out batch:", format_rule_table(table))
    report.add("", "The Track 3 rule under three cost matrices (sporeprint decide):", costs)
    report.add("", "Example SQL (poisonous genera in training):", EXAMPLE_SQL, _table_text(genus))
    report.add("", f"Look-alikes of observation {query_obs} among poisonous training observations:",
               _table_text(hits.select(["rank", "observation_id", "score", "species", "poisonous"])))
    report.add("", f"store: {store_path}", f"predictions: {out_csv}",
               "time per step: " + ", ".join(f"{k.split(' (')[0]} {v:.1f}s"
                                             for k, v in report.seconds.items()))
    report.add("", "Try next:",
               f"  sporeprint sql --store {store_path} \"SELECT * FROM predictions LIMIT 5\"",
               f"  sporeprint search --store {store_path} --space {SPACE} --role train "
               f"--observation {query_obs} -k 10",
               f"  sporeprint evaluate --predictions {out_csv} --truth {files['truth']}",
               f"  sporeprint decide --store {store_path} --batch heldout --cost-poisonous-as-edible 1000",
               f"  sporeprint serve --store {store_path}      # the look-alike page, http://127.0.0.1:8000")
    return report


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

"""The report's prediction-set section on a store whose heads hold the calibration slice
out: coverage by level on the batch's truth equals the stored sets against that truth,
the set-size histogram and the per-group table with captions computed from the numbers;
without a labelled batch the held-out test part is used."""

from __future__ import annotations

import re
from html import unescape

import numpy as np
import pyarrow.csv as pacsv
import pytest
from test_report import parse

from heads.train import TrainConfig
from sporeprint.cli import main
from sporeprint.report.sections.sets import clopper_pearson
from sporeprint.scoring import calibration as calib
from sporeprint.scoring import score_batch
from sporeprint.simulator.simulate import SimConfig, ingest_simulation, simulate, write_simulation
from sporeprint.training import train_folds
from store import FeatureStore

SEED = 4


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-sets")
    sim = simulate(SimConfig(scale="small", classes=70, seed=SEED, dim=16, count_scale=0.3))
    files = write_simulation(sim, root / "sim")
    store = root / "s.duckdb"
    with FeatureStore(store) as fs:
        ingest_simulation(fs, files, "sim", SEED)
        cfg = TrainConfig(epochs=3, lr=3e-3, progress=False, seed=SEED)
        run = train_folds(fs, "sim", head="mlp", head_params={"hidden": 32}, config=cfg,
                          out_dir=root / "runs", split_seed=SEED, calibration="holdout")[-1].run_id
        calib.fit_and_record(fs, [run])
        score_batch(fs, files["test"], [run], embeddings=files["embeddings_test"],
                    out=root / "pred.csv", batch="batch")
    out = root / "report.html"
    assert main(["report", "--store", str(store), "--batch", "batch", "--truth",
                 str(files["truth"]), "--out", str(out), "--map-points", "100",
                 "--heldout-points", "200"]) == 0
    return {"store": store, "files": files, "report": out, "root": root}


def test_coverage_at_90_equals_the_stored_sets_against_the_truth(world):
    page = parse(world["report"])
    s = page.sections["sets"]
    assert s["absent"] == [] and len(s["images"]) == 2
    full = pacsv.read_csv(world["root"] / "pred.full.csv").to_pylist()
    truth = pacsv.read_csv(world["files"]["truth"]).to_pydict()
    truth = dict(zip(truth["observation_id"], truth["class_id"], strict=True))
    with FeatureStore(world["store"], read_only=True) as fs:
        stored = fs.batch_predictions("batch")
        from sporeprint.scoring import ScoringModel

        run = fs.default_run()
        classes = set(ScoringModel.load(fs, [run]).classes.tolist())
        poisonous = set(fs.poisonous_class_ids().tolist())
    assert stored.num_rows == len(full)
    hits, pois = [], []
    for r in stored.to_pylist():
        t = truth[r["observation_id"]]
        hits.append((t if t in classes else -1) in r["prediction_set"])
        if t in poisonous:
            pois.append(hits[-1])
    k, n = int(np.sum(hits)), len(hits)
    text = " ".join(s["table_captions"])
    assert "Coverage per group at the 90% level" in text
    html = world["report"].read_text(encoding="utf-8")
    section = html[html.index('<section id="sets">'):]
    section = section[:section.index("</section>")]
    row = re.search(r"<td>all observations</td><td class=\"num\">([\d,]+)</td><td>([\d.]+)%</td>"
                    r"<td>([\d.]+)%–([\d.]+)%</td>", section)
    assert int(row.group(1).replace(",", "")) == n
    assert row.group(2) == f"{100 * k / n:.1f}"
    lo, hi = clopper_pearson(k, n)
    assert (row.group(3), row.group(4)) == (f"{100 * lo:.1f}", f"{100 * hi:.1f}")
    prow = re.search(r"<td>poisonous species</td><td class=\"num\">([\d,]+)</td><td>([\d.]+)%",
                     section)
    assert int(prow.group(1)) == len(pois) and prow.group(2) == f"{100 * np.mean(pois):.1f}"
    # the caption names exactly the groups whose coverage is under the level
    low = [name for name, share in re.findall(r"<td>([^<]+)</td><td class=\"num\">[\d,]+</td>"
                                              r"<td>([\d.]+)%</td>", section)
           if name != "all observations" and float(share) < 90.0]
    said = text.split("Coverage is lower than the level for ")[-1] if low else ""
    for name in low:
        assert name in said
    if not low:
        assert "No group is covered less than the level here" in text
    assert any("the diagonal is the promise" in c for c in s["captions"])
    assert "batch 'batch', truth from" in unescape(html)


def test_clopper_pearson_matches_known_values():
    lo, hi = clopper_pearson(9, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.555, 0.9975)
    assert clopper_pearson(0, 5)[0] == 0.0 and clopper_pearson(5, 5)[1] == 1.0


def test_without_a_labelled_batch_the_held_out_part_is_used(world, tmp_path):
    out = tmp_path / "r.html"
    assert main(["report", "--store", str(world["store"]), "--batch", "batch", "--out",
                 str(out), "--map-points", "100", "--heldout-points", "150"]) == 0
    s = parse(out).sections["sets"]
    assert s["absent"] == [] and len(s["images"]) == 2
    assert "held-out test part" in out.read_text(encoding="utf-8")

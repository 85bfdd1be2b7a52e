"""`sporeprint report` on a real demo store: every section present with embedded images, the
report's queries agree with the store, missing data is one line, bad --run/--batch are one-line
errors; and (marked ``browser``) the page renders in headless Chromium."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from conftest import copy_folder

from heads.decision import answer_mix
from sporeprint.cli import main
from sporeprint.report.figures import ANSWER_LABELS
from sporeprint.scoring.calibration import record_id
from store import FeatureStore, reports

SECTIONS = {"data": 5, "map": 1, "run": 1, "heldout": 4, "batch": 2, "frontier": 1,
            "confusion": 1}
HEADINGS = ["The data", "Embedding map of training observations",
            "Trained run: validation and held-out scores",
            "Held-out decisions: rules, calibration, unknown detector", "Scored batch",
            "Danger frontier: where edible and poisonous meet",
            "Poisonous / edible / unknown confusion"]
LABEL_OFFSET = 10**11  # observation ids of the labelled copy of the held-out batch


class _Page(HTMLParser):
    """Sections (id -> headings, images, tables, absent notes) of a report page."""

    def __init__(self):
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.current = None
        self.external: list[str] = []
        self._in_h2 = False
        self._absent = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if key in a and not (a[key].startswith("data:") or a[key].startswith("#")):
                self.external.append(a[key])
        if tag == "section":
            self.current = self.sections.setdefault(
                a["id"], {"title": "", "images": [], "tables": 0, "absent": []})
        elif self.current is None:
            return
        elif tag == "h2":
            self._in_h2 = True
        elif tag == "img":
            self.current["images"].append(a["src"])
        elif tag == "table":
            self.current["tables"] += 1
        elif tag == "p" and a.get("class") == "absent":
            self._absent = True

    def handle_endtag(self, tag):
        self._in_h2 = self._in_h2 and tag != "h2"
        self._absent = self._absent and tag != "p"
        if tag == "section":
            self.current = None

    def handle_data(self, data):
        if self._in_h2:
            self.current["title"] += data
        if self._absent:
            self.current["absent"].append(data)


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _labelled_copy(data: Path, out: Path) -> tuple[Path, Path]:
    """The demo's held-out batch as a labelled file under new ids (truth joined in), with its
    precomputed vectors: a held-out batch whose observations carry their labels."""
    meta = pacsv.read_csv(data / "test_2024.csv")
    truth = pacsv.read_csv(data / "test_2024_truth.csv")
    at = pc.index_in(meta.column("observation_id"), truth.column("observation_id"))
    meta = meta.append_column("class_id", pc.take(truth.column("class_id"), at))
    ids = pc.add(meta.column("observation_id").cast(pa.int64()), LABEL_OFFSET)
    meta = meta.set_column(0, "observation_id", ids)
    i = meta.column_names.index("image_path")
    meta = meta.set_column(i, "image_path", pc.binary_join_element_wise("lab-", meta.column(i), ""))
    emb = pq.read_table(data / "embeddings_test.parquet")
    emb = emb.set_column(0, "image_path",
                         pc.binary_join_element_wise("lab-", emb.column("image_path"), ""))
    out.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(meta, out / "labelled.csv")
    pq.write_table(emb, out / "labelled_embeddings.parquet")
    return out / "labelled.csv", out / "labelled_embeddings.parquet"


@pytest.fixture(scope="module")
def demo(demo_world, tmp_path_factory):
    """A demo store (one epoch) with two scored batches: the unlabelled held-out batch and a
    labelled copy of it; and the report of it."""
    root = tmp_path_factory.mktemp("report")
    copy_folder(demo_world["dir"], root / "demo")  # scoring below writes to the store
    store = root / "demo" / "fungi.duckdb"
    with FeatureStore(store, read_only=True) as fs:
        run = reports.recent_runs(fs.con, ("ensemble",), 1).column("run_id")[0].as_py()
    meta, emb = _labelled_copy(root / "demo" / "data", root / "labelled")
    assert main(["score", "--store", str(store), "--metadata", str(meta), "--embeddings",
                 str(emb), "--run", run, "--batch", "labelled", "--out",
                 str(root / "labelled" / "predictions.csv")]) == 0
    out = root / "report.html"
    assert main(["report", "--store", str(store), "--run", run, "--batch", "heldout",
                 "--out", str(out), "--map-points", "600"]) == 0
    return {"root": root, "store": store, "run": run, "report": out}


def test_report_has_every_section_with_images(demo, capsys):
    page = parse(demo["report"])
    assert page.external == []  # self-contained: nothing fetched when opened
    assert list(page.sections) == list(SECTIONS)
    for sid, title in zip(SECTIONS, HEADINGS, strict=True):
        s = page.sections[sid]
        assert s["title"] == title
        assert s["absent"] == [], f"{sid}: {s['absent']}"
        assert len(s["images"]) == SECTIONS[sid], sid
        for src in s["images"]:
            assert src.startswith("data:image/png;base64,")
            png = base64.b64decode(src.split(",", 1)[1])
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert page.sections["run"]["tables"] == 2  # Track scores, calibration record
    assert page.sections["heldout"]["tables"] == 2  # scores per rule, confused toxicity
    assert page.sections["batch"]["tables"] == 1  # poison-risk observations with evidence
    assert page.sections["frontier"]["tables"] == 1  # closest cross pairs
    text = demo["report"].read_text(encoding="utf-8")
    assert f"run: {demo['run']}" in text and "batch: heldout" in text
    with FeatureStore(demo["store"], read_only=True) as fs:  # the answer mix the page shows
        stored = {r["kind"]: r["n"] for r in fs.sql(
            "SELECT kind, count(*) AS n FROM predictions WHERE batch = 'heldout' GROUP BY 1"
        ).to_pylist()}
    shown = ", ".join(f"{ANSWER_LABELS[k]} {stored.get(k, 0):,}" for k in ANSWER_LABELS)
    assert f"answers: {shown}." in text
    assert "calibration:" in text and "(poisonous)" in text  # evidence neighbours' toxicity


def test_report_queries_agree_with_the_store(demo):
    with FeatureStore(demo["store"], read_only=True) as fs:
        con = fs.con
        n_pred = con.sql("SELECT count(*) FROM predictions WHERE batch = 'heldout'").fetchall()[0][0]
        mix = answer_mix(reports.answer_kinds(con, "heldout").column("kind"))
        stored = dict(con.sql("SELECT kind, count(*) FROM predictions WHERE batch = 'heldout' "
                              "GROUP BY 1").fetchall())
        assert {k: n for k, n in mix.items() if n} == stored
        assert sum(mix.values()) == n_pred
        hist = answer_mix(reports.poison_probabilities(con, "heldout").column("kind"))
        assert hist == mix  # the histogram is coloured by the same kinds
        flagged = reports.poison_flagged(con, "heldout", limit=10**6)
        assert flagged.num_rows == mix["poison_risk"] > 0
        assert all(r["evidence"] for r in flagged.to_pylist())
        probs = flagged.column("poison_prob").to_numpy()
        assert np.all(np.diff(probs) <= 0)

        known = con.sql("SELECT count(*) FROM observations WHERE class_id >= 0").fetchall()[0][0]
        assert sum(reports.class_counts(con).column("observations").to_pylist()) == known
        tox = reports.toxicity_counts(con)
        assert sum(tox.column("observations").to_pylist()) == reports.count_observations(con)

        a = reports.sample_training_vectors(con, "sim", 50, seed=1)
        b = reports.sample_training_vectors(con, "sim", 50, seed=1)
        c = reports.sample_training_vectors(con, "sim", 50, seed=2)
        assert a.num_rows == 50 and a.equals(b) and not a.equals(c)
        assert a.schema.field("vector").type.list_size == 1024

        # the labelled batch: truth groups against answers, one row per labelled prediction
        out = reports.labelled_outcomes(con, "labelled")
        n_lab = con.sql("SELECT count(*) FROM predictions WHERE batch = 'labelled'").fetchall()[0][0]
        assert sum(out.column("observations").to_pylist()) == n_lab > 0
        assert set(out.column("truth").to_pylist()) == {"poisonous", "edible", "unknown"}
        assert reports.labelled_outcomes(con, "heldout").num_rows == 0  # unlabelled batch
        batches = {r["batch"]: r for r in reports.prediction_batches(con).to_pylist()}
        assert batches["labelled"]["labelled"] == n_lab and batches["heldout"]["labelled"] == 0


def test_report_of_a_store_with_metadata_only_says_what_is_missing(tmp_path, capsys):
    store = tmp_path / "meta-only.duckdb"
    with FeatureStore(store) as fs:
        fs.ingest_metadata(Path(__file__).parent / "data" / "df20_example_rows.csv", role="train")
    out = tmp_path / "r.html"
    assert main(["report", "--store", str(store), "--out", str(out)]) == 0
    page = parse(out)
    assert list(page.sections) == list(SECTIONS)
    assert len(page.sections["data"]["images"]) == 5
    for sid in ("map", "run", "heldout", "batch", "frontier", "confusion"):
        s = page.sections[sid]
        assert s["images"] == [] and len(s["absent"]) == 1, sid
    assert "sporeprint train" in page.sections["run"]["absent"][0]
    assert "no data for: map, run, heldout, batch, frontier, confusion" in capsys.readouterr().out


def test_report_refuses_unknown_run_batch_and_store(demo, tmp_path, capsys):
    store = str(demo["store"])
    assert main(["report", "--store", store, "--run", "nope", "--out", str(tmp_path / "a.html")]) == 2
    err = capsys.readouterr().err
    assert "run 'nope' is not in the store's runs table" in err and demo["run"] in err
    assert main(["report", "--store", store, "--batch", "nope", "--out", str(tmp_path / "b.html")]) == 2
    err = capsys.readouterr().err
    assert "batch 'nope'" in err and "heldout" in err
    cal = record_id(_members(demo))
    assert main(["report", "--store", store, "--run", cal, "--out", str(tmp_path / "c.html")]) == 2
    assert "not an ensemble or fold run" in capsys.readouterr().err
    assert main(["report", "--store", store, "--space", "nope", "--out", str(tmp_path / "e.html")]) == 2
    assert "embedding space 'nope' is not in the store" in capsys.readouterr().err
    assert main(["report", "--store", str(tmp_path / "none.duckdb"), "--out",
                 str(tmp_path / "d.html")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not any((tmp_path / f"{x}.html").exists() for x in "abcde")


def _members(demo) -> list[str]:
    with FeatureStore(demo["store"], read_only=True) as fs:
        config = reports.run_record(fs.con, demo["run"]).column("config")[0].as_py()
    return json.loads(config)["members"]


# ------------------------------------------------------------------------- browser
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--hide-scrollbars"]
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "screenshots" / "report.png"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.browser
def test_report_renders_in_headless_chromium(demo, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium)")
    url = demo["report"].resolve().as_uri()
    flags = CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    for heading in HEADINGS:
        assert f"<h2>{heading.replace('&', '&amp;')}</h2>" in dom
    assert dom.count('src="data:image/png;base64,') == sum(SECTIONS.values())

    shot = tmp_path / "report.png"
    subprocess.run([chromium, *flags, "--window-size=1280,2400", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120, check=True)
    from PIL import Image

    image = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert image.shape == (2400, 1280)
    assert image.std() > 20  # not a blank page: headings, plots and text
    # the header bar (dark) and the page body (light) are both there
    assert image[:40].mean() < 100 and image[-200:].mean() > 150
    if os.environ.get("SPOREPRINT_SAVE_SCREENSHOTS"):  # refresh the README's picture
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def test_truth_file_confusion_equals_the_stored_labels(demo, tmp_path):
    """The held-out batch against its truth file gives the same 3x3 counts as its labelled
    copy scored with the same run (labels stored in the observations)."""
    from sporeprint.report.build import TOXICITY, truth_confusion

    truth = demo["root"] / "demo" / "data" / "test_2024_truth.csv"
    with FeatureStore(demo["store"], read_only=True) as fs:
        m, unmatched = truth_confusion(fs, "heldout", truth)
        stored = np.zeros((3, 3), dtype=np.int64)
        for r in reports.labelled_outcomes(fs.con, "labelled").to_pylist():
            stored[TOXICITY.index(r["truth"]), TOXICITY.index(r["answer"])] = r["observations"]
    assert unmatched == 0 and m.sum() > 0
    np.testing.assert_array_equal(m, stored)
    out = tmp_path / "r.html"
    assert main(["report", "--store", str(demo["store"]), "--batch", "heldout", "--truth",
                 str(truth), "--out", str(out), "--map-points", "100"]) == 0
    s = parse(out).sections["confusion"]
    assert len(s["images"]) == 1 and s["absent"] == []
    assert "labels from test_2024_truth.csv" in out.read_text(encoding="utf-8")


def test_held_out_section_agrees_with_the_scorer(demo):
    """The held-out sample is the labelled test part; the per-rule table is `compare_rules`
    on it; the unknown-score figure's AUROC is the scorer's unknown score against truth."""
    from sklearn.metrics import roc_auc_score

    from sporeprint.report.build import (
        ReportOptions,
        _heldout_section,
        _resolve_run,
        reliability_bins,
    )
    from sporeprint.report.page import Table
    from sporeprint.scoring import ScoringModel, compare_rules

    with FeatureStore(demo["store"], read_only=True) as fs:
        sample = fs.held_out_sample(10**6)
        ids = sample.column("observation_id").to_numpy()
        truth = sample.column("class_id").to_numpy()
        test = fs.fold_observations(1)["test"]
        assert len(ids) > 0 and np.all(np.diff(ids) > 0) and np.isin(ids, test).all()
        np.testing.assert_array_equal(truth, fs.observation_class_ids(ids))
        assert (truth == -1).any() and (truth >= 0).any()  # known and unknown species
        small = fs.held_out_sample(20, seed=3)
        assert small.num_rows == 20 and small.equals(fs.held_out_sample(20, seed=3))

        run = _resolve_run(fs, demo["run"])
        section = _heldout_section(fs, run, ReportOptions(heldout_points=10**6))
        table = next(b for b in section.blocks if isinstance(b, Table))
        model = ScoringModel.load(fs, _members(demo))
        expected = compare_rules(fs, model, ids, truth)
        assert [r[0] for r in table.rows] == ["argmax", "argmax + unknown", "Track 3 rule"]
        for row, rule in zip(table.rows, ("argmax", "argmax_unknown", "track3"), strict=True):
            np.testing.assert_allclose(row[1:], [expected[rule][k] for k in
                                                 ("track1", "track2", "track3", "macro_f1")])
        scores, _ = model.scores(fs, ids)
        decided = model.decide(scores, "track3")
        y = truth[np.searchsorted(ids, scores.observation_ids)]
        auroc = roc_auc_score(~np.isin(y, model.classes), decided.unknown_score)
    text = " ".join(b.shows for b in section.blocks if hasattr(b, "shows"))
    assert f"AUROC {auroc:.3f}" in text
    assert section.figures == 4 and not any(getattr(b, "kind", "") == "absent"
                                            for b in section.blocks)

    conf, acc, count, ece = reliability_bins(np.array([0.05, 0.95, 0.95, 0.55]),
                                             np.array([0, 1, 0, 1]))
    assert count.tolist() == [1, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    assert acc[9] == 0.5 and conf[9] == 0.95 and acc[0] == 0.0
    assert ece == pytest.approx((0.05 + 0.45 + 2 * 0.45) / 4)


def test_heldout_points_flag_caps_the_held_out_sample(demo, tmp_path, capsys):
    """`--heldout-points N` decides a seeded sample of at most N held-out observations; a
    value below 10 is refused with a usage error naming it."""
    out = tmp_path / "r.html"
    assert main(["report", "--store", str(demo["store"]), "--run", demo["run"], "--batch",
                 "heldout", "--out", str(out), "--map-points", "100", "--heldout-points",
                 "12"]) == 0
    html = out.read_text()
    m = re.search(r"([\d,]+) labelled observations of the held-out test part \(a seeded "
                  r"sample of at most 12;", html)
    assert m is not None and int(m.group(1).replace(",", "")) == 12
    with pytest.raises(SystemExit):
        main(["report", "--store", str(demo["store"]), "--heldout-points", "3"])
    assert "'3' is not a whole number >= 10" in capsys.readouterr().err


def test_run_section_shows_the_stored_calibration_values(demo):
    """The calibration table reads the stored states: the temperature, the poison shift and
    the unknown threshold are the fitted numbers (not empty cells)."""
    from sporeprint.report.build import _resolve_run, _run_section
    from sporeprint.report.page import Table
    from sporeprint.scoring import ScoringModel

    with FeatureStore(demo["store"], read_only=True) as fs:
        run = _resolve_run(fs, demo["run"])
        section = _run_section(fs, run)
        model = ScoringModel.load(fs, _members(demo))
    table = next(b for b in section.blocks if isinstance(b, Table)
                 and b.columns[0].startswith("calibration"))
    values = {row[0]: row[1] for row in table.rows}
    cal = model.calibration
    assert values["calibration mode"] == cal.mode
    assert values["temperature"] == pytest.approx(cal.temperature["temperature"])
    assert values["unknown threshold (fused score)"] == pytest.approx(cal.detector["threshold"])
    shift_key = next(k for k in values if k.startswith("poison log-odds shift"))
    assert values[shift_key] == pytest.approx(cal.poison_prior["bias"])

"""`sporeprint report` on a real demo store: every section present with embedded images, the
safety panel's numbers and the captions' facts agree with the store, figures with nothing to
show are left out with one line, data text is never interpreted (mathtext, HTML), missing
data is one line, bad --run/--batch are one-line errors; and (marked ``browser``) the page
renders in headless Chromium."""

from __future__ import annotations

import base64
import io
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

# The most figures each section draws; one left out says so in one line ("omitted" note).
SECTIONS = {"safety": 0, "data": 5, "map": 1, "run": 2, "heldout": 4, "sets": 2, "batch": 2,
            "frontier": 1, "confusion": 1}
HEADINGS = ["Safety: poisonous mushrooms in the scored batch", "The data",
            "Embedding map of training observations",
            "Trained run: scores recorded at training, training curves, calibration",
            "Held-out decisions: rules, calibration, unknown detector",
            "Prediction sets: coverage by level, set sizes, groups", "Scored batch",
            "Danger frontier: where edible and poisonous meet",
            "Poisonous / edible / unknown confusion"]
LABEL_OFFSET = 10**11  # observation ids of the labelled copy of the held-out batch


class _Page(HTMLParser):
    """Sections (id -> heading, images, tables, absent and omitted notes, captions, tiles)
    of a report page."""

    def __init__(self):
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.current = None
        self.external: list[str] = []
        self._in_h2 = False
        self._text = None  # the list that the text being read belongs to
        self._tile = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if key in a and not (a[key].startswith("data:") or a[key].startswith("#")):
                self.external.append(a[key])
        if tag == "section":
            self.current = self.sections.setdefault(
                a["id"], {"title": "", "images": [], "tables": 0, "absent": [], "omitted": [],
                          "captions": [], "tiles": {}, "table_captions": []})
        elif self.current is None:
            return
        elif tag == "h2":
            self._in_h2 = True
        elif tag == "img":
            self.current["images"].append(a["src"])
        elif tag == "table":
            self.current["tables"] += 1
        elif tag == "p" and a.get("class") in ("absent", "omitted"):
            self._text = self.current[a["class"]]
        elif tag == "figcaption":
            self._text = self.current["captions"]
        elif tag == "caption":
            self._text = self.current["table_captions"]
        elif tag == "div" and a.get("class") == "tile":
            self._tile = a["data-key"]
        elif tag == "b" and self._tile:
            self.current["tiles"][self._tile] = ""

    def handle_endtag(self, tag):
        self._in_h2 = self._in_h2 and tag != "h2"
        if tag in ("p", "figcaption", "caption"):
            self._text = None
        if tag == "b":
            self._tile = None
        if tag == "section":
            self.current = None

    def handle_data(self, data):
        if self._in_h2:
            self.current["title"] += data
        if self._text is not None:
            self._text.append(data)
        if self._tile:
            self.current["tiles"][self._tile] += data


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
    with FeatureStore(store, read_only=True) as fs:  # the ensemble on the simulated vectors
        run = fs.sql("SELECT run_id FROM runs WHERE kind = 'ensemble' AND space = 'sim'"
                     ).column(0)[0].as_py()
    meta, emb = _labelled_copy(root / "demo" / "data", root / "labelled")
    assert main(["score", "--store", str(store), "--metadata", str(meta), "--embeddings",
                 str(emb), "--run", run, "--batch", "labelled", "--out",
                 str(root / "labelled" / "predictions.csv")]) == 0
    out = root / "report.html"
    assert main(["report", "--store", str(store), "--run", run, "--batch", "heldout",
                 "--out", str(out), "--map-points", "600"]) == 0
    truth_report = root / "truth-report.html"  # the held-out batch against its truth file
    assert main(["report", "--store", str(store), "--batch", "heldout", "--truth",
                 str(root / "demo" / "data" / "test_2024_truth.csv"), "--out", str(truth_report),
                 "--map-points", "100"]) == 0
    return {"root": root, "store": store, "run": run, "report": out, "truth_report": truth_report}


def test_report_has_every_section_with_images(demo, capsys):
    page = parse(demo["report"])
    assert page.external == []  # self-contained: nothing fetched when opened
    assert list(page.sections) == list(SECTIONS)
    for sid, title in zip(SECTIONS, HEADINGS, strict=True):
        s = page.sections[sid]
        assert s["title"] == title
        if sid == "sets":  # the demo trains with calibration mode oof: no set is promised
            assert len(s["absent"]) == 1 and "--calibration holdout" in s["absent"][0]
            continue
        assert s["absent"] == [], f"{sid}: {s['absent']}"
        # every figure is drawn or left out with its line
        assert len(s["images"]) + len(s["omitted"]) == SECTIONS[sid], sid
        for src in s["images"]:
            assert src.startswith("data:image/png;base64,")
            png = base64.b64decode(src.split(",", 1)[1])
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # the demo world trains one epoch: no curve to draw, and the page says so
    assert page.sections["run"]["omitted"] == [
        "No training curves: every fold was trained for 1 epoch, so each curve would be a "
        "single point."]
    assert page.sections["run"]["tables"] == 2  # Track scores, calibration record
    assert "Scores per decision rule (calibrated: temperature" in \
        " ".join(page.sections["heldout"]["table_captions"])
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
    data = page.sections["data"]
    assert len(data["images"]) + len(data["omitted"]) == 5 and data["images"]
    for sid in ("safety", "map", "run", "heldout", "sets", "batch", "frontier", "confusion"):
        s = page.sections[sid]
        assert s["images"] == [] and len(s["absent"]) == 1, sid
    assert "sporeprint train" in page.sections["run"]["absent"][0]
    assert "sporeprint score" in page.sections["safety"]["absent"][0]
    assert ("no data for: safety, map, run, heldout, sets, batch, frontier, confusion"
            in capsys.readouterr().out)


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
    drawn = sum(len(s["images"]) for s in parse(demo["report"]).sections.values())
    assert dom.count('src="data:image/png;base64,') == drawn > 0
    assert dom.count('class="tile"') >= 3  # the safety panel's headline numbers

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


def test_truth_file_confusion_equals_the_stored_labels(demo):
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
    out = demo["truth_report"]
    s = parse(out).sections["confusion"]
    assert len(s["images"]) == 1 and s["absent"] == []
    assert "labels from test_2024_truth.csv" in out.read_text(encoding="utf-8")


def test_held_out_section_agrees_with_the_scorer(demo):
    """The held-out sample is the labelled test part; the per-rule table is `compare_rules`
    on it; the unknown-score figure's AUROC is the scorer's unknown score against truth."""
    from sklearn.metrics import roc_auc_score

    from sporeprint.report.build import resolve_run
    from sporeprint.report.page import Note, Table
    from sporeprint.report.sections import heldout
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

        run = resolve_run(fs, demo["run"])
        section = heldout.section(fs, run, 10**6, 0)
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
    notes = [b.kind for b in section.blocks if isinstance(b, Note)]
    assert section.figures + notes.count("omitted") == 4 and "absent" not in notes


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
    from sporeprint.report.build import resolve_run
    from sporeprint.report.page import Table
    from sporeprint.report.sections import run as run_section
    from sporeprint.scoring import ScoringModel

    with FeatureStore(demo["store"], read_only=True) as fs:
        run = resolve_run(fs, demo["run"])
        section = run_section.section(fs, run)
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


# --------------------------------------------------------------------- safety panel
def test_safety_panel_counts_equal_sql_over_kinds_and_the_truth_file(demo):
    """The top panel: poisonous observations answered edible or unknown (truth file joined
    with the stored answers), poison-risk answers and the unknown rate (``predictions.kind``),
    the rule that reproduces the answers, and recall per poisonous species."""
    from sporeprint.evaluation import read_labels

    page = parse(demo["truth_report"])
    assert list(page.sections)[0] == "safety"
    panel = page.sections["safety"]
    t_obs, t_cls = read_labels(demo["root"] / "demo" / "data" / "test_2024_truth.csv", "truth")
    with FeatureStore(demo["store"], read_only=True) as fs:
        kinds = dict(fs.sql("SELECT kind, count(*) FROM predictions WHERE batch = 'heldout' "
                            "GROUP BY 1").to_pandas().itertuples(index=False))
        answers = fs.sql("SELECT observation_id, coalesce(class_id, -1) AS class_id "
                         "FROM predictions WHERE batch = 'heldout'").to_pandas()
        poison = fs.sql("SELECT class_id FROM species WHERE poisonous").column(0).to_numpy()
    n = sum(kinds.values())
    answered = dict(zip(answers.observation_id, answers.class_id, strict=True))
    truly = [(c, answered[o]) for o, c in zip(t_obs, t_cls, strict=True)
             if o in answered and c in poison]
    edible = sum(a >= 0 and a not in poison for _, a in truly)
    unknown = sum(a < 0 for _, a in truly)
    assert len(truly) > 0
    tiles = panel["tiles"]
    assert tiles["poisonous_missed"] == f"{edible + unknown:,}"
    assert tiles["poison_risk"] == f"{kinds.get('poison_risk', 0):,}"
    assert tiles["unknown"] == f"{kinds.get('unknown', 0) / n:.0%}"
    assert tiles["rule"] == "Track 3 rule"  # `sporeprint demo` scores with the default rule
    text = " ".join(panel["table_captions"])
    assert "Recall per poisonous species in batch 'heldout'" in text
    html = demo["truth_report"].read_text(encoding="utf-8")
    assert (f"of {len(truly):,} poisonous observations answered edible ({edible:,}) or unknown "
            f"({unknown:,})") in html


def test_safety_rule_is_the_one_that_reproduces_the_stored_answers(demo):
    from sporeprint.report.sections.safety import reproducing_rules

    with FeatureStore(demo["store"], read_only=True) as fs:
        predictions = fs.batch_predictions("heldout")
    rules, checked = reproducing_rules(predictions)
    assert rules[0] == "track3" and checked == predictions.num_rows
    # answers changed to the first of the stored top five: what argmax answers
    top = pa.array([t[0] for t in predictions.column("top5_class_ids").to_pylist()], pa.int32())
    argmax = predictions.set_column(predictions.column_names.index("class_id"), "class_id", top)
    kinds = pa.array(["species"] * argmax.num_rows)
    argmax = argmax.set_column(argmax.column_names.index("kind"), "kind", kinds)
    assert "argmax" in reproducing_rules(argmax)[0]
    assert "track3" not in reproducing_rules(argmax)[0] or np.array_equal(
        top.to_numpy(), predictions.column("class_id").to_numpy())


# ------------------------------------------------------------------------ captions
def _captions(page: _Page, sid: str) -> str:
    return " ".join(page.sections[sid]["captions"])


def test_captions_state_numbers_computed_from_the_store(demo):
    """Each fact a data caption states is the value computed from the store's own rows."""
    from sporeprint.report.sections.common import MONTHS

    text = _captions(parse(demo["report"]), "data")
    with FeatureStore(demo["store"], read_only=True) as fs:
        train = fs.sql("SELECT count(*) FILTER (WHERE s.poisonous) / count(*) FROM observations o "
                       "LEFT JOIN species s USING (class_id) WHERE o.role = 'train'"
                       ).column(0)[0].as_py()
        months = np.zeros(12)
        for m, c in fs.sql("SELECT month, count(*) FROM observations WHERE month IS NOT NULL "
                           "GROUP BY 1").to_pandas().itertuples(index=False):
            months[int(m) - 1] = c
        regions = fs.sql("SELECT coalesce(level1_name, country_code, '(missing)') AS r, count(*) "
                         "AS n FROM observations GROUP BY 1 ORDER BY n DESC, r").to_pandas()
        n_obs = fs.sql("SELECT count(*) FROM observations").column(0)[0].as_py()
        missing = fs.sql("SELECT role, avg((habitat IS NULL)::INT) AS h, avg((day IS NULL)::INT) "
                         "AS d FROM observations GROUP BY 1").to_pandas()
    assert f"Poisonous: train: {train:.0%};" in text
    window = [months[[i % 12, (i + 1) % 12, (i + 2) % 12]].sum() for i in range(12)]
    first = int(np.argmax(window))
    span = f"{MONTHS[first]}–{MONTHS[(first + 2) % 12]}"
    assert f"{window[first] / months.sum():.0%} fall in {span}, the busiest three months" in text
    peak = int(np.argmax(months))
    assert f"the busiest single month is {MONTHS[peak]} ({months[peak] / months.sum():.0%})" in text
    top = regions.iloc[0]
    assert f"{top.r} alone holds {top.n / n_obs:.0%}" in text
    assert max(missing.h.max(), missing.d.max()) > 0  # the heatmap has something to show
    assert "the colour scale runs from 0 to the largest rate" in text


def test_missing_value_heatmap_uses_a_scale_fitted_to_the_rates(demo):
    """The demo's missing rates are 0-6%: on a scale fitted to them the largest cell is drawn in
    the darkest red; on a 0-100% scale nothing would be darker than a pale pink."""
    from PIL import Image

    page = parse(demo["report"])
    src = page.sections["data"]["images"][4]
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
                       .convert("RGB")).astype(int)
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    assert ((r > 90) & (r < 200) & (g < 40) & (b < 50)).sum() > 200  # dark red cells


def test_degenerate_figures_are_left_out_with_one_line(tmp_path, demo):
    """A region chart of one region, a 1x1 poisonous-species confusion and a single-epoch
    training curve are not drawn; each is one line saying why."""
    from types import SimpleNamespace

    from sporeprint.report.build import resolve_run
    from sporeprint.report.page import Figure, Note, Section
    from sporeprint.report.sections import data, heldout, run

    store = tmp_path / "one-region.duckdb"
    with FeatureStore(store) as fs:
        fs.ingest_metadata(Path(__file__).parent / "data" / "df20_example_rows.csv", role="train")
        fs.sql("UPDATE observations SET level1_name = 'Hovedstaden'")
    with FeatureStore(store, read_only=True) as fs:
        s = data.section(fs)
    omitted = [b.text for b in s.blocks if isinstance(b, Note) and b.kind == "omitted"]
    assert "No region figure: Hovedstaden holds 100% of the observations, so a bar chart would " \
           "show one bar or none." in omitted
    assert not any(isinstance(b, Figure) and b.alt == "observations per region" for b in s.blocks)

    with FeatureStore(demo["store"], read_only=True) as fs:
        poison = fs.poisonous_class_ids()
        edible = fs.sql("SELECT class_id FROM species WHERE NOT poisonous LIMIT 2").column(0)
        p, e = int(poison[0]), [int(x) for x in edible.to_numpy()]
        one = Section("heldout", "")
        heldout._poison_confusion_block(fs, one, SimpleNamespace(class_id=np.array([e[0]] * 2)),
                                        np.array([p, p]), poison)
        two = Section("heldout", "")
        heldout._poison_confusion_block(fs, two, SimpleNamespace(class_id=np.array(e)),
                                        np.array([p, poison[1]]), poison)
        curves = run.section(fs, resolve_run(fs, demo["run"]))
    assert one.figures == 0 and two.figures == 1
    line = next(b.text for b in one.blocks if isinstance(b, Note))
    assert line.startswith("No poisonous-species confusion figure: one poisonous species was "
                           "answered wrongly, always the same way:") and "2 of 2 times" in line
    assert curves.figures == 1  # the Track scores; the 1-epoch curves are one line


def test_training_curves_per_fold_come_from_the_recorded_history(photo_world):
    """Fold runs record their per-epoch history; the run section draws it per fold."""
    from sporeprint.report.build import resolve_run
    from sporeprint.report.page import Figure
    from sporeprint.report.sections import run

    with FeatureStore(photo_world["store"], read_only=True) as fs:
        row = resolve_run(fs, None)
        section = run.section(fs, row)
        folds = [fs.get_run(m)["metrics"] for m in row["config"]["members"]]
    for m in folds:
        assert [h["epoch"] for h in m["history"]] == [1, 2]  # make_photo_store: --epochs 2
        assert all(h["train_loss"] > 0 and "track3" in h for h in m["history"])
    figure = next(b for b in section.blocks if isinstance(b, Figure)
                  and b.alt == "training curves per fold")
    for i, m in enumerate(folds, start=1):
        assert f"fold{i}: 2 epochs, kept epoch {m['epoch']}" in figure.shows


# --------------------------------------------------------------- text from the data
BAD = r"$\bad{$"


def test_names_with_dollars_and_markup_are_drawn_literally(demo, tmp_path):
    r"""Species, genus and region names holding ``$\bad{$`` (a mathtext parse error), ``$x$``
    (valid mathtext) or HTML build a report; the page shows them escaped, never as markup."""
    root = copy_folder(demo["root"] / "demo", tmp_path / "demo")
    store = root / "fungi.duckdb"
    with FeatureStore(store) as fs:
        fs.sql(f"UPDATE species SET species = '{BAD} ' || species, genus = '{BAD}<i>' || genus "
               "WHERE poisonous")
        fs.sql("UPDATE species SET species = '$x$ <b>&' || species WHERE NOT poisonous")
        fs.sql(f"UPDATE observations SET level1_name = '{BAD}<script>' || level1_name")
    out = tmp_path / "r.html"
    assert main(["report", "--store", str(store), "--batch", "heldout", "--out", str(out),
                 "--map-points", "200", "--heldout-points", "100", "--truth",
                 str(root / "data" / "test_2024_truth.csv")]) == 0
    html = out.read_text(encoding="utf-8")
    assert "<script" not in html and "<i>" not in html and "<b>&" not in html
    assert f"{BAD}&lt;i&gt;" in html.replace("&#x27;", "'")  # a genus in a table, escaped
    page = parse(out)
    # every section but the sets (the demo trains with calibration mode oof: no set)
    assert all(s["absent"] == [] for sid, s in page.sections.items() if sid != "sets")
    assert len(page.sections["map"]["images"]) == 1  # poisonous species named on the map

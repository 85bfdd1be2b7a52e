"""Conformal sets in scoring: fitted on the calibration slice (mode holdout only), stored
as scores in the calibration record, applied at any level; the poison check row by row;
coverage on a held-out simulated batch; genus answers; older records still load."""

from __future__ import annotations

import time

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from heads.train import TrainConfig
from sporeprint.errors import SporeprintError
from sporeprint.scoring import ScoringModel, score_batch
from sporeprint.scoring import calibration as calib
from sporeprint.scoring.sets import apply_sets
from sporeprint.simulator.simulate import SimConfig, ingest_simulation, simulate, write_simulation
from sporeprint.training import train_folds
from store import FeatureStore

SEED = 2


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("conformal")
    sim = simulate(SimConfig(scale="small", classes=70, seed=SEED, dim=16, count_scale=0.3))
    files = write_simulation(sim, root / "sim")
    fs = FeatureStore(root / "s.duckdb")
    ingest_simulation(fs, files, "sim", SEED)
    cfg = TrainConfig(epochs=3, lr=3e-3, progress=False, seed=SEED)
    runs = {}
    for mode in ("holdout", "oof"):
        runs[mode] = train_folds(fs, "sim", head="mlp", head_params={"hidden": 32}, config=cfg,
                                 out_dir=root / f"runs-{mode}", split_seed=SEED,
                                 calibration=mode)[-1].run_id
        calib.fit_and_record(fs, [runs[mode]])
        time.sleep(1.1)  # run ids carry a one-second stamp
    yield fs, runs, files, root
    fs.close()


def _score(world, run, name, **levels):
    fs, _, files, root = world
    report = score_batch(fs, files["test"], [run], embeddings=files["embeddings_test"],
                         out=root / name / "pred.csv", batch=name, **levels)
    return report, pq.read_table(root / name / "pred.full.parquet")


def test_holdout_records_conformal_scores_and_oof_says_no_guarantee(world):
    fs, runs, _, _ = world
    cal = ScoringModel.load(fs, [runs["holdout"]]).calibration
    n = cal.metrics["n_val_observations"]
    assert cal.format == calib.FORMAT == 4
    assert len(cal.conformal["scores"]) == n
    assert 0 < len(cal.conformal["poisonous_scores"]) < n
    assert "coverage up to" in cal.summary() and "poison coverage up to" in cal.summary()
    oof = ScoringModel.load(fs, [runs["oof"]]).calibration
    assert oof.conformal_threshold(0.9) == (None, calib.NO_CONFORMAL_OOF)
    assert "sporeprint train --calibration holdout" in oof.summary()


def test_poison_rule_holds_row_by_row_and_coverage_on_the_held_out_batch(world):
    fs, runs, _, _ = world
    report, table = _score(world, runs["holdout"], "sets", coverage=0.9, poison_coverage=0.0)
    poisonous = set(fs.poisonous_class_ids().tolist())
    scored = table.filter(table["status"].to_numpy(zero_copy_only=False) == "scored")
    rows = scored.to_pylist()
    assert rows and all(r["set_size"] == len(r["prediction_set"]) >= 1 for r in rows)
    for r in rows:
        if poisonous & set(r["prediction_set"]):  # a poisonous species in the set ...
            assert r["class_id"] in poisonous  # ... is never answered edible or unknown
            assert r["kind"] in ("poison_risk", "species")
    with_poison = [r for r in rows if poisonous & set(r["prediction_set"])]
    flagged = [r for r in rows if "conformal set holds poisonous" in r["reason"]]
    assert with_poison  # the check above is not vacuous
    assert all(r["kind"] == "poison_risk" for r in flagged)
    # coverage on the simulated batch (exchangeable with the calibration slice up to the
    # simulator's period shift): near the level, reported
    known = pacsv.read_csv(world[2]["truth"]).to_pydict()
    truth = dict(zip(known["observation_id"], known["class_id"], strict=True))
    truth = [truth[r["observation_id"]] for r in rows]
    model = ScoringModel.load(fs, [runs["holdout"]])
    cal, classes = model.calibration, set(model.classes.tolist())
    hit = [(t if t in classes else -1) in r["prediction_set"] for t, r in zip(truth, rows,
                                                                                strict=True)]
    covered = float(np.mean(hit))
    print(f"coverage 0.9 on the held-out batch: {covered:.3f} over {len(hit)} observations "
          f"(calibration slice {len(cal.conformal['scores'])})")
    assert covered >= 0.75
    assert any("prediction sets at coverage 0.9" in line for line in report.lines())
    stored = fs.sql("SELECT prediction_set, set_size, answer_rank FROM predictions "
                    "WHERE batch = 'sets' AND status = 'scored' ORDER BY observation_id")
    assert stored.column("set_size").to_pylist() == scored.column("set_size").to_pylist()


def test_a_larger_level_gives_larger_sets_and_the_poison_set_only_adds_poison_answers(world):
    fs, runs, _, _ = world
    _, low = _score(world, runs["holdout"], "low", coverage=0.5, poison_coverage=0.0)
    _, high = _score(world, runs["holdout"], "high", coverage=0.95, poison_coverage=0.0)
    _, both = _score(world, runs["holdout"], "both", coverage=0.5, poison_coverage=0.6)
    s_low, s_high = (np.array(t["set_size"].to_pylist(), dtype=float) for t in (low, high))
    ok = ~np.isnan(s_low)
    assert (s_high[ok] >= s_low[ok]).all() and s_high[ok].mean() > s_low[ok].mean()
    poisonous = set(fs.poisonous_class_ids().tolist())
    a, b = low["class_id"].to_pylist(), both["class_id"].to_pylist()
    changed = [i for i in range(len(a)) if a[i] != b[i]]
    assert all(b[i] in poisonous for i in changed)


def test_oof_runs_score_without_sets_and_say_why(world):
    report, table = _score(world, world[1]["oof"], "oofsets")
    assert table["set_size"].null_count == table.num_rows
    assert calib.NO_CONFORMAL_OOF in "\n".join(report.lines())


def test_a_level_the_slice_cannot_promise_is_refused_with_the_limit(world):
    fs, runs, _, _ = world
    model = ScoringModel.load(fs, [runs["holdout"]])
    n_p = len(model.calibration.conformal["poisonous_scores"])
    model.poison_coverage = 1 - 1 / (n_p + 3)  # just above n_p / (n_p + 1)
    assert f"cannot be promised with {n_p} calibration" in model.sets_line()
    with pytest.raises(SporeprintError, match="coverage 1.5 must be between 0 and 1"):
        _score(world, runs["holdout"], "bad", coverage=1.5)


def test_older_format_3_records_load_without_a_conformal_part(world):
    fs, runs, _, _ = world
    members = ScoringModel.load(fs, [runs["holdout"]]).members
    record = fs.get_run(calib.record_id(members))["metrics"]
    old = {k: v for k, v in record.items() if k != "conformal"} | {"format": 3}
    cal = calib.Calibration.from_dict(old)
    assert cal is not None and cal.conformal_threshold(0.9)[0] is None
    assert "refit it with `sporeprint calibrate`" in cal.conformal_threshold(0.9)[1]
    assert calib.Calibration.from_dict({**old, "format": 2}) is None


def test_genus_answer_when_the_set_lies_within_one_genus():
    classes = np.array([10, 11, 12, 13])
    poisonous = np.array([False, False, True, False])
    genus = {10: "Boletus", 11: "Boletus", 12: "Amanita", 13: "Russula"}
    probs = np.array([[0.50, 0.45, 0.03, 0.02],   # within Boletus
                      [0.97, 0.01, 0.01, 0.01],    # one species
                      [0.50, 0.02, 0.02, 0.46]])   # two genera
    kind = np.array(["species"] * 3, dtype=object)
    out = apply_sets(probs, np.zeros(3), classes, poisonous, np.array([10, 10, 10]), kind,
                     ["argmax"] * 3, threshold=0.96, poison_threshold=None, coverage=0.9,
                     genus_of=genus)
    assert out.answer_rank == ["genus", "species", "unknown"]
    assert out.genus == ["Boletus", "Boletus", None]
    assert [m.tolist() for m in out.prediction_set] == [[10, 11], [10], [10, 13]]
    assert out.class_id.tolist() == [10, 10, 10]  # one class id each, as decided
    # a poisonous species entering the set turns the answer into poison risk, named
    wide = apply_sets(probs, np.zeros(3), classes, poisonous, np.array([10, 10, 10]), kind,
                      ["argmax"] * 3, threshold=0.999, poison_threshold=None, coverage=0.9,
                      genus_of=genus, names={12: "Amanita phalloides"})
    assert [m.tolist() for m in wide.prediction_set][0] == [10, 11, 12]
    assert wide.class_id.tolist() == [12, 10, 10]
    assert wide.kind.tolist() == ["poison_risk", "species", "species"]
    assert "holds poisonous Amanita phalloides" in wide.reason[0]


def test_decide_replays_the_poison_check_of_the_stored_sets(world):
    from heads.decision import Costs
    from sporeprint.decisions import redecide

    fs, runs, _, _ = world
    _score(world, runs["holdout"], "replay", coverage=0.9, poison_coverage=0.6)
    preds = fs.batch_predictions("replay")
    same = redecide(preds, Costs())
    assert same.column("class_id").to_pylist() == preds.column("class_id").to_pylist()
    assert same.column("kind").to_pylist() == preds.column("kind").to_pylist()
    # a lenient survey's costs still answer poisonous wherever the sets held a poisonous species
    poisonous = set(fs.poisonous_class_ids().tolist())
    lenient = redecide(preds, Costs(poisonous_as_edible=1.0)).column("class_id").to_pylist()
    checked = preds.column("poison_check").to_pylist()
    assert any(checked)
    assert all(c in poisonous for c, held in zip(lenient, checked, strict=True) if held)


def test_a_genus_answer_warns_when_its_genus_has_poisonous_species():
    classes, poisonous = np.array([10, 11, 12]), np.array([False, False, True])
    genus = {10: "Boletus", 11: "Boletus", 12: "Boletus"}
    probs = np.array([[0.50, 0.48, 0.02]])
    out = apply_sets(probs, np.zeros(1), classes, poisonous, np.array([10]),
                     np.array(["species"], dtype=object), ["argmax"], threshold=0.985,
                     poison_threshold=None, coverage=0.9, genus_of=genus)
    assert out.answer_rank == ["genus"] and out.kind.tolist() == ["species"]
    assert "within genus Boletus, which has poisonous species" in out.reason[0]


SET_COLUMNS = ("class_id", "kind", "prediction_set", "poison_check", "set_size", "answer_rank",
               "genus")


@pytest.mark.parametrize("levels", [{"coverage": 0.8}, {"coverage": 0.8, "poison_coverage": 0.6},
                                    {"coverage": 0.95, "poison_coverage": 0.0}])
def test_decide_replays_the_sets_at_another_level_as_a_fresh_score(world, levels):
    from heads.decision import Costs
    from sporeprint.decisions import redecide, set_replay

    fs, runs, _, _ = world
    _score(world, runs["holdout"], "stored")  # the default levels, 0.9 / 0.99
    tag = "_".join(str(v) for v in levels.values()).replace(".", "")
    _, fresh = _score(world, runs["holdout"], f"fresh{tag}", **levels)
    preds = fs.batch_predictions("stored")
    replay = set_replay(fs, preds, levels["coverage"], levels.get("poison_coverage", 0.99))
    again = redecide(preds, Costs(), replay)
    assert again.column("observation_id").to_pylist() == fresh.column("observation_id").to_pylist()
    for name in SET_COLUMNS:
        assert again.column(name).to_pylist() == fresh.column(name).to_pylist(), name
    scored = np.asarray(fresh.column("status").to_pylist()) == "scored"
    assert scored.any()
    a, b = again.column("reason").to_pylist(), fresh.column("reason").to_pylist()
    assert [x for x, s in zip(a, scored, strict=True) if s] == \
        [x for x, s in zip(b, scored, strict=True) if s]
    # the level changed something: the stored default sets differ from the replayed ones
    assert again.column("set_size").to_pylist() != preds.column("set_size").to_pylist()


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory):
    """A store trained with `sporeprint train --calibration holdout` and its test batch
    scored at the default levels (batch ``stored``) and at 0.8 (batch ``fresh``)."""
    from conftest import ingest_simulation_cli

    from sporeprint.cli import main

    root = tmp_path_factory.mktemp("decide-sets")
    store, files = ingest_simulation_cli(root, seed=3)
    assert main(["train", "--store", str(store), "--space", "sim", "--hidden", "32",
                 "--epochs", "2", "--lr", "3e-3", "--calibration", "holdout"]) == 0
    for batch, extra in (("stored", []), ("fresh", ["--coverage", "0.8"])):
        assert main(["score", "--store", str(store), "--metadata", str(files["test"]),
                     "--embeddings", str(files["embeddings_test"]), "--batch", batch,
                     "--out", str(root / f"{batch}.csv"), *extra]) == 0
    return store, root


def test_decide_cli_replays_a_level_and_refuses_what_it_cannot_replay(cli_store, tmp_path,
                                                                       capsys):
    from sporeprint.cli import main

    store, root = cli_store
    capsys.readouterr()
    out = tmp_path / "decided.csv"
    assert main(["decide", "--store", str(store), "--batch", "stored", "--coverage", "0.8",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sets at coverage 0.8, poison check at 0.99" in printed
    fresh = pacsv.read_csv(root / "fresh.csv")
    assert pacsv.read_csv(out).column("class_id").to_pylist() == \
        fresh.column("class_id").to_pylist()
    with FeatureStore(store, read_only=True) as fs:
        a = fs.sql("SELECT set_size FROM predictions WHERE batch = 'fresh' "
                   "ORDER BY observation_id").column(0).to_pylist()
    assert any(x is not None for x in a)
    # the stored batch was scored at 0.9, more than its 8 calibration observations promise,
    # so it has no set; its ranked options still give the sets at 0.8
    with FeatureStore(store, read_only=True) as fs:
        stored = fs.batch_predictions("stored")
    assert stored["set_size"].null_count == stored.num_rows
    assert stored["ranked_bound"].null_count == 0
    # a level the calibration slice cannot promise: refused in one line with the limit
    assert main(["decide", "--store", str(store), "--batch", "stored", "--coverage",
                 "0.9999"]) != 0
    err = capsys.readouterr().err
    assert "cannot be promised with" in err and len(err.strip().splitlines()) == 1


def test_a_threshold_past_the_stored_options_is_refused_naming_the_fix():
    from sporeprint.scoring.sets import Ranked, sets_from_ranked

    ranked = Ranked.from_lists([[3, 4]], [[0.6, 0.3]], bound=0.9)
    args = (np.array([], np.int64), np.array([3]), np.array(["species"], dtype=object), ["x"])
    assert sets_from_ranked(ranked, *args, 0.9, None, 0.9).set_size.tolist() == [2]
    with pytest.raises(SporeprintError, match="sporeprint score --coverage"):
        sets_from_ranked(ranked, *args, 0.95, None, 0.95)


def test_replay_refuses_rows_without_ranked_options_and_heads_without_sets(world):
    from heads.decision import Costs
    from sporeprint.decisions import redecide, set_replay

    fs, runs, _, _ = world
    _score(world, runs["holdout"], "old")
    fs.sql("UPDATE predictions SET ranked_class_ids = NULL, ranked_probs = NULL, "
           "ranked_bound = NULL WHERE batch = 'old'")
    preds = fs.batch_predictions("old")
    with pytest.raises(SporeprintError, match="score the batch again with `sporeprint score`"):
        redecide(preds, Costs(), set_replay(fs, preds, 0.8, 0.99))
    # without --coverage, decide still replays the stored poison check
    assert redecide(preds, Costs()).num_rows == preds.num_rows
    _score(world, runs["oof"], "oofreplay")
    preds = fs.batch_predictions("oofreplay")
    with pytest.raises(SporeprintError, match="--calibration holdout"):
        set_replay(fs, preds, 0.8, 0.99)


def test_sets_from_the_ranked_prefix_equal_the_full_aps_rule():
    """The sets (and the poison set, without its top option) computed from the stored
    ranked prefix are those of ``heads.conformal.predict_sets`` on the full rows, ties
    included, listed most probable first."""
    from heads import conformal as cp
    from sporeprint.scoring.sets import prefix_inside, ranked_options

    rng = np.random.default_rng(0)
    for trial in range(12):
        n, c = 300, int(rng.integers(2, 60))
        p = rng.dirichlet(np.full(c, rng.uniform(0.05, 3)), n)
        if trial % 3 == 0:  # many ties
            p = np.round(p, 2)
            p /= p.sum(1, keepdims=True)
        u = rng.uniform(0, 0.5, n) * (rng.uniform(size=n) < 0.5)
        options = cp.with_unknown(p, u)
        classes = np.arange(c) * 3 + 5
        ids = np.r_[classes, -1]
        t = float(rng.uniform(0.3, 0.99))
        ranked = ranked_options(options, classes, bound=0.995)
        for keep_top in (True, False):
            full = cp.predict_sets(options, t, keep_top=keep_top)
            inside = prefix_inside(ranked.probs, t, keep_top=keep_top)
            for i in range(n):
                cols = np.flatnonzero(full[i])
                want = ids[cols[np.argsort(-options[i, cols], kind="stable")]]
                assert ranked.ids[i][inside[i]].tolist() == want.tolist(), (trial, i)


def test_the_set_columns_are_in_model_predict_the_output_files_and_the_table(world):
    """`model.predict`, the full CSV/Parquet and the predictions table all carry the set,
    its size, the answer rank and genus, and the ranked options behind them."""
    from sporeprint.rows import load_rows

    fs, runs, _, root = world
    _score(world, runs["holdout"], "columns")
    model = ScoringModel.load(fs, [runs["holdout"]])
    ids = fs.sql("SELECT observation_id FROM predictions WHERE batch = 'columns' AND "
                 "status = 'scored' ORDER BY 1 LIMIT 5").column(0).to_numpy()
    rows, _ = load_rows(fs, model.space, ids, labelled_only=False)
    got = model.predict(rows.embeddings, observation_ids=rows.observation_ids)
    wanted = ("prediction_set", "poison_check", "set_size", "answer_rank", "genus",
              "ranked_class_ids", "ranked_probs", "ranked_bound")
    for name in wanted:
        assert name in got.column_names, name
    assert got["set_size"].null_count == 0
    assert all(len(s) == n for s, n in zip(got["prediction_set"].to_pylist(),
                                           got["set_size"].to_pylist(), strict=True))
    assert set(got["answer_rank"].to_pylist()) <= {"species", "genus", "unknown"}
    stored = fs.sql("SELECT * FROM predictions WHERE batch = 'columns' LIMIT 1")
    csv = pacsv.read_csv(root / "columns" / "pred.full.csv")
    full = pq.read_table(root / "columns" / "pred.full.parquet")
    for name in wanted:
        assert name in stored.column_names and name in csv.column_names
        assert name in full.column_names


def test_a_store_without_the_ranked_columns_gets_them_on_a_writable_open(tmp_path):
    path = tmp_path / "old.duckdb"
    with FeatureStore(path) as fs:
        for name in ("ranked_class_ids", "ranked_probs", "ranked_bound"):
            fs.con.execute(f"ALTER TABLE predictions DROP COLUMN {name}")
    with FeatureStore(path, read_only=True) as fs:  # a read never writes: still without
        assert "ranked_bound" not in fs.sql("SELECT * FROM predictions").column_names
    with FeatureStore(path) as fs:
        cols = fs.sql("SELECT * FROM predictions").column_names
    assert {"ranked_class_ids", "ranked_probs", "ranked_bound"} <= set(cols)

"""Trust at the edges, through the CLI on a real trained store: the official poison list
governs, a batch row is answered from its own data, an index belongs to one store, a score
fails before writing, stores work from any folder, and the CLI refuses what it cannot do."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from conftest import ingest_simulation_cli

from sporeprint.cli import main
from store import FeatureStore

SPACE = "sim"


def _build(root, seed=0):
    return ingest_simulation_cli(root, seed=seed, space=SPACE)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    store, files = _build(root)
    assert main(["train", "--store", str(store), "--space", SPACE, "--hidden", "32",
                 "--epochs", "2", "--lr", "3e-3"]) == 0
    with FeatureStore(store, read_only=True) as fs:
        run = fs.latest_runs(("ensemble",), limit=1)[0]
        members = fs.get_run(run)["config"]["members"]
        head_dir = fs.get_run(members[0])["path"]
    return {"root": root, "store": store, "files": files, "run": run, "head": head_dir}


def _copy_store(world, tmp_path):
    """A private copy of the trained store folder (store file, runs, indexes)."""
    dst = tmp_path / "copy"
    shutil.copytree(world["root"], dst, ignore=shutil.ignore_patterns("copy*"))
    return dst / "fungi.duckdb"


def _score(store, metadata, embeddings, out, *extra):
    return main(["score", "--store", str(store), "--metadata", str(metadata),
                 "--embeddings", str(embeddings), "--out", str(out), *extra])


def _new_rows(store) -> int:
    with FeatureStore(store, read_only=True) as fs:
        return fs.sql("SELECT count(*) FROM observations WHERE role = 'new'").column(0)[0].as_py()


def test_official_poison_list_governs_and_a_tampered_head_is_refused(world, tmp_path, capsys):
    store = _copy_store(world, tmp_path)
    with FeatureStore(store, read_only=True) as fs:
        head = fs.get_run(fs.get_run(world["run"])["config"]["members"][0])["path"]
    config = json.loads(open(f"{head}/config.json").read())
    assert any(config["poisonous"])
    config["poisonous"] = [False] * len(config["poisonous"])  # "nothing is poisonous"
    with open(f"{head}/config.json", "w") as fh:
        json.dump(config, fh)
    files = world["files"]
    assert _score(store, files["test"], files["embeddings_test"], tmp_path / "p.csv") == 2
    err = capsys.readouterr().err
    assert "official poisonous list" in err and "\n" not in err.strip()
    assert _new_rows(store) == 0  # refused before anything was written


def test_a_batch_row_of_a_training_observation_gets_a_prior_only_rejected_answer(world, tmp_path):
    store = _copy_store(world, tmp_path)
    files = world["files"]
    train = pacsv.read_csv(files["train"])
    test = pacsv.read_csv(files["test"])
    stolen = train.slice(0, 1)  # a training observation's row, sent as a new batch row
    stolen_id = int(stolen["observationID"][0].as_py())
    batch = test.slice(0, 20)
    rows = [dict(r) for r in batch.to_pylist()]
    rows.append({**rows[0], "observation_id": stolen_id,
                 "image_path": stolen["image_path"][0].as_py()})
    path = tmp_path / "batch.csv"
    pacsv.write_csv(pa.Table.from_pylist(rows), path)
    emb = pq.read_table(files["embeddings_test"])
    keep = set(batch["image_path"].to_pylist())
    emb = emb.filter(pa.array([p in keep for p in emb["image_path"].to_pylist()]))
    pq.write_table(emb, tmp_path / "batch.parquet")
    assert _score(store, path, tmp_path / "batch.parquet", tmp_path / "p.csv") == 0
    with FeatureStore(store, read_only=True) as fs:
        got = fs.sql("SELECT status, reason, evidence_observation_ids FROM predictions "
                     "WHERE observation_id = ?", [stolen_id]).to_pylist()
    assert len(got) == 1
    assert got[0]["status"] == "rejected"
    assert got[0]["reason"].startswith("no accepted metadata row")
    assert got[0]["evidence_observation_ids"] == []


def test_an_index_from_another_store_with_the_same_ids_is_refused(world, tmp_path):
    from retrieval import RetrievalError
    from sporeprint.indexing import build_index, index_dir, load_index

    other, _ = _build(tmp_path / "other", seed=0)  # same simulation: same ids, space, dim
    with FeatureStore(other) as fs:
        build_index(fs, SPACE, "exact", "train")
    with FeatureStore(world["store"], read_only=True) as fs:
        target = index_dir(fs.path, SPACE, "exact", "all")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(index_dir(other, SPACE, "exact", "train"), target)
    try:
        with FeatureStore(world["store"], read_only=True) as fs:
            with pytest.raises(RetrievalError, match="another store"):
                load_index(fs, SPACE, "exact", "all")
    finally:
        shutil.rmtree(target)


@pytest.mark.parametrize("bad", ["nan", "zero", "dim", "path", "empty"])
def test_a_failing_score_writes_nothing(world, tmp_path, bad, capsys):
    store = _copy_store(world, tmp_path)
    files = world["files"]
    emb = pq.read_table(files["embeddings_test"])
    test_paths = set(pacsv.read_csv(files["test"])["image_path"].to_pylist())
    emb = emb.filter(pa.array([p in test_paths for p in emb["image_path"].to_pylist()]))
    x = np.stack(emb["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
    paths = emb["image_path"].to_pylist()
    if bad == "nan":
        x[3, 2] = np.nan
    elif bad == "zero":
        x[0] = 0.0
    elif bad == "dim":
        x = x[:, :8]
    elif bad == "path":
        paths[1] = "nowhere/x.jpg"
    elif bad == "empty":
        x, paths = x[:0], []
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"image_path": pa.array(paths, pa.string()),
                             "embedding": pa.array(list(x), pa.list_(pa.float32()))}), path)
    assert _score(store, files["test"], path, tmp_path / "p.csv") == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert _new_rows(store) == 0


def test_a_batch_whose_rows_are_all_rejected_still_gets_prior_only_answers(world, tmp_path):
    store = _copy_store(world, tmp_path)
    test = pacsv.read_csv(world["files"]["test"]).slice(0, 10)
    rows = [{**r, "month": 13} for r in test.to_pylist()]  # every row out of range
    path = tmp_path / "bad_rows.csv"
    pacsv.write_csv(pa.Table.from_pylist(rows), path)
    emb = pq.read_table(world["files"]["embeddings_test"])
    keep = set(test["image_path"].to_pylist())
    pq.write_table(emb.filter(pa.array([p in keep for p in emb["image_path"].to_pylist()])),
                   tmp_path / "bad_rows.parquet")
    assert _score(store, path, tmp_path / "bad_rows.parquet", tmp_path / "p.csv") == 0
    ids = sorted(set(test["observation_id"].to_pylist()))
    with FeatureStore(store, read_only=True) as fs:
        got = fs.sql("SELECT observation_id, status FROM predictions WHERE batch = 'bad_rows' "
                     "ORDER BY 1").to_pylist()
    assert [r["observation_id"] for r in got] == ids
    assert {r["status"] for r in got} == {"rejected"}


def test_a_moved_store_folder_keeps_scoring(world, tmp_path, monkeypatch):
    store = _copy_store(world, tmp_path)
    moved = tmp_path / "elsewhere"
    shutil.move(str(store.parent), moved)
    monkeypatch.chdir(tmp_path)  # and from another working directory
    files = world["files"]
    assert _score(moved / "fungi.duckdb", files["test"], files["embeddings_test"],
                  tmp_path / "p.csv", "--run", world["run"]) == 0


@pytest.mark.parametrize("command", [
    ["train", "--space", SPACE], ["embed", "--model", "x"], ["index", "build", "--space", SPACE],
    ["score", "--metadata", "m.csv", "--embeddings", "e.parquet"], ["sql", "SELECT 1"],
])
def test_commands_other_than_ingest_never_create_a_store(tmp_path, command, capsys):
    missing = tmp_path / "typo.duckdb"
    argv = command[:2] + ["--store", str(missing)] + command[2:] if command[0] == "index" \
        else [command[0], "--store", str(missing), *command[1:]]
    assert main(argv) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not missing.exists()


def test_ingest_metadata_needs_a_role(world, tmp_path, capsys):
    assert main(["ingest", "--store", str(tmp_path / "s.duckdb"),
                 "--metadata", str(world["files"]["val"])]) == 2
    assert "--role" in capsys.readouterr().err


def test_cli_parsing_no_abbreviations_defaults_subcommand_usage_and_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["search", "--stor", "x.duckdb", "--observation", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: sporeprint search" in err and "--stor" in err
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    assert "(default: 10)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and "sporeprint " in capsys.readouterr().out


def test_search_filter_values_are_checked_before_anything_runs(world, capsys):
    assert main(["search", "--store", str(world["store"]), "--observation", "1",
                 "--date-from", "2020-13-45"]) == 2
    assert "date" in capsys.readouterr().err


@pytest.mark.parametrize("header", ["observation_id", "observationID", "ObservationId"])
def test_submission_header_choice_and_evaluate_reads_any_spelling(world, tmp_path, header,
                                                                    capsys):
    store = _copy_store(world, tmp_path)
    files = world["files"]
    out = tmp_path / "p.csv"
    assert _score(store, files["test"], files["embeddings_test"], out,
                  "--submission-header", header) == 0
    with open(out, newline="") as fh:
        assert next(csv.reader(fh)) == [header, "class_id"]
    capsys.readouterr()
    assert main(["evaluate", "--predictions", str(out), "--truth", str(files["truth"]),
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] > 0


def test_an_interrupted_train_says_what_is_kept(world, monkeypatch, capsys):
    import sporeprint.training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sporeprint.training, "train_folds", interrupted)
    assert main(["train", "--store", str(world["store"]), "--space", SPACE]) == 130
    err = capsys.readouterr().err
    assert "folds finished before the interrupt are saved" in err
    assert "run the command again to resume" not in err  # no promise of a resume it lacks

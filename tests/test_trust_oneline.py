"""One line where one line is promised, on a real trained store through the CLI: simulator
settings out of range, a stored split seed that is not a number, deeply nested JSON in a
saved index's manifest or a head's config, SQL with several statements, a statement past
its time limit, a memory limit, a store held open by another process, and ids or counts
too large for the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ingest_simulation_cli

from sporeprint.cli import main
from store import FeatureStore, StoreLockedError

SPACE = "sim"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("oneline")
    store, files = ingest_simulation_cli(root, seed=0, space=SPACE)
    assert main(["train", "--store", str(store), "--space", SPACE, "--hidden", "32",
                 "--epochs", "2", "--lr", "3e-3"]) == 0
    with FeatureStore(store, read_only=True) as fs:
        obs = fs.sql("SELECT min(observation_id) FROM observations WHERE role = 'train'"
                     ).column(0)[0].as_py()
        run = fs.latest_runs(("ensemble",), limit=1)[0]
        head = fs.get_run(fs.get_run(run)["config"]["members"][0])["path"]
    return {"root": root, "store": store, "files": files, "obs": obs, "head": Path(head)}


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err + captured.out
    return err


@pytest.mark.parametrize("args, says", [
    (["--classes", "60", "--poisonous-species", "49"], "need 66 classes; pass --classes 66 or more"),
    (["--seed", "-1"], "seed=-1 is negative"),
    (["--dim", "100000"], "dim=100000 is outside 2..4096"),
    (["--images", "--image-size", "0"], "image_size=0 is outside 16..1024"),
])
def test_simulate_settings_out_of_range_are_one_line(tmp_path, capsys, args, says):
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), "--scale", "small", *args]) == 2
    assert says in _one_line_error(capsys)
    assert not (out / "df20_train.csv").exists()


def test_a_stored_split_seed_that_is_not_a_number_is_not_trusted(world, tmp_path, capsys):
    import shutil

    store = tmp_path / "copy" / "fungi.duckdb"
    shutil.copytree(world["root"], store.parent)
    assert main(["sql", "--store", str(store), "--write",
                 "UPDATE meta SET value = 'p1; DROP' WHERE key = 'split_seed'"]) == 0
    capsys.readouterr()
    search = ["search", "--store", str(store), "--space", SPACE, "--observation",
              str(world["obs"]), "--split", "p1"]
    assert main(search) == 0  # one split is stored: it is the current one
    assert main(["sql", "--store", str(store), "--write",
                 "INSERT INTO splits SELECT observation_id, 7, part FROM splits"]) == 0
    capsys.readouterr()
    assert main(search) == 2  # two, and no record of the latest: say so
    assert "seeds [0, 7] but no record of which was made last" in _one_line_error(capsys)


def test_nested_json_in_an_index_manifest_or_a_head_config_is_one_line(world, tmp_path):
    from heads import HeadsError
    from heads.checkpoint import load_head
    from retrieval import RetrievalError, VectorIndex

    index = VectorIndex(4, kind="exact")
    index.add(np.arange(3), np.eye(3, 4, dtype=np.float32))
    index.save(tmp_path / "index")
    manifest = tmp_path / "index" / "manifest.json"
    for text, says in (("[" * 100_000 + "]" * 100_000, "is not valid JSON"),
                       ("{\"a\":" * 20 + "1" + "}" * 20, "nests deeper than 16 levels"),
                       (json.dumps({"pad": "x" * (2 << 20)}), "not a manifest")):
        manifest.write_text(text)
        with pytest.raises(RetrievalError, match=says) as info:
            VectorIndex.load(tmp_path / "index")
        assert "\n" not in str(info.value)

    import shutil

    head = tmp_path / "head"
    shutil.copytree(world["head"], head)
    load_head(head)  # the intact copy loads
    for text, says in (("[" * 100_000 + "]" * 100_000, "cannot be read as JSON"),
                       ("[" * 40 + "]" * 40, "nests deeper than 32 levels")):
        (head / "config.json").write_text(text)
        with pytest.raises(HeadsError, match=says) as info:
            load_head(head)
        assert "\n" not in str(info.value)


def test_sql_runs_one_statement_and_refuses_several_before_any_runs(world, tmp_path, capsys):
    store = world["store"]
    assert main(["sql", "--store", str(store), "--write",
                 "CREATE TABLE scratch (a INT); DROP TABLE species"]) == 2
    assert "holds 2 statements; run one statement at a time" in _one_line_error(capsys)
    with FeatureStore(store, read_only=True) as fs:
        assert fs.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'scratch'"
                      ).column(0)[0].as_py() == 0
        assert fs.sql("SELECT count(*) FROM species").column(0)[0].as_py() > 0
    assert main(["sql", "--store", str(store), " ; "]) == 2
    assert "holds no statement" in _one_line_error(capsys)


def test_sql_stops_at_its_time_limit(world, capsys):
    start = time.monotonic()
    assert main(["sql", "--store", str(world["store"]), "--timeout", "1",
                 "SELECT count(*) FROM range(100000000000)"]) == 2
    assert time.monotonic() - start < 30
    assert "stopped after 1 s" in _one_line_error(capsys)
    assert main(["sql", "--store", str(world["store"]), "--timeout", "0", "SELECT 1"]) == 2
    assert "--timeout 0 must be a positive number of seconds" in _one_line_error(capsys)


def test_sql_memory_limit_is_the_one_asked_for(world, capsys):
    assert main(["sql", "--store", str(world["store"]), "--memory-limit", "100MB", "--format",
                 "csv", "SELECT current_setting('memory_limit') AS m"]) == 0
    assert "95.3 MiB" in capsys.readouterr().out  # 100 MB as DuckDB shows it
    assert main(["sql", "--store", str(world["store"]), "--memory-limit", "lots",
                 "SELECT 1"]) == 2
    assert "memory limit 'lots' is not a size" in _one_line_error(capsys)
    assert main(["sql", "--store", str(world["store"]), "--max-rows", "-1", "SELECT 1"]) == 2
    assert "--max-rows -1 is negative" in _one_line_error(capsys)


def test_a_store_held_by_another_process_names_that_process(world):
    def start():
        return subprocess.Popen(
            [sys.executable, "-m", "sporeprint", "sql", "--store", str(world["store"]), "--write",
             "--timeout", "60", "SELECT count(*) FROM range(100000000000)"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # The probe's own read-only opens can take the file lock just as the holder opens it
    # for writing; the holder then stops with "locked". Start it again then (a few times).
    holder, starts = start(), 1
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                FeatureStore(world["store"], read_only=True).close()
            except StoreLockedError as exc:
                message = str(exc)
                break
            assert time.monotonic() < deadline
            if holder.poll() is not None:
                assert starts < 5, "the holder never got the store's lock"
                holder, starts = start(), starts + 1
            time.sleep(0.5)
    finally:
        holder.kill()
        holder.wait()
    assert f"sporeprint sql (PID {holder.pid})" in message


@pytest.mark.parametrize("args, says", [
    (["--observation", "99999999999999999999999"], "is not in the store"),
    (["--observation", "abc"], "invalid int value: 'abc'"),
    (["-k", "99999999999999999999"], "-k 99999999999999999999 must be a number of observations"),
])
def test_ids_and_counts_too_large_or_garbled_are_one_line(world, capsys, args, says):
    argv = ["search", "--store", str(world["store"]), "--space", SPACE, *args]
    if "--observation" not in args:
        argv += ["--observation", str(world["obs"])]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse: usage line plus one error line
        rc = exc.code
        assert says in capsys.readouterr().err
    else:
        assert says in _one_line_error(capsys)
    assert rc == 2

"""Read-only stores are sandboxed; runs resolve from any folder; the lock message is precise."""

import shutil
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import pytest
from test_store_helpers import make_rows, write_csv

from store import FeatureStore, StoreError, StoreLockedError


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "s.duckdb"
    with FeatureStore(p) as fs:
        fs.ingest_metadata(write_csv(tmp_path / "m.csv", make_rows(2)), role="train")
    (tmp_path / "secret.csv").write_text("a,b\n1,2\n")
    return p


def attacks(tmp_path):
    other = tmp_path / "other.duckdb"
    FeatureStore(other).close()
    return [
        f"COPY observations TO '{tmp_path / 'leak.csv'}'",
        f"COPY observations TO '{tmp_path / 'leak.parquet'}' (FORMAT parquet)",
        f"EXPORT DATABASE '{tmp_path / 'dump'}'",
        f"SELECT * FROM read_csv('{tmp_path / 'secret.csv'}')",
        "SELECT * FROM read_csv('/etc/passwd')",
        f"SELECT * FROM glob('{tmp_path}/*')",
        f"SELECT * FROM read_blob('{tmp_path / 'secret.csv'}')",
        f"SELECT * FROM read_text('{tmp_path / 'secret.csv'}')",
        f"SELECT * FROM '{tmp_path / 'secret.csv'}'",
        f"ATTACH '{other}' AS other",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "RESET enable_external_access",
        "SET lock_configuration = false",
    ]


def test_read_only_sql_cannot_reach_files_databases_or_extensions(path, tmp_path):
    with FeatureStore(path, read_only=True) as ro:
        for query in attacks(tmp_path):
            with pytest.raises(StoreError) as err:
                ro.sql(query)
            assert "read-only" in str(err.value) or "read_only" in str(err.value), query
        assert ro.sql("SELECT count(*) FROM observations").column(0)[0].as_py() == 2
        ro.export_parquet("observations", tmp_path / "out")  # store methods still write files
    assert not (tmp_path / "leak.csv").exists() and not (tmp_path / "dump").exists()
    assert pq.read_table(tmp_path / "out" / "observations.parquet").num_rows == 2


def test_safe_sql_applies_to_a_writer_too_and_can_be_lifted(path, tmp_path):
    with FeatureStore(path, safe_sql=True) as fs:
        with pytest.raises(StoreError):
            fs.sql(f"COPY observations TO '{tmp_path / 'x.csv'}'")
        fs.ingest_metadata(write_csv(tmp_path / "more.csv", make_rows(1, first_id=5000)),
                           role="train")  # file IO of store methods still works
        assert fs.import_parquet("species", _species_file(fs, tmp_path)) == 0
    with FeatureStore(path) as fs:  # a writer is not sandboxed by default (sql --write)
        fs.sql(f"COPY observations TO '{tmp_path / 'x.csv'}'")
    assert (tmp_path / "x.csv").exists()


def _species_file(fs, tmp_path):
    fs.export_parquet("species", tmp_path / "sp")
    return tmp_path / "sp" / "species.parquet"


def test_run_paths_survive_moving_the_store_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)  # like `sporeprint train` run inside the folder
    with FeatureStore("fungi.duckdb") as fs:
        head = folder / "fungi.duckdb.runs" / "r1"
        head.mkdir(parents=True)
        (head / "config.json").write_text("{}")
        fs.record_run("r1", "train", None, "mlp", 1, {}, {}, "fungi.duckdb.runs/r1")
        fs.record_run("r2", "train", None, "mlp", 1, {}, {}, tmp_path / "elsewhere")
        assert fs.get_run("r1")["path"] == str(head)
    moved = tmp_path / "moved"
    shutil.move(str(folder), str(moved))
    monkeypatch.chdir(tmp_path)
    with FeatureStore(moved / "fungi.duckdb", read_only=True) as ro:
        run = ro.get_run("r1")
        assert run["path"] == str(moved / "fungi.duckdb.runs" / "r1")
        assert (moved / "fungi.duckdb.runs" / "r1" / "config.json").is_file()
        assert ro.get_run("r2")["path"] == str(tmp_path / "elsewhere")  # outside: absolute


def test_old_rows_relative_to_a_working_directory(tmp_path, monkeypatch):
    import duckdb
    folder = tmp_path / "data"
    (folder / "fungi.duckdb.runs" / "r1").mkdir(parents=True)
    (tmp_path / "cwd-runs" / "r2").mkdir(parents=True)
    with FeatureStore(folder / "fungi.duckdb"):
        pass
    con = duckdb.connect(str(folder / "fungi.duckdb"))  # rows as older versions wrote them
    con.execute("INSERT INTO runs (run_id, kind, path) VALUES ('r1', 'train', "
                "'fungi.duckdb.runs/r1'), ('r2', 'train', 'cwd-runs/r2')")
    con.close()
    monkeypatch.chdir(tmp_path)
    with FeatureStore(folder / "fungi.duckdb", read_only=True) as ro:
        assert ro.get_run("r1")["path"] == str(folder / "fungi.duckdb.runs" / "r1")
        assert ro.get_run("r2")["path"] == str(tmp_path / "cwd-runs" / "r2")


def _hold(path, read_only: bool):
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, duckdb
            con = duckdb.connect({str(path)!r}, read_only={read_only})
            print("ready", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("holder_reads", [True, False])
def test_writer_blocked_by_another_process_is_told_why(path, holder_reads):
    holder = _hold(path, read_only=holder_reads)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError) as err:
            FeatureStore(path)
        message = str(err.value)
        # the holder is named from its command line (`python -c ...`)
        assert f"store {str(path)!r} is open in python -c (PID {holder.pid}) " \
               "(reading or writing)" in message
        assert "close that process" in message and "sql` without --write" in message
        if not holder_reads:
            with pytest.raises(StoreLockedError, match=r"open for writing in python -c \(PID"):
                FeatureStore(path, read_only=True)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    FeatureStore(path).close()  # free again


def test_sandbox_hint_only_for_sandbox_errors(path):
    with FeatureStore(path, read_only=True) as ro:
        with pytest.raises(StoreError) as err:
            ro.sql("SELECT CAST('x' AS INTEGER)")
        assert "own tables only" not in str(err.value)
        with pytest.raises(StoreError, match="own tables only"):
            ro.sql("SELECT * FROM read_csv('/etc/passwd')")

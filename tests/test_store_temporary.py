"""Views and settings a store function puts on the connection for one block: gone (or put
back) however the block ends."""

import duckdb
import pyarrow as pa
import pytest

from store.temporary import changed_settings, registered, setting


def _views(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() "
                                      "WHERE NOT internal").fetchall()}


def test_registered_table_is_gone_after_the_block_and_after_an_error():
    con = duckdb.connect()
    table = pa.table({"x": [1, 2, 3]})
    with registered(con, "_rows", table) as name:
        assert con.execute(f"SELECT sum(x) FROM {name}").fetchall() == [(6,)]
    assert "_rows" not in _views(con)
    with pytest.raises(RuntimeError), registered(con, "_rows", table):
        assert "_rows" in _views(con)
        raise RuntimeError("the block fails")
    assert "_rows" not in _views(con)
    with pytest.raises(duckdb.Error):
        con.execute("SELECT * FROM _rows")


def test_registered_inside_an_aborted_transaction_raises_the_blocks_error():
    con = duckdb.connect()
    con.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    con.execute("BEGIN TRANSACTION")
    with pytest.raises(duckdb.ConstraintException), \
            registered(con, "_rows", pa.table({"x": [1, 1]})):
        con.execute("INSERT INTO t SELECT x FROM _rows")  # aborts the transaction
    con.execute("ROLLBACK")
    with registered(con, "_rows", pa.table({"x": [5]})):  # a stale view is replaced
        assert con.execute("SELECT x FROM _rows").fetchall() == [(5,)]


def test_changed_settings_are_put_back_after_the_block_and_after_an_error():
    con = duckdb.connect()
    default = setting(con, "memory_limit")
    con.execute("SET threads = 3")
    with changed_settings(con, memory_limit="1GB", threads="1"):
        assert setting(con, "threads") == "1"
        assert setting(con, "memory_limit") != default
    assert setting(con, "threads") == "3"  # a value set before comes back as it was
    assert setting(con, "memory_limit") == default  # a default is RESET, not set rounded
    with pytest.raises(RuntimeError), changed_settings(con, memory_limit="512MB"):
        raise RuntimeError("boom")
    assert setting(con, "memory_limit") == default
    with pytest.raises(ValueError, match="not a DuckDB setting name"), \
            changed_settings(con, **{"memory_limit; DROP": "1GB"}):
        pass

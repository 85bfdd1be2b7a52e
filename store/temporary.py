"""Things a store function puts on the DuckDB connection for one block only.

>>> with registered(con, "_new_rows", table):                  # doctest: +SKIP
...     con.execute("INSERT INTO t SELECT * FROM _new_rows")
>>> with changed_settings(con, memory_limit="2GB"):           # doctest: +SKIP
...     con.execute("INSERT INTO t SELECT * FROM read_parquet($path)", {"path": path})
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

import duckdb

# names a setting may have: SET takes an identifier, which cannot be bound as a parameter
_SETTING_NAME = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, data) -> Iterator[str]:
    """``data`` (an Arrow table, record batch reader, ...) as view ``name`` inside the block.

    The view is unregistered however the block ends. After a failed statement DuckDB may
    refuse to unregister until the transaction is rolled back; the block's own error is
    raised then, and the next registration of ``name`` replaces the stale view."""
    con.register(name, data)
    try:
        yield name
    except BaseException:
        with suppress(duckdb.Error):
            con.unregister(name)
        raise
    con.unregister(name)


def setting(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """The current value of one DuckDB setting, as text."""
    _check_name(name)
    return str(con.execute(f"SELECT current_setting('{name}')").fetchall()[0][0])


@contextmanager
def changed_settings(con: duckdb.DuckDBPyConnection, **values: str) -> Iterator[None]:
    """Set DuckDB settings inside the block and put back what was there before.

    A setting that was at its default is RESET afterwards (its value reads back rounded,
    e.g. ``memory_limit`` as '18.6 GiB', so setting that text back would not restore it
    exactly). Wrap whole transactions: after a failed statement DuckDB accepts no SET until
    the rollback."""
    restore: list[str] = []
    try:
        for name, value in values.items():
            _check_name(name)
            current = setting(con, name)
            con.execute(f"RESET {name}")
            restore.append(f"RESET {name}" if setting(con, name) == current
                           else f"SET {name} = '{_quoted(current)}'")
            con.execute(f"SET {name} = '{_quoted(str(value))}'")
        yield
    finally:
        for statement in reversed(restore):
            con.execute(statement)


def _check_name(name: str) -> None:
    if not name or not set(name) <= _SETTING_NAME:
        raise ValueError(f"{name!r} is not a DuckDB setting name")


def _quoted(text: str) -> str:
    return text.replace("'", "''")

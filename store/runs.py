"""The ``runs`` table: one row per training, ensemble, calibration or scoring run.

Where a run's files live is stored relative to the folder of the store file when
it lies under that folder (column ``relative_path``), and resolved against it on
read, so a store folder that is moved or used from another working directory
keeps finding its runs. Column ``path`` keeps the absolute path as recorded, for
readers of the table; ``get_run`` prefers ``relative_path``. Rows of older
stores have only ``path``, possibly relative to the working directory of the
run: it is looked for under the store folder first, then as given.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

RUN_COLUMNS = ("run_id", "kind", "space", "head", "fold", "config", "metrics", "path",
               "split_seed", "created_at")


def stored_paths(store_dir: Path, path: str | Path | None) -> tuple[str | None, str | None]:
    """``(absolute path, path relative to store_dir or None when outside it)``."""
    if path is None:
        return None, None
    absolute = Path(path).expanduser().resolve()
    try:
        return str(absolute), absolute.relative_to(store_dir).as_posix()
    except ValueError:
        return str(absolute), None


def resolved_path(store_dir: Path, value: str | None, relative: str | None = None
                  ) -> str | None:
    """Absolute path of a run: ``relative`` against the store folder; else ``value`` when
    absolute; else (relative to some working directory) under the store folder if it is
    there, then as given."""
    if relative is not None:
        return str(store_dir / relative)
    if value is None:
        return None
    path = Path(value)
    if path.is_absolute():
        return str(path)
    under_store = store_dir / path
    if under_store.exists() or not path.exists():
        return str(under_store)
    return str(path.resolve())


def record_run(con: duckdb.DuckDBPyConnection, store_dir: Path, run_id: str, kind: str,
               space: str | None, head: str | None, fold: int | None, config: dict,
               metrics: dict, path: str | Path | None, split_seed: int | None = None) -> None:
    con.execute("DELETE FROM runs WHERE run_id = ?", [run_id])
    absolute, relative = stored_paths(store_dir, path)
    con.execute("INSERT INTO runs (run_id, kind, space, head, fold, config, metrics, path, "
                "split_seed, relative_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, kind, space, head, fold, json.dumps(config, default=str),
                 json.dumps(metrics, default=str), absolute,
                 None if split_seed is None else int(split_seed), relative])


def get_run(con: duckdb.DuckDBPyConnection, store_dir: Path, run_id: str) -> dict | None:
    rows = con.sql("SELECT * FROM runs WHERE run_id = ?", params=[run_id]).to_arrow_table()
    if rows.num_rows == 0:
        return None
    row = rows.to_pylist()[0]
    out = {c: row.get(c) for c in RUN_COLUMNS}  # split_seed is None in unmigrated stores
    for key in ("config", "metrics"):
        out[key] = json.loads(out[key]) if out[key] else {}
    out["path"] = resolved_path(store_dir, out["path"], row.get("relative_path"))
    return out


# The one order of runs, newest first: every query that picks "the latest" run uses it, so
# runs created at the same time are told apart the same way everywhere.
NEWEST_FIRST = "ORDER BY created_at DESC, run_id DESC"


def newest_runs_sql(columns: str = "run_id") -> str:
    """SQL of ``columns`` of the runs of kinds ``$kinds`` (a VARCHAR list), newest first, at
    most ``$limit``."""
    return (f"SELECT {columns} FROM runs WHERE list_contains($kinds::VARCHAR[], kind) "
            f"{NEWEST_FIRST} LIMIT $limit")


def latest_runs(con: duckdb.DuckDBPyConnection, kinds=("train", "ensemble"),
                limit: int = 5) -> list[str]:
    """Ids of the newest runs of the given kinds, newest first."""
    return [r[0] for r in con.execute(newest_runs_sql(), {"kinds": list(kinds),
                                                          "limit": int(limit)}).fetchall()]


def runs_of(con: duckdb.DuckDBPyConnection, kind: str, space: str, head: str | None = None,
            fold: int | None = None) -> list[str]:
    """Ids of the runs of ``kind`` in ``space`` (and ``head`` / ``fold`` when given), newest
    first."""
    where, params = ["kind = ?", "space = ?"], [kind, space]
    if head is not None:
        where.append("head = ?")
        params.append(head)
    if fold is not None:
        where.append("fold = ?")
        params.append(int(fold))
    return [r[0] for r in con.execute(
        f"SELECT run_id FROM runs WHERE {' AND '.join(where)} {NEWEST_FIRST}", params).fetchall()]


def default_run(con: duckdb.DuckDBPyConnection) -> str | None:
    """The newest ensemble run, else the newest trained head; None when there is neither."""
    for kind in ("ensemble", "train"):
        newest = latest_runs(con, (kind,), 1)
        if newest:
            return newest[0]
    return None

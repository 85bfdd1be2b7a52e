"""Seeded, species-stratified thirds of the val-role (DF21) observations.

Rule: observations are grouped by ``class_id`` (``-1`` = unknown species is one
stratum, unlabelled rows another). Each stratum is sorted by observation id,
shuffled with ``numpy.random.default_rng(seed)`` and dealt round-robin into
``p1, p2, test`` starting at a random offset. So every part gets
``floor(n/3)`` or ``ceil(n/3)`` observations of a species; a species with one
or two observations lands in one or two parts chosen at random (never more
than one observation per part), and the random offsets keep the three parts
the same size overall. Same seed and same observations give the same split.

Fold 1: train = role ``train`` + part ``p2``, validation = ``p1``.
Fold 2: train = role ``train`` + part ``p1``, validation = ``p2``.
Part ``test`` is held out from both.

The calibration slice: one in ``one_in`` (default 3) of the ``p1`` and ``p2``
observations, dealt the same way within each (part, stratum) group with
``numpy.random.default_rng([seed, CALIBRATION_SALT])``, so it is species-stratified,
taken evenly from both parts and the same for a seed. Derived from the stored
split, never stored itself: every store with splits has it. Heads trained with
``fold_observations(..., calibration_slice=one_in)`` neither train nor early-stop
on it, so the deployed ensemble's predictions on it are out-of-sample for every
member and its calibration is fitted there.

One rule for "the current split": the seed of the latest ``make_splits`` call,
recorded in ``meta`` as ``split_seed``. Folds, selections (``p1``, ``p2``,
``fold1``, ``fold2``) and search filters (``split=``) all use it unless a seed
is passed explicitly.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from .errors import StoreError
from .temporary import registered
from .vocabulary import PARTS

CALIBRATION_SALT = 0xCA1  # second entropy word of the slice's generator (not the split's stream)
CALIBRATION_ONE_IN = 3


def assign_parts(observation_ids: np.ndarray, strata: np.ndarray, seed: int) -> np.ndarray:
    """Part index (0, 1, 2) per observation; deterministic for a seed and a set of ids.

    >>> assign_parts(np.arange(6), np.zeros(6, int), seed=0).tolist().count(0)
    2
    """
    ids = np.asarray(observation_ids, dtype=np.int64)
    strata = np.asarray(strata, dtype=np.int64)
    rng = np.random.default_rng(seed)
    order = np.lexsort((ids, strata))  # by stratum, then id: independent of input order
    parts = np.empty(len(ids), dtype=np.int64)
    bounds = np.flatnonzero(np.diff(strata[order])) + 1
    for group in np.split(order, bounds):
        if len(group) == 0:
            continue
        shuffled = rng.permutation(group)
        offset = rng.integers(3)
        parts[shuffled] = (offset + np.arange(len(shuffled))) % 3
    return parts


def calibration_mask(observation_ids: np.ndarray, parts: np.ndarray, strata: np.ndarray,
                     seed: int, one_in: int = CALIBRATION_ONE_IN) -> np.ndarray:
    """True for the observations of the calibration slice: per (part, stratum) group,
    sorted by id, shuffled and dealt round-robin into ``one_in`` piles from a random
    offset; pile 0 is the slice. Deterministic for a seed and a set of ids.

    >>> int(calibration_mask(np.arange(9), np.zeros(9, int), np.zeros(9, int), 0).sum())
    3
    """
    if int(one_in) < 2:
        raise StoreError(f"the calibration slice takes one in {one_in!r} observations; use an "
                         "integer of at least 2")
    ids = np.asarray(observation_ids, dtype=np.int64)
    group = np.unique(np.column_stack([np.asarray(parts, dtype=np.int64),
                                       np.asarray(strata, dtype=np.int64)]),
                      axis=0, return_inverse=True)[1].reshape(-1)
    rng = np.random.default_rng([int(seed), CALIBRATION_SALT])
    order = np.lexsort((ids, group))
    out = np.zeros(len(ids), dtype=bool)
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    for members in np.split(order, bounds):
        if len(members) == 0:
            continue
        shuffled = rng.permutation(members)
        offset = rng.integers(int(one_in))
        out[shuffled] = (offset + np.arange(len(shuffled))) % int(one_in) == 0
    return out


def make_splits(con: duckdb.DuckDBPyConnection, seed: int = 0) -> pa.Table:
    rows = con.sql("SELECT observation_id, coalesce(class_id, -2) AS stratum FROM observations "
                   "WHERE role = 'val' ORDER BY observation_id").to_arrow_table()
    if rows.num_rows == 0:
        raise StoreError("no role=val observations to split; ingest the DF21 metadata with "
                         "--role val first")
    ids = rows.column("observation_id").to_numpy()
    parts = assign_parts(ids, rows.column("stratum").to_numpy(), seed)
    table = pa.table({"observation_id": pa.array(ids, pa.int64()),
                      "part": pa.array(np.array(PARTS, dtype=object)[parts], pa.string())})
    con.execute("DELETE FROM splits WHERE seed = ?", [int(seed)])
    with registered(con, "_split_rows", table):
        con.execute("INSERT INTO splits (observation_id, seed, part) "
                    "SELECT observation_id, $seed, part FROM _split_rows", {"seed": int(seed)})
    con.execute("INSERT OR REPLACE INTO meta VALUES ('split_seed', ?)", [str(int(seed))])
    return table


def stored_seeds(con: duckdb.DuckDBPyConnection) -> list[int]:
    return [r[0] for r in con.execute("SELECT DISTINCT seed FROM splits ORDER BY 1").fetchall()]


def current_seed(con: duckdb.DuckDBPyConnection) -> int:
    """THE current split: the seed of the latest ``make_splits`` call (kept in ``meta``)."""
    seeds = stored_seeds(con)
    if not seeds:
        raise StoreError("the store has no splits yet; make them with make_splits(seed) "
                         "(CLI: `sporeprint train` makes them on first use)")
    last = con.execute("SELECT TRY_CAST(value AS INTEGER) FROM meta "
                       "WHERE key = 'split_seed'").fetchall()
    if last and last[0][0] in seeds:  # NULL (not a number) or a seed no split has: not used
        return int(last[0][0])
    if len(seeds) == 1:
        return seeds[0]
    raise StoreError(f"the store holds splits with seeds {seeds} but no record of which was "
                     "made last; call make_splits(seed) again to choose the current one")


def has_splits(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(stored_seeds(con))


def _seed(con: duckdb.DuckDBPyConnection, seed: int | None) -> int:
    if seed is None:
        return current_seed(con)
    seeds = stored_seeds(con)
    if int(seed) not in seeds:
        raise StoreError(f"no split with seed {seed}; stored seeds: {seeds or 'none'}; call "
                         f"make_splits({seed}) first")
    return int(seed)


def calibration_observations(con: duckdb.DuckDBPyConnection, seed: int | None = None,
                             one_in: int = CALIBRATION_ONE_IN) -> np.ndarray:
    """Sorted ids of the calibration slice of the current split (or ``seed``'s)."""
    seed = _seed(con, seed)
    rows = con.sql("SELECT s.observation_id, s.part, coalesce(o.class_id, -2) AS stratum "
                   "FROM splits s JOIN observations o USING (observation_id) "
                   "WHERE s.seed = ? AND s.part IN ('p1', 'p2') ORDER BY 1",
                   params=[seed]).to_arrow_table()
    ids = rows.column("observation_id").to_numpy().astype(np.int64)
    part = (rows.column("part").to_numpy(zero_copy_only=False) == "p2").astype(np.int64)
    mask = calibration_mask(ids, part, rows.column("stratum").to_numpy(), seed, one_in)
    return ids[mask]


def fold_observations(con: duckdb.DuckDBPyConnection, fold: int, seed: int | None = None,
                      calibration_slice: int | None = None) -> dict[str, np.ndarray]:
    """``train``/``val``/``test`` ids of ``fold``. With ``calibration_slice=one_in`` the
    calibration slice (``calibration_observations(seed, one_in)``) leaves ``train`` and
    ``val`` and comes back as ``calibration``."""
    if fold not in (1, 2):
        raise StoreError(f"fold {fold!r} does not exist; use fold 1 or 2")
    seed = _seed(con, seed)
    extra, val = ("p2", "p1") if fold == 1 else ("p1", "p2")

    def ids(query: str, params: list) -> np.ndarray:
        return con.sql(query, params=params).to_arrow_table().column(0).to_numpy().astype(
            np.int64)

    part_q = "SELECT observation_id FROM splits WHERE seed = ? AND part = ? ORDER BY 1"
    train = ids("SELECT observation_id FROM observations WHERE role = 'train' UNION ALL "
                "SELECT observation_id FROM splits WHERE seed = ? AND part = ? ORDER BY 1",
                [seed, extra])
    out = {"train": train, "val": ids(part_q, [seed, val]), "test": ids(part_q, [seed, "test"])}
    if calibration_slice is not None:
        held = calibration_observations(con, seed, calibration_slice)
        out["train"] = out["train"][~np.isin(out["train"], held)]
        out["val"] = out["val"][~np.isin(out["val"], held)]
        out["calibration"] = held
    return out

"""Observation metadata -> a float32 feature vector with named columns.

Columns, in this fixed order:

- ``substrate=<value>`` for each training value (sorted), then
  ``substrate=<unseen>`` and ``substrate=<missing>``; the same for
  ``meta_substrate`` and ``habitat`` (one-hot, exactly one 1 per field);
- ``month_sin, month_cos, month_missing`` with angle ``2π(month-1)/12``;
  ``day_sin, day_cos, day_missing`` with angle ``2π(day-1)/31``. A missing
  value encodes as ``0, 0, 1`` — never as 1 January;
- place: for each level L in ``GEOHASH_CELL_LEVELS`` (3 and 4: cells of about
  156 × 156 km and 39 × 20 km), ``geohash_L=<cell>`` one-hot for the cells
  with at least ``GEOHASH_MIN_COUNT`` role=train observations, then
  ``geohash_L=<other>`` for any other cell; then ``geo_x, geo_y, geo_z``, the
  point on the unit sphere (``cos lat cos lon, cos lat sin lon, sin lat``), and
  ``geo_missing``. A missing coordinate encodes as all place columns 0 and
  ``geo_missing`` 1.

Vocabularies (the categorical values and the kept geohash cells) come from
role=train observations and are stored with an encoder version, so a batch
encoded later gets the same columns in the same order. Encoders stored before
the place cells existed (no ``geohash_cells`` in their vocabulary) keep their
columns: ``geohash_2 .. geohash_5`` as normalised base-32 integers, then
``geohash_missing``; refitting the encoder makes a new version with the cells.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pygeohash

from .errors import StoreError
from .temporary import registered

log = logging.getLogger(__name__)

CATEGORICAL = ("substrate", "meta_substrate", "habitat")
GEOHASH_LEVELS = (2, 3, 4, 5)  # the legacy continuous columns
GEOHASH_CELL_LEVELS = (3, 4)
GEOHASH_MIN_COUNT = 10  # role=train observations a cell needs for its own column
CELLS_KEY = "geohash_cells"
GEOHASH_ALPHABET = "0123456789bcdefghjkmnpqrstuvwxyz"
# What the encoder reads of an observation, with the Arrow type it reads each field as
# (``encode_table`` takes a table of these columns; absent values are null).
INPUT_SCHEMA = pa.schema([("observation_id", pa.int64()),
                          *((name, pa.string()) for name in CATEGORICAL),
                          ("month", pa.int64()), ("day", pa.int64()),
                          ("latitude", pa.float64()), ("longitude", pa.float64())])
INPUT_COLUMNS = tuple(INPUT_SCHEMA.names)


@dataclass
class EncoderInfo:
    """A fitted, stored metadata encoder.

    >>> info = EncoderInfo(1, "test", {"substrate": ["soil"], "meta_substrate": [],
    ...                    "habitat": []}, [])
    >>> build_columns(info.vocab)[:3]
    ['substrate=soil', 'substrate=<unseen>', 'substrate=<missing>']
    """

    version: int
    fitted_on: str
    vocab: dict
    columns: list[str]


def build_columns(vocab: dict) -> list[str]:
    cols = []
    for name in CATEGORICAL:
        cols += [f"{name}={v}" for v in vocab[name]] + [f"{name}=<unseen>", f"{name}=<missing>"]
    cols += ["month_sin", "month_cos", "month_missing", "day_sin", "day_cos", "day_missing"]
    if CELLS_KEY not in vocab:  # legacy encoder
        return cols + [f"geohash_{level}" for level in GEOHASH_LEVELS] + ["geohash_missing"]
    for level in GEOHASH_CELL_LEVELS:
        cells = vocab[CELLS_KEY][str(level)]
        cols += [f"geohash_{level}={c}" for c in cells] + [f"geohash_{level}=<other>"]
    return cols + ["geo_x", "geo_y", "geo_z", "geo_missing"]


def geohash_cells(lat: np.ndarray, lon: np.ndarray, level: int) -> np.ndarray:
    """The level-``level`` geohash of each point as strings (``None`` where a coordinate
    is missing). One pygeohash call per distinct coordinate pair."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    out = np.full(len(lat), None, dtype=object)
    ok = np.isfinite(lat) & np.isfinite(lon)
    if ok.any():
        pairs, inverse = np.unique(np.stack([lat[ok], lon[ok]], axis=1), axis=0,
                                   return_inverse=True)
        codes = np.array([pygeohash.encode(a, b, precision=level) for a, b in pairs],
                         dtype=object)
        out[ok] = codes[inverse.reshape(-1)]
    return out


def unit_sphere(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(n, 3) points on the unit sphere; rows with a missing coordinate are 0."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    ok = np.isfinite(lat) & np.isfinite(lon)
    a, b = np.radians(np.where(ok, lat, 0.0)), np.radians(np.where(ok, lon, 0.0))
    xyz = np.stack([np.cos(a) * np.cos(b), np.cos(a) * np.sin(b), np.sin(a)], axis=1)
    xyz[~ok] = 0.0
    return xyz


def fit_cells(lat: np.ndarray, lon: np.ndarray, min_count: int = GEOHASH_MIN_COUNT
              ) -> dict[str, list[str]]:
    """Per level of ``GEOHASH_CELL_LEVELS``, the sorted cells holding at least
    ``min_count`` of the given (training) points."""
    kept = {}
    for level in GEOHASH_CELL_LEVELS:
        cells = geohash_cells(lat, lon, level)
        values, counts = np.unique(cells[cells != None].astype(str),  # noqa: E711
                                   return_counts=True)
        kept[str(level)] = sorted(values[counts >= min_count].tolist())
    return kept


def geohash_levels(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(n, 4) float64: geohash levels 2..5 as normalised base-32 integers (rows with a
    missing coordinate are 0). One pygeohash call per distinct coordinate pair."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    out = np.zeros((len(lat), len(GEOHASH_LEVELS)), dtype=np.float64)
    ok = np.isfinite(lat) & np.isfinite(lon)
    if not ok.any():
        return out
    pairs, inverse = np.unique(np.stack([lat[ok], lon[ok]], axis=1), axis=0, return_inverse=True)
    digit = {ch: i for i, ch in enumerate(GEOHASH_ALPHABET)}
    top = max(GEOHASH_LEVELS)
    codes = np.array([[digit[ch] for ch in pygeohash.encode(a, b, precision=top)]
                      for a, b in pairs], dtype=np.int64).reshape(-1, top)  # (u, 5)
    values = np.zeros((len(pairs), len(GEOHASH_LEVELS)), dtype=np.float64)
    acc = np.zeros(len(pairs), dtype=np.int64)
    for pos in range(top):
        acc = acc * 32 + codes[:, pos]
        level = pos + 1
        if level in GEOHASH_LEVELS:
            values[:, GEOHASH_LEVELS.index(level)] = acc / (32**level - 1)
    out[ok] = values[inverse.reshape(-1)]
    return out


def encode_table(rows: pa.Table, info: EncoderInfo) -> np.ndarray:
    """Encode rows with columns substrate, meta_substrate, habitat, month, day, latitude,
    longitude into a float32 matrix (n, len(info.columns))."""
    n = rows.num_rows
    blocks = []
    for name in CATEGORICAL:
        vocab = info.vocab[name]
        col = rows.column(name).combine_chunks().cast(pa.string())
        block = np.zeros((n, len(vocab) + 2), dtype=np.float32)
        index = pc.index_in(col, value_set=pa.array(vocab, pa.string())).to_numpy(
            zero_copy_only=False)
        missing = col.is_null().to_numpy(zero_copy_only=False)
        index = np.where(np.isnan(index.astype(np.float64)), len(vocab), index).astype(np.int64)
        index[missing] = len(vocab) + 1
        block[np.arange(n), index] = 1.0
        blocks.append(block)
    for name, period in (("month", 12), ("day", 31)):
        v = rows.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        missing = ~np.isfinite(v)
        angle = 2 * np.pi * (np.where(missing, 1, v) - 1) / period
        block = np.stack([np.sin(angle), np.cos(angle), missing.astype(np.float64)], axis=1)
        block[missing, :2] = 0.0
        blocks.append(block.astype(np.float32))
    lat = rows.column("latitude").to_numpy(zero_copy_only=False).astype(np.float64)
    lon = rows.column("longitude").to_numpy(zero_copy_only=False).astype(np.float64)
    geo_missing = ~(np.isfinite(lat) & np.isfinite(lon))
    if CELLS_KEY in info.vocab:
        for level in GEOHASH_CELL_LEVELS:
            vocab = info.vocab[CELLS_KEY][str(level)]
            block = np.zeros((n, len(vocab) + 1), dtype=np.float32)
            cells = geohash_cells(lat, lon, level)
            pos = {c: i for i, c in enumerate(vocab)}
            index = np.array([pos.get(c, len(vocab)) for c in cells], dtype=np.int64)
            block[np.arange(n), index] = 1.0
            block[geo_missing] = 0.0
            blocks.append(block)
        blocks.append(unit_sphere(lat, lon).astype(np.float32))
    else:  # legacy encoder
        blocks.append(geohash_levels(lat, lon).astype(np.float32))
    blocks.append(geo_missing.astype(np.float32)[:, None])
    out = np.concatenate(blocks, axis=1) if n else np.zeros((0, len(info.columns)), np.float32)
    if out.shape[1] != len(info.columns):
        raise StoreError(f"encoded {out.shape[1]} columns but encoder {info.version} has "
                         f"{len(info.columns)}; the stored encoder is inconsistent, refit it")
    return out


def load_encoder(con: duckdb.DuckDBPyConnection, version: int | None = None) -> EncoderInfo:
    if version is None:
        row = con.execute("SELECT encoder_version, fitted_on, vocab, columns FROM encoders "
                          "ORDER BY encoder_version DESC LIMIT 1").fetchall()
    else:
        row = con.execute("SELECT encoder_version, fitted_on, vocab, columns FROM encoders "
                          "WHERE encoder_version = ?", [version]).fetchall()
    row = row[0] if row else None
    if row is None:
        what = "no encoder" if version is None else f"no encoder version {version}"
        raise StoreError(f"the store has {what}; call fit_encoder() after ingesting the "
                         "training metadata")
    return EncoderInfo(version=row[0], fitted_on=row[1], vocab=json.loads(row[2]),
                       columns=json.loads(row[3]))


def fit_encoder(con: duckdb.DuckDBPyConnection) -> EncoderInfo:
    n_train = con.execute("SELECT count(*) FROM observations WHERE role = 'train'").fetchall()[0][0]
    if n_train == 0:
        raise StoreError("no role=train observations to fit the encoder on; ingest the DF20 "
                         "training metadata with --role train first")
    vocab = {}
    for name in CATEGORICAL:
        vocab[name] = [r[0] for r in con.execute(
            f'SELECT DISTINCT "{name}" FROM observations WHERE role = \'train\' '
            f'AND "{name}" IS NOT NULL ORDER BY 1').fetchall()]
    coords = con.execute("SELECT latitude, longitude FROM observations WHERE role = 'train' "
                         "AND latitude IS NOT NULL AND longitude IS NOT NULL").fetchall()
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    vocab[CELLS_KEY] = fit_cells(coords[:, 0], coords[:, 1])
    try:
        latest = load_encoder(con)
    except StoreError:
        latest = None
    if latest is not None and latest.vocab == vocab:
        return latest
    version = 1 if latest is None else latest.version + 1
    info = EncoderInfo(version=version, fitted_on=f"role=train ({n_train} observations)",
                       vocab=vocab, columns=build_columns(vocab))
    con.execute("INSERT INTO encoders (encoder_version, fitted_on, vocab, columns) "
                "VALUES (?, ?, ?, ?)",
                [info.version, info.fitted_on, json.dumps(vocab), json.dumps(info.columns)])
    log.info("fitted encoder version %d: %d columns", version, len(info.columns))
    return info


def _ids_table(ids) -> pa.Table:
    ids = np.asarray(ids, dtype=np.int64)
    return pa.table({"observation_id": ids, "_pos": np.arange(len(ids), dtype=np.int64)})


def encode_observations(con: duckdb.DuckDBPyConnection, observation_ids=None) -> int:
    info = load_encoder(con)
    cols = ", ".join(f'o."{c}"' for c in INPUT_COLUMNS)
    if observation_ids is None:
        rows = con.sql(f"SELECT {cols} FROM observations o ORDER BY o.observation_id"
                       ).to_arrow_table()
    else:
        with registered(con, "_enc_ids", _ids_table(observation_ids)):
            rows = con.sql(f"SELECT {cols} FROM _enc_ids w JOIN observations o "
                           "USING (observation_id) ORDER BY w._pos").to_arrow_table()
        if rows.num_rows < len(observation_ids):
            found = set(rows.column("observation_id").to_pylist())
            absent = [i for i in np.asarray(observation_ids).tolist() if i not in found][:5]
            raise StoreError(f"observation ids {absent} are not in the store; ingest their "
                             "metadata first")
    matrix = encode_table(rows, info)
    m = matrix.shape[1]
    batch = pa.table({
        "observation_id": rows.column("observation_id"),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), m),
    })
    with registered(con, "_enc_rows", batch):
        con.execute("DELETE FROM features WHERE encoder_version = ? AND observation_id IN "
                    "(SELECT observation_id FROM _enc_rows)", [info.version])
        con.execute("INSERT INTO features (observation_id, encoder_version, vector) "
                    "SELECT DISTINCT ON (observation_id) observation_id, $v, CAST(vector AS FLOAT[]) "
                    "FROM _enc_rows", {"v": info.version})
    return batch.num_rows


def fetch_features(con: duckdb.DuckDBPyConnection, observation_ids=None
                   ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    info = load_encoder(con)
    if observation_ids is None:
        table = con.sql("SELECT observation_id, vector FROM features WHERE encoder_version = ? "
                        "ORDER BY observation_id", params=[info.version]).to_arrow_table()
    else:
        with registered(con, "_feat_ids", _ids_table(observation_ids)):
            table = con.sql("SELECT f.observation_id, f.vector FROM _feat_ids w JOIN features f "
                            "USING (observation_id) WHERE f.encoder_version = ? ORDER BY w._pos",
                            params=[info.version]).to_arrow_table()
    ids = table.column("observation_id").to_numpy().astype(np.int64)
    m = len(info.columns)
    if table.num_rows == 0:
        return ids, np.zeros((0, m), dtype=np.float32), list(info.columns)
    flat = pa.concat_arrays([c.flatten() for c in table.column("vector").chunks])
    matrix = flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, m)
    return ids, matrix, list(info.columns)


def unseen_values(rows: pa.Table, info: EncoderInfo) -> list[list[str]]:
    """Per row, a message for each categorical value the encoder never saw in training
    (``encode_table`` encodes it as ``<unseen>``)."""
    out: list[list[str]] = [[] for _ in range(rows.num_rows)]
    for name in CATEGORICAL:
        known = set(info.vocab[name])
        for k, value in enumerate(rows.column(name).to_pylist()):
            if value is not None and value not in known:
                out[k].append(f"{name} {value!r} was never seen in training; encoded as unseen")
    return out

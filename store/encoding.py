"""Observation metadata -> a float32 feature vector with named columns.

Columns, in this fixed order:

- ``substrate=<value>`` for each training value (sorted), then
  ``substrate=<unseen>`` and ``substrate=<missing>``; the same for
  ``meta_substrate`` and ``habitat`` (one-hot, exactly one 1 per field);
- ``month_sin, month_cos, month_missing`` with angle ``2π(month-1)/12``;
  ``day_sin, day_cos, day_missing`` with angle ``2π(day-1)/31``. A missing
  value encodes as ``0, 0, 1`` — never as 1 January;
- ``geohash_2 .. geohash_5``: the level-L prefix of the point's geohash
  (pygeohash) read as a base-32 integer and divided by ``32**L - 1``, then
  ``geohash_missing`` (all geohash columns 0 when a coordinate is missing).

Vocabularies come from role=train observations and are stored with an encoder
version, so a batch encoded later gets the same columns in the same order.
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

log = logging.getLogger(__name__)

CATEGORICAL = ("substrate", "meta_substrate", "habitat")
GEOHASH_LEVELS = (2, 3, 4, 5)
GEOHASH_ALPHABET = "0123456789bcdefghjkmnpqrstuvwxyz"
INPUT_COLUMNS = ("observation_id", *CATEGORICAL, "month", "day", "latitude", "longitude")


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
    vocab: dict[str, list[str]]
    columns: list[str]


def build_columns(vocab: dict[str, list[str]]) -> list[str]:
    cols = []
    for name in CATEGORICAL:
        cols += [f"{name}={v}" for v in vocab[name]] + [f"{name}=<unseen>", f"{name}=<missing>"]
    cols += ["month_sin", "month_cos", "month_missing", "day_sin", "day_cos", "day_missing"]
    cols += [f"geohash_{level}" for level in GEOHASH_LEVELS] + ["geohash_missing"]
    return cols


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
        con.register("_enc_ids", _ids_table(observation_ids))
        try:
            rows = con.sql(f"SELECT {cols} FROM _enc_ids w JOIN observations o "
                           "USING (observation_id) ORDER BY w._pos").to_arrow_table()
            if rows.num_rows < len(observation_ids):
                found = set(rows.column("observation_id").to_pylist())
                absent = [i for i in np.asarray(observation_ids).tolist() if i not in found][:5]
                raise StoreError(f"observation ids {absent} are not in the store; ingest their "
                                 "metadata first")
        finally:
            con.unregister("_enc_ids")
    matrix = encode_table(rows, info)
    m = matrix.shape[1]
    batch = pa.table({
        "observation_id": rows.column("observation_id"),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), m),
    })
    con.register("_enc_rows", batch)
    try:
        con.execute("DELETE FROM features WHERE encoder_version = ? AND observation_id IN "
                    "(SELECT observation_id FROM _enc_rows)", [info.version])
        con.execute("INSERT INTO features (observation_id, encoder_version, vector) "
                    "SELECT DISTINCT ON (observation_id) observation_id, $v, CAST(vector AS FLOAT[]) "
                    "FROM _enc_rows", {"v": info.version})
    finally:
        con.unregister("_enc_rows")
    return batch.num_rows


def fetch_features(con: duckdb.DuckDBPyConnection, observation_ids=None
                   ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    info = load_encoder(con)
    if observation_ids is None:
        table = con.sql("SELECT observation_id, vector FROM features WHERE encoder_version = ? "
                        "ORDER BY observation_id", params=[info.version]).to_arrow_table()
    else:
        con.register("_feat_ids", _ids_table(observation_ids))
        try:
            table = con.sql("SELECT f.observation_id, f.vector FROM _feat_ids w JOIN features f "
                            "USING (observation_id) WHERE f.encoder_version = ? ORDER BY w._pos",
                            params=[info.version]).to_arrow_table()
        finally:
            con.unregister("_feat_ids")
    ids = table.column("observation_id").to_numpy().astype(np.int64)
    m = len(info.columns)
    if table.num_rows == 0:
        return ids, np.zeros((0, m), dtype=np.float32), list(info.columns)
    flat = pa.concat_arrays([c.flatten() for c in table.column("vector").chunks])
    matrix = flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, m)
    return ids, matrix, list(info.columns)

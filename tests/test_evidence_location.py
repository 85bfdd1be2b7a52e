"""The place columns of the metadata encoder: geohash cells kept by a frequency cut
fitted on training rows, the point on the unit sphere, a missing flag; legacy
encoders keep their columns."""

import numpy as np
import pyarrow as pa
import pygeohash
import pytest
from test_store_helpers import make_rows, write_csv

from store import FeatureStore, StoreError
from store.encoding import (
    GEOHASH_MIN_COUNT,
    EncoderInfo,
    build_columns,
    encode_table,
    fit_cells,
)


def _rows(n, lat, lon, first_id=1000):
    rows = make_rows(n, images_per_obs=1, first_id=first_id)
    for r in rows:
        r.update(Latitude=f"{lat:.5f}", Longitude=f"{lon:.5f}")
    return rows


def test_frequent_cells_get_columns_rare_ones_share_other(tmp_path):
    # 12 observations in Copenhagen (a cell of its own), 3 in Aarhus (below the cut)
    rows = _rows(12, 55.68, 12.57) + _rows(3, 56.16, 10.20, first_id=2000)
    rows += _rows(1, 55.0, 10.0, first_id=3000)
    rows[-1].update(Latitude="", Longitude="")  # missing place
    with FeatureStore(tmp_path / "s.duckdb") as fs:
        fs.ingest_metadata(write_csv(tmp_path / "m.csv", rows))
        info = fs.fit_encoder()
        fs.encode_observations()
        ids, x, cols = fs.fetch_features()
    cph, aar = pygeohash.encode(55.68, 12.57, 4), pygeohash.encode(56.16, 10.20, 4)
    c = {name: i for i, name in enumerate(cols)}
    assert info.vocab["geohash_cells"]["4"] == [cph] and f"geohash_4={aar}" not in c
    assert f"geohash_3={cph[:3]}" in c
    by_id = dict(zip(ids.tolist(), range(len(ids)), strict=True))
    x_cph, x_aar, x_none = x[by_id[1000]], x[by_id[2000]], x[by_id[3000]]
    assert x_cph[c[f"geohash_4={cph}"]] == 1 and x_cph[c["geohash_4=<other>"]] == 0
    assert x_aar[c["geohash_4=<other>"]] == 1 and x_aar[c["geohash_3=<other>"]] == 1
    for level in (3, 4):  # exactly one cell column per level when the place is known
        block = [i for n, i in c.items() if n.startswith(f"geohash_{level}=")]
        assert x_cph[block].sum() == 1 and x_none[block].sum() == 0
    lat, lon = np.radians(55.68), np.radians(12.57)
    np.testing.assert_allclose(x_cph[[c["geo_x"], c["geo_y"], c["geo_z"]]],
                               [np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon),
                                np.sin(lat)], rtol=1e-6)
    assert x_cph[c["geo_missing"]] == 0 and x_none[c["geo_missing"]] == 1
    assert not x_none[[c["geo_x"], c["geo_y"], c["geo_z"]]].any()
    # two places in different cells differ by a whole column, not by 1e-4
    assert np.abs(x_cph - x_aar)[[i for n, i in c.items() if n.startswith("geo")]].max() == 1


def test_min_count_is_the_cut():
    lat = np.array([55.68] * GEOHASH_MIN_COUNT + [56.16] * (GEOHASH_MIN_COUNT - 1) + [np.nan])
    lon = np.array([12.57] * GEOHASH_MIN_COUNT + [10.20] * (GEOHASH_MIN_COUNT - 1) + [1.0])
    cells = fit_cells(lat, lon)
    assert cells["4"] == [pygeohash.encode(55.68, 12.57, 4)]


def test_legacy_encoder_keeps_its_columns():
    vocab = {"substrate": ["soil"], "meta_substrate": [], "habitat": []}
    info = EncoderInfo(1, "test", vocab, build_columns(vocab))
    assert info.columns[-5:] == ["geohash_2", "geohash_3", "geohash_4", "geohash_5",
                                 "geohash_missing"]
    rows = pa.table({"substrate": ["soil"], "meta_substrate": pa.nulls(1, pa.string()),
                     "habitat": pa.nulls(1, pa.string()), "month": [5], "day": [3],
                     "latitude": [55.68], "longitude": [12.57]})
    x = encode_table(rows, info)
    assert x.shape == (1, len(info.columns)) and 0 < x[0, -4] < 1


def test_refit_with_cells_is_a_new_version(tmp_path):
    with FeatureStore(tmp_path / "s.duckdb") as fs:
        fs.ingest_metadata(write_csv(tmp_path / "m.csv", _rows(12, 55.68, 12.57)))
        first = fs.fit_encoder()
        assert fs.fit_encoder().version == first.version  # same training rows: same encoder
        fs.ingest_metadata(write_csv(tmp_path / "n.csv", _rows(12, 56.16, 10.20, first_id=5000)))
        second = fs.fit_encoder()
        assert second.version == first.version + 1
        assert f"geohash_4={pygeohash.encode(56.16, 10.20, 4)}" in second.columns
        with pytest.raises(StoreError, match="no encoder version 9"):
            fs.encoder(9)

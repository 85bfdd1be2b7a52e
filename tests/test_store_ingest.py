import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_store_helpers import DF20_COLUMNS, bad_rows, make_rows, write_csv

from store import FeatureStore, StoreError, StoreLockedError
from store.ingest import ingest_metadata

TABLES = ("observations", "images", "rejects", "species")


def counts(fs):
    return {t: fs.sql(f"SELECT count(*) AS n FROM {t}").column("n")[0].as_py() for t in TABLES}


@pytest.fixture
def fs(tmp_path):
    with FeatureStore(tmp_path / "s.duckdb") as store:
        yield store


def test_new_store_seeds_official_species(fs):
    got = fs.sql("SELECT count(*) AS n, count(*) FILTER (WHERE poisonous) AS p FROM species")
    assert got.to_pylist() == [{"n": 1604, "p": 49}]


def test_counts_invariant_and_rejects_of_each_kind(fs, tmp_path):
    rows = make_rows(5)
    bads = bad_rows(rows[0])
    all_rows = rows + [b for b, _ in bads]
    report = fs.ingest_metadata(write_csv(tmp_path / "m.csv", all_rows))
    assert report.read == len(all_rows)
    assert report.read == report.stored + report.rejected + report.duplicate
    assert (report.stored, report.rejected, report.duplicate) == (10, len(bads), 0)
    stored = fs.sql("SELECT row_number, reason, raw FROM rejects ORDER BY row_number").to_pylist()
    assert [r["row_number"] for r in stored] == list(range(11, 11 + len(bads)))
    for rec, (row, reason) in zip(stored, bads, strict=True):
        assert reason in rec["reason"], rec
        assert f'"observationID":"{row["observationID"]}"' in rec["raw"]  # raw row kept
    assert counts(fs)["observations"] == 5
    assert counts(fs)["images"] == 10


def test_reingest_adds_nothing(fs, tmp_path):
    rows = make_rows(4) + [b for b, _ in bad_rows(make_rows(1)[0])]
    path = write_csv(tmp_path / "m.csv", rows)
    first = fs.ingest_metadata(path)
    before = counts(fs)
    ids = fs.sql("SELECT image_id, image_path FROM images ORDER BY image_id").to_pylist()
    again = fs.ingest_metadata(path)
    assert counts(fs) == before
    assert fs.sql("SELECT image_id, image_path FROM images ORDER BY image_id").to_pylist() == ids
    assert again.stored == 0 and again.duplicate == first.stored
    assert again.read == again.stored + again.rejected + again.duplicate


def test_conflict_with_stored_row_is_reported_not_overwritten(fs, tmp_path):
    rows = make_rows(3)
    fs.ingest_metadata(write_csv(tmp_path / "a.csv", rows))
    changed = [dict(rows[0], month="7"), dict(rows[2], observationID="5555")]
    report = fs.ingest_metadata(write_csv(tmp_path / "b.csv", changed))
    assert report.conflicts == 2 and report.rejected == 2 and report.stored == 0
    month = fs.sql("SELECT month FROM observations WHERE observation_id = ?",
                   [int(rows[0]["observationID"])]).column(0)[0].as_py()
    assert month == int(rows[0]["month"])  # unchanged
    reasons = fs.sql("SELECT reason FROM rejects ORDER BY row_number").column(0).to_pylist()
    assert reasons[0].startswith("conflict: observation") and "month" in reasons[0]
    assert reasons[1] == "conflict: image_path 1001-0.JPG is already stored under observation 1001"
    assert counts(fs)["observations"] == 3


def test_conflicting_rows_inside_one_file(fs, tmp_path):
    rows = make_rows(1, images_per_obs=3)
    rows[2]["Substrate"] = "wood"  # third image disagrees with the first on the observation
    rows.append(dict(rows[0], ImageUniqueID="other"))  # same image_path, other content
    rows.append(dict(rows[1]))  # exact repeat
    report = fs.ingest_metadata(write_csv(tmp_path / "m.csv", rows))
    assert (report.stored, report.conflicts, report.duplicate) == (2, 2, 1)
    assert report.read == report.stored + report.rejected + report.duplicate


def test_new_image_of_known_observation_is_stored(fs, tmp_path):
    rows = make_rows(2, images_per_obs=1)
    fs.ingest_metadata(write_csv(tmp_path / "a.csv", rows))
    extra = dict(rows[0], image_path=f"{rows[0]['observationID']}-7.JPG", ImageUniqueID="x")
    report = fs.ingest_metadata(write_csv(tmp_path / "b.csv", [extra]))
    assert report.stored == 1 and report.observations_added == 0
    n = fs.sql("SELECT count(*) FROM images WHERE observation_id = ?",
               [int(rows[0]["observationID"])]).column(0)[0].as_py()
    assert n == 2


def test_missing_values_are_null_not_rejected(fs, tmp_path):
    rows = make_rows(2, images_per_obs=1)
    rows[0].update(month="", day="", Latitude="", Longitude="", Habitat="")
    report = fs.ingest_metadata(write_csv(tmp_path / "m.csv", rows))
    assert report.stored == 2 and report.rejected == 0
    got = fs.sql("SELECT month, day, latitude, longitude, habitat, meta_substrate "
                 "FROM observations ORDER BY observation_id").to_pylist()[0]
    assert got == {"month": None, "day": None, "latitude": None, "longitude": None,
                   "habitat": None, "meta_substrate": "jord"}  # group filled from reference list


def test_test_format_without_labels_and_parquet(fs, tmp_path):
    rows = make_rows(3, images_per_obs=1)
    cols = [c for c in DF20_COLUMNS if c not in ("class_id", "poisonous", "species", "genus",
                                                  "family", "order", "class", "phylum",
                                                  "scientificName", "kingdom")]
    table = pa.Table.from_pylist([{c: r[c] for c in cols} for r in rows])
    table = table.rename_columns(["observation_id" if c == "observationID" else c for c in cols])
    table = table.set_column(table.column_names.index("Latitude"), "Latitude",
                             pa.array([float(r["Latitude"]) for r in rows]))
    path = tmp_path / "test.parquet"
    pq.write_table(table, path)
    report = fs.ingest_metadata(path, role="test")
    assert report.stored == 3
    got = fs.sql("SELECT role, class_id, latitude FROM observations ORDER BY observation_id")
    assert got.column("role").to_pylist() == ["test"] * 3
    assert got.column("class_id").to_pylist() == [None] * 3
    assert got.column("latitude").to_pylist() == [float(r["Latitude"]) for r in rows]


def test_taxonomy_filled_from_labelled_rows(fs, tmp_path):
    fs.ingest_metadata(write_csv(tmp_path / "m.csv", make_rows(4)))
    got = fs.sql('SELECT species, genus, "order" FROM species WHERE class_id = 2').to_pylist()
    assert got == [{"species": "Genus2 species2", "genus": "Genus2", "order": "Agaricales"}]


def test_images_dir_gives_absolute_file_paths(fs, tmp_path):
    (tmp_path / "img").mkdir()
    fs.ingest_metadata(write_csv(tmp_path / "m.csv", make_rows(1, images_per_obs=1)),
                       images_dir=tmp_path / "img")
    path = fs.sql("SELECT file_path FROM images").column(0)[0].as_py()
    assert path == str((tmp_path / "img").resolve() / "1000-0.JPG")


@pytest.mark.parametrize("content", [b"", b"\x00\x01\x02PK\xff\xfe binary", b"a,b\n1,2\n",
                                     b"observationID,image_path\n"])
def test_not_a_metadata_file_changes_nothing(fs, tmp_path, content):
    fs.ingest_metadata(write_csv(tmp_path / "ok.csv", make_rows(2)))
    before = counts(fs)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    with pytest.raises(StoreError, match="bad.csv"):
        fs.ingest_metadata(bad)
    assert counts(fs) == before


def test_bad_role_is_refused(fs, tmp_path):
    with pytest.raises(StoreError, match="role 'training'"):
        fs.ingest_metadata(write_csv(tmp_path / "m.csv", make_rows(1)), role="training")


def test_failed_transaction_changes_nothing(fs, tmp_path):
    before = counts(fs)
    with pytest.raises(RuntimeError), fs.transaction() as con:
        report = ingest_metadata(con, write_csv(tmp_path / "m.csv", make_rows(3)))
        assert report.stored == 6
        raise RuntimeError("a later step failed")
    assert counts(fs) == before


def test_read_only_sql_refuses_writes(tmp_path):
    path = tmp_path / "s.duckdb"
    with FeatureStore(path) as fs:
        fs.ingest_metadata(write_csv(tmp_path / "m.csv", make_rows(2)))
    with FeatureStore(path, read_only=True) as ro:
        n = ro.sql("SELECT count(*) FROM observations WHERE month = $m", {"m": 1})
        assert n.column(0)[0].as_py() == 1
        with pytest.raises(StoreError, match="read"):
            ro.sql("DELETE FROM observations")
        with pytest.raises(StoreError, match="read-only"):
            ro.ingest_metadata(tmp_path / "m.csv")
    with FeatureStore(path, read_only=True) as ro:
        assert ro.sql("SELECT count(*) FROM observations").column(0)[0].as_py() == 2


def test_read_only_open_of_missing_store(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        FeatureStore(tmp_path / "nope.duckdb", read_only=True)


def test_second_writer_process_gets_lock_error(tmp_path):
    path = tmp_path / "s.duckdb"
    FeatureStore(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, duckdb
            con = duckdb.connect({str(path)!r})
            print("ready", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError) as err:
            FeatureStore(path)
        assert str(path) in str(err.value) and "read-only" in str(err.value)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)

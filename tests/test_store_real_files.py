"""Real-format metadata files: DF20-Mini as published (``gbifID``, the publisher's
absolute image paths, its own class numbering 0..181) and files numbered otherwise
than the official poison list — poison status follows species names, never numbers."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from test_store_helpers import make_rows, write_csv

from sporeprint.cli import main
from store import ClassNumberingError, FeatureStore, MetadataError
from store.reference import poison_status

DATA = Path(__file__).parent / "data"
EXCERPT = DATA / "df20_mini_excerpt.csv"  # the first 40 rows of the published file
# the published file, where a checkout has it beside it (or in the team's shared folder)
FULL = next((p for p in (Path(__file__).resolve().parents[2] / "shared/data",
                         Path("/work/shared/data"))
             if (p / "df20_mini_test_metadata.csv").is_file()),
            Path("/nonexistent")) / "df20_mini_test_metadata.csv"
POISONOUS = sorted(c for c, p in poison_status().items() if p)
EDIBLE = sorted(c for c, p in poison_status().items() if not p)


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _check_mini_ingest(path: Path, tmp_path: Path) -> None:
    rows = _rows(path)
    store = tmp_path / "mini.duckdb"
    assert main(["ingest", "--store", str(store), "--role", "train", "--metadata",
                 str(path)]) == 0
    with FeatureStore(store, read_only=True) as fs:
        got = fs.sql("SELECT count(*) AS n FROM images").column(0)[0].as_py()
        assert got == len(rows)  # zero rejects
        assert fs.sql("SELECT count(*) FROM rejects").column(0)[0].as_py() == 0
        n_obs = len({r["gbifID"] for r in rows})
        assert fs.sql("SELECT count(*) FROM observations").column(0)[0].as_py() == n_obs
        # the publisher's absolute paths are reduced to the DF20 file names
        paths = fs.sql("SELECT image_path FROM images").column(0).to_pylist()
        assert sorted(paths) == sorted(r["image_path"].rsplit("/", 1)[-1] for r in rows)
        # nothing confirms the Mini numbering is DF20's: no row inherits a flag by number
        flags = fs.sql("SELECT DISTINCT s.poisonous, o.class_id FROM observations o "
                       "LEFT JOIN species s USING (class_id)").to_pylist()
        assert flags == [{"poisonous": None, "class_id": -1}]
        # the species names and the rest of the metadata are kept
        names = fs.sql("SELECT DISTINCT species FROM observations").column(0).to_pylist()
        assert set(names) == {r["species"] or None for r in rows}


def test_the_df20_mini_excerpt_ingests_without_a_reject(tmp_path, capsys):
    _check_mini_ingest(EXCERPT, tmp_path)
    out = capsys.readouterr().out
    assert "absolute image paths reduced" in out and "--class-ids official" in out


@pytest.mark.skipif(not FULL.is_file(), reason="the published DF20-Mini file is not here")
def test_the_published_df20_mini_file_ingests_without_a_reject(tmp_path):
    _check_mini_ingest(FULL, tmp_path)


def _df20_train(tmp_path: Path, names: dict[int, str]) -> Path:
    """A DF20-numbered training file (official flags in its poisonous column)."""
    rows = make_rows(len(names), classes=list(names), images_per_obs=1, first_id=70_000)
    for r in rows:
        r["species"] = names[int(r["class_id"])]
    return write_csv(tmp_path / "df20_train.csv", rows)


def test_real_rows_get_the_poison_status_of_their_species_name(tmp_path):
    mini = _rows(EXCERPT)
    by_name = {r["species"]: int(r["class_id"]) for r in mini if r["species"]}
    # DF20's ids for two of the Mini species: one poisonous, one edible, neither the
    # Mini number (DF20-Mini class 147 is not DF20 class 147)
    poisonous_id = next(c for c in POISONOUS if c not in by_name.values())
    edible_id = next(c for c in EDIBLE if c > 181)
    names = {poisonous_id: "Mycena haematopus", edible_id: "Russula adusta"}
    with FeatureStore(tmp_path / "s.duckdb") as fs:
        fs.ingest_metadata(_df20_train(tmp_path, names), role="train")
        with pytest.raises(ClassNumberingError) as err:
            fs.ingest_metadata(EXCERPT, role="val")
        msg = str(err.value)
        assert "\n" not in msg and "--class-ids species" in msg and "nothing was ingested" in msg
        assert fs.sql("SELECT count(*) FROM observations WHERE role = 'val'"
                      ).column(0)[0].as_py() == 0
        report = fs.ingest_metadata(EXCERPT, role="val", class_ids="species")
        assert report.stored == len(mini) and report.rejected == 0
        got = fs.sql("SELECT o.species, o.class_id, s.poisonous FROM observations o "
                     "LEFT JOIN species s USING (class_id) WHERE o.role = 'val'").to_pylist()
    for g in got:
        if g["species"] == "Mycena haematopus":
            assert (g["class_id"], g["poisonous"]) == (poisonous_id, True)
        elif g["species"] == "Russula adusta":
            assert (g["class_id"], g["poisonous"]) == (edible_id, False)
        else:  # unknown to the official list: poison status unknown, never edible
            assert (g["class_id"], g["poisonous"]) == (-1, None)
    assert report.classes_by_species == sum(r["species"] in ("Mycena haematopus",
                                                             "Russula adusta") for r in mini)


def test_a_renumbered_file_is_refused_and_mapped_by_species_name(tmp_path):
    a, b = POISONOUS[0], EDIBLE[0]
    with FeatureStore(tmp_path / "s.duckdb") as fs:
        fs.ingest_metadata(_df20_train(tmp_path, {a: "Amanita mortis", b: "Boletus bonus"}))
        # the same two species, numbered the other way round (no poisonous column)
        rows = make_rows(2, classes=[b, a], images_per_obs=1, first_id=80_000)
        for r, name in zip(rows, ["Amanita mortis", "Boletus bonus"], strict=True):
            r["species"] = name
        cols = [c for c in rows[0] if c != "poisonous"]
        path = write_csv(tmp_path / "swapped.csv", rows, columns=cols)
        with pytest.raises(ClassNumberingError, match=rf"class_id {b} is 'Amanita mortis' in "
                           rf"this file but 'Boletus bonus' in the store \(and 1 more"):
            fs.ingest_metadata(path, role="val")
        fs.ingest_metadata(path, role="val", class_ids="species")
        got = fs.sql("SELECT o.species, o.class_id, s.poisonous FROM observations o "
                     "JOIN species s USING (class_id) WHERE o.role = 'val' ORDER BY 1").to_pylist()
    assert got == [{"species": "Amanita mortis", "class_id": a, "poisonous": True},
                   {"species": "Boletus bonus", "class_id": b, "poisonous": False}]


def test_a_poisonous_column_that_contradicts_the_official_list_refuses_the_file(tmp_path):
    rows = make_rows(2, classes=[POISONOUS[0], EDIBLE[0]], images_per_obs=1)
    rows[0]["poisonous"] = "0"  # the file's own numbering: its class is edible
    with FeatureStore(tmp_path / "s.duckdb") as fs:
        with pytest.raises(ClassNumberingError, match=rf"class_id {POISONOUS[0]} .* is marked "
                           "poisonous=0 in this file but the official DF20 list has it poisonous"):
            fs.ingest_metadata(write_csv(tmp_path / "m.csv", rows))
        assert fs.sql("SELECT count(*) FROM observations").column(0)[0].as_py() == 0


def test_official_trusts_the_numbers_of_a_file_without_poison_flags(tmp_path):
    rows = make_rows(2, classes=[POISONOUS[0], EDIBLE[0]], images_per_obs=1)
    cols = [c for c in rows[0] if c != "poisonous"]
    path = write_csv(tmp_path / "m.csv", rows, columns=cols)
    with FeatureStore(tmp_path / "s.duckdb") as fs:
        auto = fs.ingest_metadata(path)
        assert auto.unknown_species_rows == 2
        assert set(fs.sql("SELECT class_id FROM observations").column(0).to_pylist()) == {-1}
    with FeatureStore(tmp_path / "t.duckdb") as fs:
        fs.ingest_metadata(path, class_ids="official")
        got = fs.sql("SELECT class_id FROM observations ORDER BY 1").column(0).to_pylist()
        assert got == sorted([POISONOUS[0], EDIBLE[0]])


@pytest.mark.parametrize("change, fragment", [
    ({"month": "13"}, "month 13 outside 1..12"),
    ({"month": "-5"}, "month -5 outside 1..12"),
    ({"day": "45"}, "day 45 outside 1..31"),
    ({"month": "september"}, "unparseable month 'september'"),
    ({"Latitude": "500"}, "latitude 500 outside -90..90"),
    ({"Longitude": ""}, "given without a longitude"),
])
def test_ingest_rejects_each_bad_value_with_its_reason(tmp_path, change, fragment):
    rows = make_rows(2, images_per_obs=1)
    rows[1].update(change)
    with FeatureStore(tmp_path / "s.duckdb") as fs:
        report = fs.ingest_metadata(write_csv(tmp_path / "m.csv", rows))
        assert (report.stored, report.rejected) == (1, 1)
        reason = fs.sql("SELECT reason FROM rejects").column(0)[0].as_py()
    assert fragment in reason and "\n" not in reason and ("give" in reason)


def test_ingest_refuses_an_unknown_column_by_name(tmp_path):
    rows = [dict(r, habbitat=r["Habitat"]) for r in make_rows(1)]
    path = write_csv(tmp_path / "m.csv", rows, columns=[*rows[0]])
    with FeatureStore(tmp_path / "s.duckdb") as fs:
        with pytest.raises(MetadataError, match="unknown column 'habbitat'; did you mean "
                                                "'habitat'"):
            fs.ingest_metadata(path)

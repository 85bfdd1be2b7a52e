"""The simulator's metadata profiles: derived from real DF20-format records, shipped as a
small table, and what the simulator samples from."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from sporeprint.simulator.metadata import SpeciesPreferences, draw_observations
from sporeprint.simulator.profiles import (
    COLUMNS,
    PROFILES_FILE,
    derive_profiles,
    load_profiles,
    write_profiles,
)

ROOT = Path(__file__).resolve().parents[1]
EXCERPT = ROOT / "tests" / "data" / "df20_mini_excerpt.csv"
REAL = [p / "shared" / "data" / "df20_mini_test_metadata.csv" for p in ROOT.parents[:2]]


def test_profiles_of_the_excerpt_count_its_records(tmp_path):
    rows = list(csv.DictReader(EXCERPT.open(encoding="utf-8")))
    derived = derive_profiles(EXCERPT, min_observations=2)
    # Species with two or more Danish observations, numbered in name order; the rows of a
    # profile add up to that species' observations.
    counts = {}
    for r in rows:
        if r["countryCode"] == "DK" and r["Latitude"]:
            counts[r["species"]] = counts.get(r["species"], 0) + 1
    kept = sorted(n for n, c in counts.items() if c >= 2)
    assert max(r["profile"] for r in derived) + 1 == len(kept)
    per = np.bincount([r["profile"] for r in derived],
                      weights=[r["observations"] for r in derived])
    assert per.tolist() == [counts[n] for n in kept]
    # Written and read back: the same rows, vocabulary names in the file.
    out = tmp_path / "p.csv"
    write_profiles(derived, out)
    p = load_profiles(out)
    assert tuple(next(csv.reader(out.open(encoding="utf-8")))) == COLUMNS
    assert p.weight.sum() == sum(r["observations"] for r in derived)
    assert p.habitat.tolist() == [r["habitat"] for r in derived]


def test_the_shipped_table_is_small_and_carries_no_record_detail():
    text = PROFILES_FILE.read_text(encoding="utf-8")
    assert len(text) < 250_000
    header = text.splitlines()[0].split(",")
    assert tuple(header) == COLUMNS  # no names, ids, dates, people or coordinates
    p = load_profiles()
    assert p.n_profiles >= 150 and set(p.genera) >= {"Russula", "Mycena", "Amanita"}
    assert ((p.month >= 0) & (p.month <= 12)).all()


@pytest.mark.skipif(not any(r.is_file() for r in REAL), reason="the DF20-Mini file is not here")
def test_the_shipped_table_is_what_the_real_file_gives(tmp_path):
    real = next(r for r in REAL if r.is_file())
    write_profiles(derive_profiles(real), tmp_path / "p.csv")
    assert (tmp_path / "p.csv").read_bytes() == PROFILES_FILE.read_bytes()


def test_a_species_copies_fields_together_from_one_record_of_its_profile():
    p = load_profiles()
    prefs = SpeciesPreferences.draw(np.random.default_rng(0), np.array([0, 0, 1]), strength=1.0,
                                    month_jitter=0.0)
    cols = draw_observations(np.random.default_rng(1), prefs, np.zeros(400, np.int64),
                             years=(2021, 2021), missing=0.0, foreign=0.0)
    own = p.rows_of(int(prefs.profile[0]))
    records = {(p.habitat[i], p.substrate[i], p.month[i]) for i in own}
    drawn = set(zip(cols["_habitat_idx"].tolist(), cols["_substrate_idx"].tolist(),
                    cols["month"].astype(int).tolist(), strict=True))
    assert drawn <= records  # every observation is one real record's triple
    # strength 0: metadata independent of the species (records from the whole table).
    none = SpeciesPreferences.draw(np.random.default_rng(0), np.array([0, 0, 1]), strength=0.0)
    cols0 = draw_observations(np.random.default_rng(1), none, np.zeros(400, np.int64),
                              years=(2021, 2021), missing=0.0, foreign=0.0)
    assert len(set(cols0["_habitat_idx"].tolist())) > len({p.habitat[i] for i in own})


def test_strength_out_of_range_is_refused():
    with pytest.raises(ValueError, match="strength=1.5"):
        SpeciesPreferences.draw(np.random.default_rng(0), np.array([0]), strength=1.5)

"""Metadata profiles drawn from real Danish fungi records.

The simulator's observation metadata (habitat, substrate, month, place) is sampled from
**profiles**: one per real species of the DF20-Mini test metadata (Danish Fungi 2020,
Picek et al., WACV 2022; records of the Danish Mycological Society's fungal atlas, made
public with the dataset). A profile is the list of real observations of one species,
reduced to four fields and counted:

    profile, genus, habitat, substrate, month, site, observations

``site`` is the index of the nearest of the simulator's Danish hot spots
(``places.DANISH_SITES``), so a profile says *where in Denmark* without carrying the
record's coordinates; records from abroad, and species with fewer than
``MIN_OBSERVATIONS`` observations, are left out. Species names are not kept: a profile
is known by a number and its real genus (look-alikes are given profiles of one real
genus, whose habits overlap as real siblings' do).

Because the four fields of one row come from one real record, sampling rows keeps their
dependence (a species on wood in spring in Nordjylland stays so). The shipped table,
``data/df20_profiles.csv``, is derived by :func:`derive_profiles`; to rebuild it from
the published file::

    python -m sporeprint.simulator.profiles path/to/df20_mini_test_metadata.csv

>>> p = load_profiles()
>>> p.n_profiles > 100, sorted(p.genera)[:2]
(True, ['Agaricus', 'Amanita'])
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from sporeprint.simulator.places import DANISH_SITES
from store.reference import habitats, substrate_groups

PROFILES_FILE = Path(__file__).resolve().parent / "data" / "df20_profiles.csv"
MIN_OBSERVATIONS = 5
COLUMNS = ("profile", "genus", "habitat", "substrate", "month", "site", "observations")
SOURCE = ("Danish Fungi 2020 (Picek et al., WACV 2022), DF20-Mini test metadata: records "
          "of the Danish Mycological Society's fungal atlas")


@dataclass(frozen=True)
class Profiles:
    """The profile rows as arrays; ``habitat``/``substrate`` index the DF20 vocabularies
    (``store.reference``; -1 = missing), ``month`` is 1..12 (0 = missing), ``site`` indexes
    ``DANISH_SITES``."""

    profile: np.ndarray  # (R,) int
    genus: np.ndarray  # (R,) str, the profile's real genus
    habitat: np.ndarray  # (R,) int
    substrate: np.ndarray  # (R,) int
    month: np.ndarray  # (R,) int
    site: np.ndarray  # (R,) int
    weight: np.ndarray  # (R,) observations behind each row

    @property
    def n_profiles(self) -> int:
        return int(self.profile.max()) + 1

    @property
    def genera(self) -> list[str]:
        return sorted(set(self.genus.tolist()))

    def genus_of(self) -> np.ndarray:
        """(P,) real genus of each profile."""
        out = np.empty(self.n_profiles, dtype=object)
        out[self.profile] = self.genus
        return out

    def rows_of(self, profile: int) -> np.ndarray:
        return np.flatnonzero(self.profile == profile)


def _nearest_site(lat: float, lon: float) -> int:
    la = np.array([s[1] for s in DANISH_SITES])
    lo = np.array([s[2] for s in DANISH_SITES])
    # Equirectangular distance: at 56° N a degree of longitude is about 0.56 of latitude's.
    d = (la - lat) ** 2 + ((lo - lon) * np.cos(np.radians(56.0))) ** 2
    return int(d.argmin())


def derive_profiles(path: str | Path, min_observations: int = MIN_OBSERVATIONS) -> list[dict]:
    """Profile rows (dicts in ``COLUMNS`` order) from a DF20-format metadata CSV: one
    observation per ``gbifID``/``observationID`` (its first image row), Danish records
    with coordinates only, species with at least ``min_observations`` such observations.
    Profiles are numbered by species name order; rows are sorted."""
    path = Path(path)
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} holds no rows; pass a DF20-format metadata CSV")
    id_col = "gbifID" if "gbifID" in rows[0] else "observationID"
    hab_vocab = {h: i for i, h in enumerate(habitats())}
    sub_vocab = {s: i for i, s in enumerate(substrate_groups())}
    seen: set[str] = set()
    per_species: dict[str, list[tuple]] = {}
    genus: dict[str, str] = {}
    for r in rows:
        if r[id_col] in seen:
            continue
        seen.add(r[id_col])
        if r.get("countryCode") != "DK" or not r.get("Latitude") or not r.get("Longitude"):
            continue
        name = r["species"].strip()
        if not name:
            continue
        month = int(float(r["month"])) if r.get("month") not in (None, "", "nan") else 0
        key = (hab_vocab.get(r.get("Habitat", ""), -1), sub_vocab.get(r.get("Substrate", ""), -1),
               month, _nearest_site(float(r["Latitude"]), float(r["Longitude"])))
        per_species.setdefault(name, []).append(key)
        genus[name] = r["genus"].strip()
    kept = sorted(n for n, obs in per_species.items() if len(obs) >= min_observations)
    out = []
    for p, name in enumerate(kept):
        keys, counts = np.unique(np.array(per_species[name]), axis=0, return_counts=True)
        for (h, s, m, site), c in zip(keys.tolist(), counts.tolist(), strict=True):
            out.append({"profile": p, "genus": genus[name], "habitat": h, "substrate": s,
                        "month": m, "site": site, "observations": c})
    return out


def write_profiles(rows: list[dict], path: str | Path) -> None:
    """The profile rows as CSV, with the vocabulary names in place of their indices."""
    hab, sub = list(habitats()), list(substrate_groups())
    with Path(path).open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([r["profile"], r["genus"], hab[r["habitat"]] if r["habitat"] >= 0 else "",
                        sub[r["substrate"]] if r["substrate"] >= 0 else "",
                        r["month"] or "", r["site"], r["observations"]])


@lru_cache(maxsize=2)
def load_profiles(path: str | Path = PROFILES_FILE) -> Profiles:
    """The profile table shipped with sporeprint (or another written by :func:`write_profiles`)."""
    hab = {h: i for i, h in enumerate(habitats())}
    sub = {s: i for i, s in enumerate(substrate_groups())}
    with Path(path).open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or tuple(rows[0]) != COLUMNS:
        raise ValueError(f"{path} is not a profile table (columns {', '.join(COLUMNS)}); "
                         "rebuild it with python -m sporeprint.simulator.profiles")

    def ints(name, lookup=None):
        if lookup is None:
            return np.array([int(r[name]) if r[name] else 0 for r in rows], np.int64)
        return np.array([lookup[r[name]] if r[name] else -1 for r in rows], np.int64)

    return Profiles(profile=ints("profile"), genus=np.array([r["genus"] for r in rows], dtype=object),
                    habitat=ints("habitat", hab), substrate=ints("substrate", sub),
                    month=ints("month"), site=ints("site"),
                    weight=ints("observations").astype(float))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Derive the simulator's metadata profiles from a "
                                 "DF20-format metadata CSV (e.g. the DF20-Mini test metadata).")
    ap.add_argument("csv", help="DF20-format metadata CSV")
    ap.add_argument("--out", default=str(PROFILES_FILE), help="where to write (default: the "
                    "shipped table)")
    ap.add_argument("--min-observations", type=int, default=MIN_OBSERVATIONS)
    args = ap.parse_args(argv)
    rows = derive_profiles(args.csv, args.min_observations)
    write_profiles(rows, args.out)
    print(f"wrote {len(rows)} rows of {rows[-1]['profile'] + 1} profiles to {args.out}")


if __name__ == "__main__":
    main()

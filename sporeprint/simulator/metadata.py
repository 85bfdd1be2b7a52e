"""Observation metadata grounded in real Danish fungi records.

Every simulated species follows one real **profile** (:mod:`.profiles`: the habitat,
substrate, month and place of the real observations of one DF20-Mini species), and its
observations copy those four fields *together* from one real record of the profile —
or, with probability ``1 - strength``, from any real record — so seasons peak in
August–October, ``soil`` dominates and habitats are as mixed as in the real data. Dates
within the month, coordinates around the record's Danish hot spot, recorders and a few
percent of missing values and records from abroad are drawn on top.

>>> import numpy as np
>>> prefs = SpeciesPreferences.draw(np.random.default_rng(0), genus_idx=np.array([0, 0, 1]))
>>> cols = draw_observations(np.random.default_rng(1), prefs, np.array([0, 2]), years=(2021, 2021))
>>> sorted(cols)[:3]
['CoorUncert', 'Habitat', 'Latitude']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sporeprint.simulator.places import DANISH_SITES, DENMARK_BOX
from sporeprint.simulator.profiles import Profiles, load_profiles
from store.reference import country_codes, habitats, substrate_groups

_PLACE_KINDS = ["Skov", "Mose", "Strand", "Plantage", "Hede", "Park", "Kirkegård", "Sø", "Dyrehave"]
_FIRST = ["Jens", "Anne", "Søren", "Mette", "Lars", "Hanne", "Thomas", "Karen", "Morten", "Lene",
          "Jacob", "Tove", "Henrik", "Birgitte", "Ole", "Inge", "Mads", "Lise", "Peter", "Kirsten"]
_LAST = ["Hansen", "Jensen", "Nielsen", "Pedersen", "Andersen", "Christensen", "Larsen",
         "Sørensen", "Rasmussen", "Petersen", "Madsen", "Kristensen", "Olsen", "Thomsen"]
UNCERTAINTY_M = np.array([5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0])
_UNCERTAINTY_P = np.array([0.05, 0.2, 0.2, 0.15, 0.15, 0.1, 0.07, 0.05, 0.03])


def substrates() -> list[str]:
    return list(substrate_groups())


@dataclass
class SpeciesPreferences:
    """Which real profile each simulated species follows (see :mod:`.profiles`), and how
    faithfully: an observation takes its habitat, substrate, month and place from one real
    record of its species' profile with probability ``strength``, otherwise from a record
    of the whole real table (so rare habits are not over-sharp, and 0 makes metadata
    independent of the species)."""

    profile: np.ndarray  # (S,) profile index per species
    strength: float
    month_jitter: float  # share of observations moved one month earlier or later

    @classmethod
    def draw(cls, rng: np.random.Generator, genus_idx: np.ndarray, strength: float = 0.45,
             twin: np.ndarray | None = None, month_jitter: float = 0.2,
             profiles: Profiles | None = None) -> SpeciesPreferences:
        """Each simulated genus follows one real genus (drawn in proportion to its
        profiles), and its species take that genus's profiles in a random order, reusing
        them only when the genus has more species than profiles. A look-alike (``twin[s]
        >= 0``) takes another profile of its twin's real genus, so the pair's habits
        overlap as real siblings' do. Several simulated species can share a profile."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"metadata strength={strength} must be in [0, 1]")
        prof = load_profiles() if profiles is None else profiles
        real_genus = prof.genus_of()
        names = np.array(sorted(set(real_genus.tolist())), dtype=object)
        members = {g: np.flatnonzero(real_genus == g) for g in names}
        sizes = np.array([len(members[g]) for g in names], float)
        n_genera = int(genus_idx.max()) + 1
        sim_to_real = names[rng.choice(len(names), size=n_genera, p=sizes / sizes.sum())]
        out = np.empty(len(genus_idx), np.int64)
        for g in range(n_genera):
            species = np.flatnonzero(genus_idx == g)
            pool = rng.permutation(members[sim_to_real[g]])
            out[species] = pool[np.arange(len(species)) % len(pool)]
        if twin is not None:
            for s in np.flatnonzero(twin >= 0):
                mates = members[real_genus[out[twin[s]]]]
                others = mates[mates != out[twin[s]]]
                out[s] = others[rng.integers(len(others))] if len(others) else out[twin[s]]
        return cls(out, float(strength), float(month_jitter))


def _draw_records(rng: np.random.Generator, prefs: SpeciesPreferences, species: np.ndarray,
                  prof: Profiles) -> np.ndarray:
    """Index of one profile row per observation: a row of the species' own profile with
    probability ``prefs.strength``, else any row, each in proportion to its observations."""
    n = len(species)
    order = np.argsort(prof.profile, kind="stable")
    starts = np.searchsorted(prof.profile[order], np.arange(prof.n_profiles + 1))
    cum = np.cumsum(prof.weight[order])
    before = np.concatenate([[0.0], cum])
    p = prefs.profile[species]
    lo, hi = before[starts[p]], before[starts[p + 1]]
    u = lo + rng.random(n) * (hi - lo)
    own = order[np.minimum(np.searchsorted(cum, u, side="right"), len(order) - 1)]
    anywhere = order[np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"),
                                len(order) - 1)]
    return np.where(rng.random(n) < prefs.strength, own, anywhere)


def _days_in_month(year: np.ndarray, month: np.ndarray) -> np.ndarray:
    first = (year.astype("datetime64[Y]") - np.datetime64("1970", "Y")).astype("datetime64[M]") \
        + (month - 1).astype("timedelta64[M]")
    return ((first + np.timedelta64(1, "M")).astype("datetime64[D]")
            - first.astype("datetime64[D]")).astype(np.int64)


def draw_observations(rng: np.random.Generator, prefs: SpeciesPreferences, species: np.ndarray,
                      years: tuple[int, int], missing: float = 0.03,
                      foreign: float = 0.01) -> dict[str, np.ndarray]:
    """Observation-level DF20 metadata columns for observations of the given species keys.

    Values are numpy arrays; missing entries are ``None`` (object arrays) or NaN (floats),
    and month/day are float with NaN where missing.
    """
    n = len(species)
    subs, habs = np.array(substrates(), dtype=object), np.array(habitats(), dtype=object)
    groups = substrate_groups()
    prof = load_profiles()
    rec = _draw_records(rng, prefs, species, prof)
    sub_i, hab_i, site_i = prof.substrate[rec], prof.habitat[rec], prof.site[rec]

    lo, hi = years
    span = np.arange(lo, hi + 1)
    yw = (span - lo + 1.0) ** 1.5
    year = rng.choice(span, size=n, p=yw / yw.sum())
    month = prof.month[rec].copy()
    undated = month == 0
    month[undated] = 1 + rng.integers(12, size=int(undated.sum()))
    moved = rng.random(n) < prefs.month_jitter
    month[moved] = (month[moved] - 1 + rng.choice([-1, 1], size=int(moved.sum()))) % 12 + 1
    day = 1 + np.floor(rng.random(n) * _days_in_month(year, month)).astype(np.int64)

    site_lat = np.array([s[1] for s in DANISH_SITES])
    site_lon = np.array([s[2] for s in DANISH_SITES])
    lat = np.clip(site_lat[site_i] + 0.08 * rng.standard_normal(n), *DENMARK_BOX[:2]).round(5)
    lon = np.clip(site_lon[site_i] + 0.13 * rng.standard_normal(n), *DENMARK_BOX[2:]).round(5)
    uncert = rng.choice(UNCERTAINTY_M, size=n, p=_UNCERTAINTY_P)

    names = np.array([s[0] for s in DANISH_SITES], dtype=object)
    region = np.array([s[3] for s in DANISH_SITES])
    region_names = np.array([s[4] for s in DANISH_SITES], dtype=object)
    muni_no = np.array([sum(1 for t in DANISH_SITES[:i] if t[3] == s[3]) + 1
                        for i, s in enumerate(DANISH_SITES)])
    level1_gid = np.array([f"DNK.{r}_1" for r in region], dtype=object)
    level2_gid = np.array([f"DNK.{r}.{m}_1" for r, m in zip(region, muni_no, strict=True)], dtype=object)
    kinds = np.array(_PLACE_KINDS, dtype=object)
    locality = names[site_i] + " " + kinds[rng.integers(len(kinds), size=n)]
    people = np.array([f"{f} {s}" for f in _FIRST for s in _LAST], dtype=object)
    who = np.minimum(rng.zipf(1.6, size=n) - 1, len(people) - 1)

    sub_text = np.where(sub_i >= 0, subs[np.maximum(sub_i, 0)], None)
    group_of = np.array([groups[v] for v in subs], dtype=object)
    meta_sub = np.where(sub_i >= 0, group_of[np.maximum(sub_i, 0)], None)
    cols: dict[str, np.ndarray] = {
        "year": year, "month": month.astype(float), "day": day.astype(float),
        "countryCode": np.full(n, "DK", dtype=object), "locality": locality,
        "level0Gid": np.full(n, "DNK", dtype=object),
        "level0Name": np.full(n, "Denmark", dtype=object),
        "level1Gid": level1_gid[site_i], "level1Name": region_names[site_i],
        "level2Gid": level2_gid[site_i], "level2Name": names[site_i],
        "Substrate": sub_text, "MetaSubstrate": meta_sub,
        "rightsHolder": people[rng.permutation(len(people))][who],
        "Latitude": lat, "Longitude": lon, "CoorUncert": uncert,
        "Habitat": np.where(hab_i >= 0, habs[np.maximum(hab_i, 0)], None),
    }
    # Missing values, and a few observations from abroad (no Danish coordinates or regions).
    no_date = rng.random(n) < missing
    cols["month"][no_date] = np.nan
    cols["day"][no_date | (rng.random(n) < missing / 2)] = np.nan
    no_coords = rng.random(n) < missing
    abroad = rng.random(n) < foreign
    others = np.array([c for c in country_codes() if c != "DK"], dtype=object)
    cols["countryCode"][abroad] = others[rng.integers(len(others), size=int(abroad.sum()))]
    for key in ("Latitude", "Longitude", "CoorUncert"):
        cols[key][no_coords | abroad] = np.nan
    for key in ("locality", "level0Gid", "level0Name", "level1Gid", "level1Name",
                "level2Gid", "level2Name"):
        cols[key][abroad] = None
    no_sub = rng.random(n) < missing
    cols["Substrate"][no_sub] = None
    cols["MetaSubstrate"][no_sub] = None
    no_hab = rng.random(n) < 1.5 * missing
    cols["Habitat"][no_hab] = None
    # What the photo can show (the embedding model reads these; -1 = not recorded).
    cols["_substrate_idx"] = np.where(no_sub, -1, sub_i)
    cols["_habitat_idx"] = np.where(no_hab, -1, hab_i)
    return cols

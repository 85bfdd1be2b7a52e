"""Observation metadata with species-dependent habits.

Each species gets preferences drawn around its genus's: a distribution over
the 32 real DF20 substrates and the 31 habitats, a fruiting season (peak month
and spread) and a few favourite Danish regions. Observations then draw their
Substrate, Habitat, date and coordinates from their species' preferences, and
a few percent of values are left missing.

>>> import numpy as np
>>> prefs = SpeciesPreferences.draw(np.random.default_rng(0), genus_idx=np.array([0, 0, 1]))
>>> cols = draw_observations(np.random.default_rng(1), prefs, np.array([0, 2]), years=(2021, 2021))
>>> sorted(cols)[:3]
['CoorUncert', 'Habitat', 'Latitude']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from store.reference import country_codes, habitats, substrate_groups

# (municipality, latitude, longitude, level1 index, level1 name, weight): observation hot spots.
DANISH_SITES = [
    ("København", 55.68, 12.57, 1, "Hovedstaden", 3.0),
    ("Hillerød", 55.93, 12.31, 1, "Hovedstaden", 1.5),
    ("Bornholm", 55.13, 14.90, 1, "Hovedstaden", 0.7),
    ("Aarhus", 56.16, 10.20, 2, "Midtjylland", 2.0),
    ("Silkeborg", 56.17, 9.55, 2, "Midtjylland", 1.2),
    ("Viborg", 56.45, 9.40, 2, "Midtjylland", 0.8),
    ("Herning", 56.14, 8.97, 2, "Midtjylland", 0.6),
    ("Randers", 56.46, 10.04, 2, "Midtjylland", 0.7),
    ("Ringkøbing-Skjern", 56.00, 8.40, 2, "Midtjylland", 0.5),
    ("Aalborg", 57.05, 9.92, 3, "Nordjylland", 1.2),
    ("Frederikshavn", 57.44, 10.54, 3, "Nordjylland", 0.6),
    ("Thisted", 56.96, 8.69, 3, "Nordjylland", 0.6),
    ("Roskilde", 55.64, 12.08, 4, "Sjælland", 1.0),
    ("Næstved", 55.23, 11.76, 4, "Sjælland", 0.8),
    ("Holbæk", 55.72, 11.71, 4, "Sjælland", 0.6),
    ("Guldborgsund", 54.77, 11.87, 4, "Sjælland", 0.5),
    ("Odense", 55.40, 10.39, 5, "Syddanmark", 1.2),
    ("Svendborg", 55.06, 10.61, 5, "Syddanmark", 0.6),
    ("Esbjerg", 55.47, 8.45, 5, "Syddanmark", 0.7),
    ("Vejle", 55.71, 9.54, 5, "Syddanmark", 0.8),
    ("Kolding", 55.49, 9.47, 5, "Syddanmark", 0.6),
    ("Sønderborg", 54.91, 9.79, 5, "Syddanmark", 0.6),
]
DENMARK_BOX = (54.56, 57.75, 8.07, 15.20)  # lat min, lat max, lon min, lon max
_PLACE_KINDS = ["Skov", "Mose", "Strand", "Plantage", "Hede", "Park", "Kirkegård", "Sø", "Dyrehave"]
_FIRST = ["Jens", "Anne", "Søren", "Mette", "Lars", "Hanne", "Thomas", "Karen", "Morten", "Lene",
          "Jacob", "Tove", "Henrik", "Birgitte", "Ole", "Inge", "Mads", "Lise", "Peter", "Kirsten"]
_LAST = ["Hansen", "Jensen", "Nielsen", "Pedersen", "Andersen", "Christensen", "Larsen",
         "Sørensen", "Rasmussen", "Petersen", "Madsen", "Kristensen", "Olsen", "Thomsen"]
_COMMON_SUBSTRATES = {"soil": 30, "dead wood (including bark)": 20, "leaf or needle litter": 10,
                      "wood": 8, "bark of living trees": 7, "wood and roots of living trees": 4,
                      "stems of herbs, grass etc": 2, "mosses": 2, "stone": 2,
                      "dead stems of herbs, grass etc": 2, "cones": 1, "fruits": 1}
_COMMON_HABITATS = {"Deciduous woodland": 20, "Mixed woodland (with coniferous and deciduous trees)": 12,
                    "coniferous woodland/plantation": 10, "Unmanaged deciduous woodland": 6,
                    "park/churchyard": 6, "lawn": 4, "garden": 4, "natural grassland": 4,
                    "Acidic oak woodland": 3, "roadside": 3, "heath": 2, "dune": 2, "bog": 2,
                    "Unmanaged coniferous woodland": 3, "Bog woodland": 2, "hedgerow": 2}
UNCERTAINTY_M = np.array([5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0])
_UNCERTAINTY_P = np.array([0.05, 0.2, 0.2, 0.15, 0.15, 0.1, 0.07, 0.05, 0.03])


def substrates() -> list[str]:
    return list(substrate_groups())


def _base(values: list[str], common: dict[str, float]) -> np.ndarray:
    w = np.array([common.get(v, 0.4) for v in values])
    return w / w.sum()


def _categorical(rng: np.random.Generator, genus_idx: np.ndarray, base: np.ndarray,
                 genus_spread: float, species_spread: float) -> np.ndarray:
    """(S, V) per-species probabilities: log(base) + genus effect + species effect, softmaxed."""
    n_genera = int(genus_idx.max()) + 1
    genus = genus_spread * rng.standard_normal((n_genera, len(base)))
    logits = np.log(base) + genus[genus_idx] + species_spread * rng.standard_normal(
        (len(genus_idx), len(base)))
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


@dataclass
class SpeciesPreferences:
    """Per-species habits (arrays indexed by species key)."""

    substrate_p: np.ndarray  # (S, 32)
    habitat_p: np.ndarray  # (S, 31)
    peak_month: np.ndarray  # (S,) float in [0, 12)
    season_spread: np.ndarray  # (S,) months
    site_p: np.ndarray  # (S, len(DANISH_SITES))

    @classmethod
    def draw(cls, rng: np.random.Generator, genus_idx: np.ndarray,
             strength: float = 1.0) -> SpeciesPreferences:
        """``strength`` scales how much species differ (0 = metadata carries no signal)."""
        n, n_genera = len(genus_idx), int(genus_idx.max()) + 1
        sub = _categorical(rng, genus_idx, _base(substrates(), _COMMON_SUBSTRATES),
                           1.6 * strength, 0.8 * strength)
        hab = _categorical(rng, genus_idx, _base(list(habitats()), _COMMON_HABITATS),
                           1.3 * strength, 0.8 * strength)
        # Seasons: most genera fruit in autumn, some in spring, some all year round.
        kind = rng.choice(3, size=n_genera, p=[0.75, 0.15, 0.10])
        genus_peak = np.where(kind == 0, rng.normal(8.8, 1.0, n_genera),
                              np.where(kind == 1, rng.normal(3.5, 1.0, n_genera),
                                       rng.uniform(0, 12, n_genera)))
        peak = (genus_peak[genus_idx] + strength * rng.normal(0, 0.8, n)) % 12
        spread = np.where(kind[genus_idx] == 2, 4.0, rng.uniform(0.8, 1.6, n)) / max(strength, 1e-3)
        weights = np.array([s[5] for s in DANISH_SITES])
        sites = _categorical(rng, genus_idx, weights / weights.sum(), 0.8 * strength,
                             1.0 * strength)
        return cls(sub, hab, peak, np.minimum(spread, 6.0), sites)

    def separate_niches(self, rng: np.random.Generator, twin: np.ndarray,
                        weight: float = 0.6, season_shift: tuple[float, float] = (1.5, 3.0)
                        ) -> SpeciesPreferences:
        """Give each look-alike pair (species ``s`` and ``twin[s]``) habits of their own, as
        real look-alikes have: each member puts a share ``weight`` of its observations on
        a substrate, a habitat and a place of its own, and ``s`` fruits 1.5–3 months
        earlier or later than its twin. Returns a new object; species without a twin
        keep their habits."""
        sub, hab, site = self.substrate_p.copy(), self.habitat_p.copy(), self.site_p.copy()
        peak = self.peak_month.copy()
        has = np.flatnonzero(twin >= 0)
        members = np.unique(np.concatenate([has, twin[has]])) if len(has) else has
        for probs in (sub, hab, site):
            pick = rng.integers(probs.shape[1], size=len(members))
            probs[members] *= 1.0 - weight
            probs[members, pick] += weight
        if len(has):
            shift = rng.uniform(*season_shift, len(has)) * rng.choice([-1.0, 1.0], len(has))
            peak[has] = (peak[twin[has]] + shift) % 12
        return SpeciesPreferences(sub, hab, peak, self.season_spread, site)


def _sample_rows(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One category per entry of ``rows`` from ``probs[rows]`` (inverse CDF, vectorised)."""
    out = np.empty(len(rows), np.int64)
    for start in range(0, len(rows), 65536):
        r = rows[start:start + 65536]
        cdf = np.cumsum(probs[r], axis=1)
        u = rng.random(len(r))[:, None] * cdf[:, -1:]
        out[start:start + 65536] = np.minimum((u > cdf).sum(1), probs.shape[1] - 1)
    return out


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
    sub_i = _sample_rows(rng, prefs.substrate_p, species)
    hab_i = _sample_rows(rng, prefs.habitat_p, species)
    site_i = _sample_rows(rng, prefs.site_p, species)

    lo, hi = years
    span = np.arange(lo, hi + 1)
    yw = (span - lo + 1.0) ** 1.5
    year = rng.choice(span, size=n, p=yw / yw.sum())
    month = (np.floor(prefs.peak_month[species] + prefs.season_spread[species]
                      * rng.standard_normal(n)).astype(np.int64) % 12) + 1
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

    cols: dict[str, np.ndarray] = {
        "year": year, "month": month.astype(float), "day": day.astype(float),
        "countryCode": np.full(n, "DK", dtype=object), "locality": locality,
        "level0Gid": np.full(n, "DNK", dtype=object),
        "level0Name": np.full(n, "Denmark", dtype=object),
        "level1Gid": level1_gid[site_i], "level1Name": region_names[site_i],
        "level2Gid": level2_gid[site_i], "level2Name": names[site_i],
        "Substrate": subs[sub_i],
        "MetaSubstrate": np.array([groups[s] for s in subs], dtype=object)[sub_i],
        "rightsHolder": people[rng.permutation(len(people))][who],
        "Latitude": lat, "Longitude": lon, "CoorUncert": uncert, "Habitat": habs[hab_i],
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
    cols["Habitat"][rng.random(n) < 1.5 * missing] = None
    return cols

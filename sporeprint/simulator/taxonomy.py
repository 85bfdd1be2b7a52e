"""Simulated taxonomy: the 1,604 DF20 class ids plus extra species absent from training.

Every species sits in a genus, family, order, class and phylum with invented
Latin-looking names. Poisonous species (the official DF20 list) are placed in
a few "toxic" genera that also hold edible known species, so every poisonous
species has same-genus edible look-alikes.

>>> import numpy as np
>>> tax = build_taxonomy(np.random.default_rng(0), poisonous=np.zeros(1604, bool), n_unknown=10)
>>> len(tax.class_id)
1614
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sporeprint.errors import SporeprintError


class SimulationError(SporeprintError, ValueError):
    """A simulation setting out of range; the message names it and the fix."""

# Real fungal classes with their phylum and a rough share of DF20 species.
FUNGAL_CLASSES = [
    ("Agaricomycetes", "Basidiomycota", 0.58),
    ("Lecanoromycetes", "Ascomycota", 0.14),
    ("Sordariomycetes", "Ascomycota", 0.07),
    ("Pezizomycetes", "Ascomycota", 0.05),
    ("Leotiomycetes", "Ascomycota", 0.06),
    ("Dothideomycetes", "Ascomycota", 0.04),
    ("Tremellomycetes", "Basidiomycota", 0.03),
    ("Pucciniomycetes", "Basidiomycota", 0.03),
]
_ONSETS = ["B", "C", "D", "F", "G", "H", "L", "M", "N", "P", "R", "S", "T", "V", "Th", "Ph",
           "Cl", "Tr", "Gl", "Pl", "Cr", "Ps", "Sc", "St"]
_VOWELS = ["a", "e", "i", "o", "u", "y", "ae", "io"]
_MIDDLES = ["l", "r", "n", "m", "t", "c", "s", "ph", "st", "nd", "rc", "lv", "th", "g"]
_GENUS_ENDINGS = ["ella", "ia", "us", "opsis", "omyces", "ula", "aria", "ina", "ota", "ium",
                  "ocybe", "oporus", "ites", "aster", "oderma"]
_EPITHET_ROOTS = ["rub", "alb", "flav", "nigr", "lut", "virid", "fusc", "purpur", "cinere",
                  "sanguin", "aurant", "camp", "silv", "prat", "fragil", "vir", "od", "grav",
                  "tenu", "crass", "pall", "mell", "pilos", "squam", "glut", "amar", "dulc",
                  "hirt", "lact", "stip", "umbr", "vel", "tomentos", "cerv", "lign", "querc",
                  "betul", "fag", "pin", "mur"]
_EPITHET_ENDINGS = ["escens", "ida", "ipes", "ella", "icola", "ata", "osa", "ina", "ens",
                    "is", "ica", "ulus", "oides", "ea", "aria"]
_AUTHORS = ["Fr.", "(Pers.) P. Kumm.", "(Bull.) Quél.", "Berk. & Broome", "(L.) Ach.",
            "P. Karst.", "Sacc.", "(Fr.) Fr.", "(Schaeff.) J. Schröt.", "Pers.", "Quél.",
            "(Batsch) Singer", "Peck", "(Scop.) Gray", "Nyl.", "Kühner", "Romagn."]


@dataclass
class Taxonomy:
    """Per-species arrays (known classes first, in class-id order, then unknown species).

    ``class_id`` is the DF20 id for known species and -1 for unknown ones;
    ``key`` numbers every species 0..S-1 and is what the simulator uses internally.
    """

    class_id: np.ndarray  # int64 (S,)
    known: np.ndarray  # bool (S,)
    poisonous: np.ndarray  # bool (S,)
    genus_idx: np.ndarray  # int64 (S,) -> index into genus arrays
    family_idx: np.ndarray  # int64 (G,) per genus
    order_idx: np.ndarray  # int64 (F,) per family
    class_idx: np.ndarray  # int64 (O,) per order, into FUNGAL_CLASSES
    genus_names: list[str]
    family_names: list[str]
    order_names: list[str]
    epithets: list[str]
    authors: list[str]
    taxon_id: np.ndarray  # int64 (S,)

    @property
    def n_species(self) -> int:
        return len(self.class_id)

    def species_names(self) -> list[str]:
        return [f"{self.genus_names[g]} {e}" for g, e in zip(self.genus_idx, self.epithets, strict=True)]


def _word(rng: np.random.Generator, syllables: int) -> str:
    parts = [_ONSETS[rng.integers(len(_ONSETS))]]
    for _ in range(syllables):
        parts.append(_VOWELS[rng.integers(len(_VOWELS))])
        parts.append(_MIDDLES[rng.integers(len(_MIDDLES))])
    return "".join(parts)


def _unique_names(rng: np.random.Generator, n: int, make) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = make()
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _group_sizes(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    """Split ``n`` items into groups of size 1 + Geometric(p)."""
    sizes = rng.geometric(p, size=n)  # >= 1
    cut = np.searchsorted(np.cumsum(sizes), n)
    sizes = sizes[: cut + 1].copy()
    sizes[-1] -= sizes.sum() - n
    return sizes[sizes > 0]


def _assign(rng: np.random.Generator, n_items: int, p: float) -> np.ndarray:
    """Random group index per item, group sizes 1 + Geometric(p)."""
    sizes = _group_sizes(rng, n_items, p)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    return groups[rng.permutation(n_items)]


def build_taxonomy(rng: np.random.Generator, poisonous: np.ndarray, n_unknown: int,
                   toxic_genera: int = 18) -> Taxonomy:
    """Taxonomy over ``len(poisonous)`` known classes plus ``n_unknown`` extra species.

    ``poisonous`` is the official flag per class id (bool, indexed by class id).
    """
    n_known = len(poisonous)
    n = n_known + n_unknown
    known = np.arange(n) < n_known
    pois = np.zeros(n, bool)
    pois[:n_known] = poisonous
    # Edible known species and unknown species first form the genera.
    ordinary = np.flatnonzero(~pois)
    genus_idx = np.full(n, -1, np.int64)
    genus_idx[ordinary] = _assign(rng, len(ordinary), p=0.3)
    n_genera = int(genus_idx.max()) + 1
    # Poisonous species join a few genera that hold edible known species.
    edible_known_genera = np.unique(genus_idx[np.flatnonzero(known & ~pois)])
    toxic = rng.choice(edible_known_genera, size=min(toxic_genera, len(edible_known_genera)),
                       replace=False)
    genus_idx[pois] = toxic[rng.integers(len(toxic), size=int(pois.sum()))]

    family_idx = _assign(rng, n_genera, p=0.25)
    order_idx = _assign(rng, int(family_idx.max()) + 1, p=0.3)
    shares = np.array([s for _, _, s in FUNGAL_CLASSES])
    class_idx = rng.choice(len(FUNGAL_CLASSES), size=int(order_idx.max()) + 1, p=shares / shares.sum())

    genus_names = _unique_names(
        rng, n_genera,
        lambda: _word(rng, int(rng.integers(1, 3))) + _GENUS_ENDINGS[rng.integers(len(_GENUS_ENDINGS))])
    n_fam, n_ord = int(family_idx.max()) + 1, int(order_idx.max()) + 1
    roots = _unique_names(rng, n_fam + n_ord, lambda: _word(rng, int(rng.integers(1, 3))))
    family_names = [r + "aceae" for r in roots[:n_fam]]
    order_names = [r + "ales" for r in roots[n_fam:]]

    epithets = [""] * n
    used: set[tuple[int, str]] = set()
    for i in range(n):
        while True:
            e = _EPITHET_ROOTS[rng.integers(len(_EPITHET_ROOTS))] + \
                _EPITHET_ENDINGS[rng.integers(len(_EPITHET_ENDINGS))]
            if (genus_idx[i], e) not in used:
                used.add((int(genus_idx[i]), e))
                epithets[i] = e
                break
    authors = [_AUTHORS[a] for a in rng.integers(len(_AUTHORS), size=n)]
    taxon_id = 10000 + rng.choice(90000, size=n, replace=False)
    class_id = np.where(known, np.arange(n), -1).astype(np.int64)
    return Taxonomy(class_id=class_id, known=known, poisonous=pois, genus_idx=genus_idx,
                    family_idx=family_idx, order_idx=order_idx, class_idx=class_idx,
                    genus_names=genus_names, family_names=family_names,
                    order_names=order_names, epithets=epithets, authors=authors,
                    taxon_id=taxon_id.astype(np.int64))


def poisonous_share_of(n_classes: int, n_known: int, n_poisonous: int, least: int = 3) -> int:
    """How many poisonous species ``n_classes`` known classes hold at DF20's share
    (49 of 1,604, about 3%), at least ``least`` so a small simulation still has some."""
    return min(n_poisonous, n_classes, max(least, round(n_poisonous * n_classes / n_known)))


def keep_classes(tax: Taxonomy, rng: np.random.Generator, n_classes: int,
                 n_poisonous: int | None = None) -> np.ndarray:
    """Species keys of ``n_classes`` known classes: ``n_poisonous`` poisonous ones (default:
    DF20's share, :func:`poisonous_share_of`) drawn at random, an edible same-genus
    look-alike of each, then random edible others; the poisonous species left out are
    not in the simulation at all. Raises SimulationError when ``n_classes`` is too small."""
    n_known = int(tax.known.sum())
    all_pois = np.flatnonzero(tax.poisonous)
    if n_poisonous is None:
        n_poisonous = poisonous_share_of(n_classes, n_known, len(all_pois))
    if n_classes >= n_known and n_poisonous >= len(all_pois):
        return np.arange(n_known)
    pois = np.sort(rng.choice(all_pois, size=min(n_poisonous, len(all_pois)), replace=False))
    required = set(pois.tolist())
    edible_known = np.flatnonzero(tax.known & ~tax.poisonous)
    for g in np.unique(tax.genus_idx[pois]):
        mates = edible_known[tax.genus_idx[edible_known] == g]
        required.add(int(mates[0]))
    if n_classes < len(required):
        raise SimulationError(
            f"classes={n_classes} is too small: the {len(pois)} poisonous species and an edible "
            f"look-alike of each need {len(required)} classes; pass --classes {len(required)} "
            "or more")
    rest = np.setdiff1d(np.flatnonzero(tax.known & ~tax.poisonous), np.fromiter(required, np.int64))
    extra = rng.choice(rest, size=min(len(rest), n_classes - len(required)), replace=False)
    return np.sort(np.concatenate([np.fromiter(required, np.int64), extra]))

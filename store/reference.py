"""Reference data shipped with the package: the official DF20 lists.

>>> from store.reference import poisonous_class_ids
>>> len(poisonous_class_ids())
49
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources

import numpy as np

NUM_CLASSES = 1604  # DF20 class ids 0..1603; -1 = unknown species
UNKNOWN_CLASS_ID = -1


def _text(name: str) -> str:
    return resources.files("store").joinpath("data", name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def poison_status() -> dict[int, bool]:
    """``class_id -> poisonous`` for all 1,604 DF20 classes (official FungiCLEF list)."""
    rows = csv.DictReader(_text("df20_poison_status.csv").splitlines())
    return {int(r["class_id"]): r["poisonous"].strip() == "1" for r in rows}


def poisonous_class_ids() -> np.ndarray:
    """Sorted int64 array of the 49 poisonous DF20 class ids."""
    return np.array(sorted(c for c, p in poison_status().items() if p), dtype=np.int64)


@lru_cache(maxsize=1)
def substrate_groups() -> dict[str, str | None]:
    """``Substrate -> MetaSubstrate`` for the 32 DF20 substrates (None when unknown)."""
    rows = csv.DictReader(_text("df20_substrates.csv").splitlines())
    return {r["Substrate"]: (r["MetaSubstrate"] or None) for r in rows}


@lru_cache(maxsize=1)
def habitats() -> tuple[str, ...]:
    """The 31 DF20 ``Habitat`` values."""
    return tuple(line.strip() for line in _text("df20_habitats.txt").splitlines() if line.strip())


@lru_cache(maxsize=1)
def country_codes() -> tuple[str, ...]:
    """The ``countryCode`` values seen in DF20."""
    return tuple(
        line.strip() for line in _text("df20_country_codes.txt").splitlines() if line.strip()
    )

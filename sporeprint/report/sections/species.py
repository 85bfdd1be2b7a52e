"""Species names for labels, and recall per poisonous species (shared by the safety panel
and the held-out section)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..page import Table
from .common import query


@dataclass
class SpeciesNames:
    rows: dict[int, dict]

    def species(self, c) -> str:
        return (self.rows.get(int(c)) or {}).get("species") or f"class {int(c)}"

    def genus(self, c) -> str:
        return (self.rows.get(int(c)) or {}).get("genus") or "?"

    def poisonous(self, c) -> bool:
        return bool((self.rows.get(int(c)) or {}).get("poisonous"))


def species_names(fs, class_ids) -> SpeciesNames:
    ids = np.unique(np.asarray(class_ids, np.int64))
    return SpeciesNames({r["class_id"]: r for r in query(fs, "species_names", ids[ids >= 0])
                         .to_pylist()})


def poisonous_recall(truth: np.ndarray, answer: np.ndarray, poison: np.ndarray
                     ) -> list[dict[str, int]]:
    """Per poisonous species in ``truth`` (most observations first): observations, answered
    with that species, with another poisonous species, with an edible one, and unknown."""
    truth, answer = np.asarray(truth, np.int64), np.asarray(answer, np.int64)
    out = []
    for c in np.unique(truth[np.isin(truth, poison)]):
        a = answer[truth == c]
        out.append({"class_id": int(c), "observations": len(a),
                    "named": int((a == c).sum()),
                    "other_poisonous": int((np.isin(a, poison) & (a != c)).sum()),
                    "edible": int(((a >= 0) & ~np.isin(a, poison)).sum()),
                    "unknown": int((a < 0).sum())})
    return sorted(out, key=lambda r: (-r["observations"], r["class_id"]))


def poisonous_recall_table(fs, truth: np.ndarray, answer: np.ndarray, poison: np.ndarray,
                           caption: str, limit: int = 25) -> Table | None:
    """The table of :func:`poisonous_recall` with species names (None: no poisonous truth)."""
    rows = poisonous_recall(truth, answer, poison)
    if not rows:
        return None
    names = species_names(fs, [r["class_id"] for r in rows[:limit]])
    body = [[f"{names.species(r['class_id'])} ({names.genus(r['class_id'])})",
             r["observations"], r["named"], r["named"] / r["observations"],
             r["other_poisonous"], r["edible"], r["unknown"]] for r in rows[:limit]]
    more = f"; {len(rows) - limit} more species not shown" if len(rows) > limit else ""
    return Table(["poisonous species (genus)", "observations", "named correctly", "recall",
                  "called another poisonous species (safe)", "called edible (missed)",
                  "called unknown (missed)"], body, caption + more)

"""What the sections share: the store's report queries, role order, a run's members, and
facts stated in words from numbers."""

from __future__ import annotations

import numpy as np

from store import ROLES

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def query(fs, name: str, *args, **kwargs):
    """Run one of the store's report queries (``store.reports``; errors become StoreError)."""
    return getattr(fs, name)(*args, **kwargs)


def ordered(roles) -> list[str]:
    """Roles in the store's order (train, val, test, new), others after them by name."""
    return sorted(roles, key=lambda r: (ROLES.index(r) if r in ROLES else len(ROLES), r))


def members(run: dict) -> list[str]:
    """The fold runs of an ensemble run, or the fold run itself."""
    return run["config"].get("members", []) if run["kind"] == "ensemble" else [run["run_id"]]


def share(n: float, total: float) -> str:
    """``n / total`` as a whole percentage (a share under 1% that is not zero says so)."""
    if total <= 0:
        return "0%"
    p = n / total
    return "<1%" if 0 < p < 0.005 else f"{p:.0%}"


def busiest_season(counts: np.ndarray, width: int = 3) -> tuple[int, float]:
    """``(first month index, share)`` of the ``width`` consecutive months (wrapping round
    the year) holding most of ``counts`` (12 monthly counts)."""
    c = np.asarray(counts, dtype=float)[:12]
    sums = np.array([c[np.arange(i, i + width) % 12].sum() for i in range(12)])
    best = int(np.argmax(sums))
    return best, float(sums[best] / max(c.sum(), 1))


def month_span(first: int, width: int = 3) -> str:
    return f"{MONTHS[first]}–{MONTHS[(first + width - 1) % 12]}"

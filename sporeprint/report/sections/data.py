"""The data: observations per role, the class long tail, toxicity shares, months, regions
and missing values; every caption's numbers come from the counts it sits next to."""

from __future__ import annotations

import numpy as np

from .. import figures
from ..page import Figure, Note, Section, Table
from .common import MONTHS, busiest_season, month_span, ordered, query, share

# A region is drawn as its own bar when it holds at least this share of all observations;
# smaller ones would be bars too thin to see, so they are summed in "other".
REGION_MIN_SHARE = 0.01


def section(fs) -> Section:
    s = Section("data", "The data")
    roles = query(fs, "role_counts")
    if roles.num_rows == 0:
        return s.absent("The store holds no observations yet: ingest metadata with "
                        "`sporeprint ingest`.")
    s.blocks.append(Table(["role", "observations", "images", "labelled"],
                          [[r["role"], r["observations"], r["images"], r["labelled"]]
                           for r in roles.to_pylist()], "Observations per role"))
    _long_tail(fs, s)
    _toxicity(fs, s)
    _months(fs, s)
    _regions(fs, s)
    _missing(fs, s)
    return s


def _long_tail(fs, s: Section) -> None:
    cc = query(fs, "class_counts").to_pylist()
    per_role = {role: np.array([r["observations"] for r in cc if r["role"] == role])
                for role in ordered({r["role"] for r in cc})}
    if not per_role:
        s.blocks.append(Note("No long-tail figure: the store has no labelled observations of "
                             "known species.", "omitted"))
        return
    tail = ""
    if "train" in per_role:
        c = per_role["train"]
        tail = (f" In training, the most observed class has {c.max():,} observations and the "
                f"least observed {c.min():,}; half the {len(c):,} classes have at most "
                f"{int(np.median(c)):,}.")
    s.blocks.append(Figure(
        figures.long_tail(per_role), "observations per class, log scale",
        "Observations per known species, classes sorted from most to least observed, one "
        "line per role, on a log scale." + tail,
        "A steep drop is the long tail: rare classes have few examples, so their accuracy "
        "and calibration are the least certain. Classes present in validation but thin in "
        "training are where the heads will struggle."))


def toxicity_shares(fs) -> tuple[list[str], dict[str, list[float]], dict[str, int]]:
    """``(roles, group -> share per role, role -> observations)`` of the toxicity groups."""
    tox = query(fs, "toxicity_counts").to_pylist()
    roles = ordered({r["role"] for r in tox})
    totals = {role: sum(r["observations"] for r in tox if r["role"] == role) for role in roles}
    groups = ["poisonous", "edible", "unknown species", "unlabelled"]
    shares = {g: [sum(r["observations"] for r in tox if r["role"] == role and r["toxicity"] == g)
                  / max(totals[role], 1) for role in roles] for g in groups}
    return roles, {g: v for g, v in shares.items() if any(v)}, totals


def _toxicity(fs, s: Section) -> None:
    roles, shares, totals = toxicity_shares(fs)
    pois = dict(zip(roles, shares.get("poisonous", [0.0] * len(roles)), strict=True))
    labelled = [r for r in roles if shares.get("unlabelled") is None
                or shares["unlabelled"][roles.index(r)] < 1.0]
    facts = "; ".join(f"{r}: {pois[r]:.0%}" for r in labelled)
    unlabelled = [r for r in roles if r not in labelled]
    if unlabelled:
        facts += f" ({', '.join(unlabelled)}: unlabelled)"
    look = ("The decision rule weighs a missed poisonous mushroom 100 times more than a false "
            "alarm whatever this share is. ")
    if "train" in pois and len(labelled) > 1:
        far = max((r for r in labelled if r != "train"), key=lambda r: abs(pois[r] - pois["train"]))
        look += (f"The labelled role furthest from training is {far} ({pois[far]:.0%} against "
                 f"{pois['train']:.0%}); a large gap shifts the prior the heads learned.")
    else:
        look += "A role whose share differs much from training shifts the prior the heads learned."
    s.blocks.append(Figure(
        figures.toxicity_shares(roles, shares), "poisonous vs edible shares per role",
        "Share of each role's observations that are poisonous species, edible (known, not on "
        f"the poisonous list), unknown species (class -1) or unlabelled. Poisonous: {facts}.",
        look))


def _months(fs, s: Section) -> None:
    months = query(fs, "month_counts").to_pylist()
    per_role = {}
    for role in ordered({r["role"] for r in months}):
        v = np.zeros(13)
        for r in months:
            if r["role"] == role:
                v[12 if r["month"] is None else int(r["month"]) - 1] += r["observations"]
        per_role[role] = v
    total = sum(per_role.values())
    if total[:12].sum() == 0:
        s.blocks.append(Note("No month figure: no observation has a month.", "omitted"))
        return
    first, season = busiest_season(total)
    peak = int(np.argmax(total[:12]))
    s.blocks.append(Figure(
        figures.months(per_role), "observations per month",
        "Observations per month of the year, per role; the last group counts observations "
        f"without a month ({share(total[12], total.sum())} of all). Of the observations with "
        f"a month, {season:.0%} fall in {month_span(first)}, the busiest three months; the "
        f"busiest single month is {MONTHS[peak]} ({share(total[peak], total[:12].sum())}).",
        "The season is informative metadata when observations bunch in a few months. Many "
        "missing months weaken the date features; a batch whose months differ from training "
        "is out of the heads' experience."))


def _regions(fs, s: Section) -> None:
    rows = query(fs, "region_counts").to_pylist()
    total = sum(r["observations"] for r in rows)
    named = [r for r in rows if r["region"] != "other"
             and r["observations"] >= REGION_MIN_SHARE * total]
    other = total - sum(r["observations"] for r in named)
    if len(named) < 2:
        only = (f"{named[0]['region']} holds {share(named[0]['observations'], total)} of the "
                "observations" if named else
                f"no region holds {REGION_MIN_SHARE:.0%} or more of the observations")
        s.blocks.append(Note(f"No region figure: {only}, so a bar chart would show one bar "
                             "or none.", "omitted"))
        return
    names = [r["region"] for r in named] + (["other"] if other else [])
    counts = [r["observations"] for r in named] + ([other] if other else [])
    top = named[0]
    s.blocks.append(Figure(
        figures.regions(names, counts), "observations per region",
        "Observations per first-level region (the country code where no region is given), "
        f"largest first; regions with under {REGION_MIN_SHARE:.0%} of the observations each "
        f"are summed in 'other' ({share(other, total)}). {top['region']} alone holds "
        f"{share(top['observations'], total)}; the {len(named)} named regions hold "
        f"{share(total - other, total)}.",
        "Where the data comes from: species mixes differ between regions, and the location "
        "features only help where training covers the place."))


def _missing(fs, s: Section) -> None:
    miss = query(fs, "missing_rates").to_pylist()
    fields = list(dict.fromkeys(r["field"] for r in miss))
    roles = ordered({r["role"] for r in miss})
    rates = np.zeros((len(fields), len(roles)))
    for r in miss:
        rates[fields.index(r["field"]), roles.index(r["role"])] = r["missing"]
    if not rates.size or rates.max() == 0:
        s.blocks.append(Note("No missing-value figure: every metadata field has a value in "
                             "every observation.", "omitted"))
        return
    i, j = np.unravel_index(int(np.argmax(rates)), rates.shape)
    gap = ""
    if "train" in roles and len(roles) > 1:
        t = roles.index("train")
        diff = rates - rates[:, [t]]
        a, b = np.unravel_index(int(np.argmax(diff)), diff.shape)
        if diff[a, b] > 0:
            gap = (f" The largest excess over training: {fields[a]} in {roles[b]} "
                   f"({rates[a, b]:.1%} against {rates[a, t]:.1%}).")
    s.blocks.append(Figure(
        figures.missing_heatmap(fields, roles, rates), "missing-value rates per metadata field",
        "Share of observations with no value, per metadata field and role; the colour scale "
        f"runs from 0 to the largest rate. The most often missing: {fields[i]} in {roles[j]} "
        f"({rates[i, j]:.1%})." + gap,
        "Fields missing far more often in one role than in training mean the metadata encoder "
        "sees 'missing' where it learned from values. A missing date is encoded as missing, "
        "never as 1 January."))

"""Which trained heads a score uses: run records in the store -> loaded classifiers.

An ensemble run expands to its fold members. Every member must share one
embedding space, and its poisonous flags must agree with the store's official
list: the official list, never a head's own ``config.json``, governs decisions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heads.classifier import Classifier
from sporeprint.errors import SporeprintError


@dataclass
class Member:
    """One trained head of the scoring ensemble."""

    run_id: str
    fold: int | None
    classifier: Classifier
    split_seed: int | None = None


def resolve_runs(fs, run_ids: list[str]) -> list[dict]:
    """Run records of trained heads; an ensemble run expands to its members."""
    out: list[dict] = []
    for run_id in run_ids:
        run = fs.get_run(run_id)
        if run is None:
            latest = fs.latest_runs(("train", "ensemble"), limit=5)
            raise SporeprintError(
                f"run {run_id!r} is not in the store's runs table (latest: "
                f"{', '.join(latest) or 'none'}); train heads with `sporeprint train`")
        if run["kind"] == "ensemble":
            out.extend(resolve_runs(fs, list(run["config"]["members"])))
        elif run["kind"] == "train":
            out.append(run)
        else:
            raise SporeprintError(f"run {run_id!r} is a {run['kind']!r} run, not a trained head")
    spaces = sorted({r["space"] for r in out})
    if len(spaces) != 1:
        raise SporeprintError(f"runs {run_ids} were trained on different embedding spaces "
                              f"{spaces}; score with heads of one space")
    unique: dict[str, dict] = {}
    for r in out:
        unique.setdefault(r["run_id"], r)
    return list(unique.values())


def load_members(fs, run_ids: list[str]) -> tuple[str, list[Member]]:
    """``(space, members)`` with each head loaded and checked against the official list."""
    runs = resolve_runs(fs, run_ids)
    space = runs[0]["space"]
    spec = fs.require_space(space)
    members = []
    for r in runs:
        if not r["path"]:
            raise SporeprintError(f"run {r['run_id']!r} has no saved head path; retrain it")
        members.append(Member(r["run_id"], r["fold"],
                              Classifier.load(r["path"], space=space, dim=spec.dim,
                                              device="auto"),  # the GPU when there is one
                              r.get("split_seed")))
    official = fs.poisonous_class_ids()
    for m in members:
        check_poison_flags(m, official)
    return space, members


def check_poison_flags(member: Member, official: np.ndarray) -> None:
    """Refuse a head whose own poisonous flags disagree with the official list."""
    clf = member.classifier
    known = clf.classes_ >= 0
    classes, flags = clf.classes_[known], np.asarray(clf.poisonous_[: len(clf.classes_)])[known]
    truth = np.isin(classes, official)
    wrong = classes[flags != truth]
    if wrong.size:
        shown = ", ".join(str(int(c)) for c in wrong[:10]) + (" ..." if wrong.size > 10 else "")
        raise SporeprintError(
            f"head of run {member.run_id!r} disagrees with the store's official poisonous list "
            f"on {wrong.size} classes ({shown}); retrain it on this store")


def run_key(members: list[Member] | list[str]) -> str:
    """The fold heads' run ids, sorted and comma-joined: the key of their calibration
    record and of their predictions. Takes members or the fold heads' run ids."""
    return ",".join(sorted(m if isinstance(m, str) else m.run_id for m in members))


def split_seed_of(members: list[Member]) -> int | None:
    """The split seed the heads were trained on (None for runs recorded without one)."""
    seeds = {m.split_seed for m in members if m.split_seed is not None}
    if len(seeds) > 1:
        raise SporeprintError(f"the heads were trained on different validation splits "
                              f"(seeds {sorted(seeds)}); score heads of one training run")
    return seeds.pop() if seeds else None

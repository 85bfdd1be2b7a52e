"""Enroll species the heads never saw from expert-labelled stored observations, and
undo it; the store keeps the record (``store/enrollment.py``), scoring answers the
enrolled species (``sporeprint.scoring.enrolled``). docs/enrollment.md has the whole
story."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sporeprint.errors import SporeprintError


def current_user() -> str:
    """Who is enrolling when nobody says: the login name, else ``unknown``."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container without a passwd entry)
        return os.environ.get("USER") or "unknown"


def enroll(fs, labels: str | Path, enrolled_by: str | None = None) -> tuple[object, list[str]]:
    """Record the labels file's enrollment; ``(report, warnings)``. Warnings name the
    enrolled observations that have no vector in some space (a model of that space cannot
    answer from them)."""
    if fs.read_only:
        raise SporeprintError(f"store {fs.path} is open read-only; enrolling writes its "
                              "enrollment tables: open it writable")
    report = fs.enroll(labels, enrolled_by or current_user(), labels_file=str(labels))
    ids = np.asarray(report.observation_ids, np.int64)
    warnings = []
    images = fs.observation_images(ids, labelled_only=False)
    image_ids = images.column("image_id").to_numpy().astype(np.int64)
    for space in fs.space_names():
        found, _ = fs.fetch_embeddings(space, image_ids)
        with_vectors = set(pc.filter(
            images.column("observation_id"),
            pc.is_in(images.column("image_id"), pa.array(found, pa.int64()))
        ).to_pylist())
        lacking = [int(i) for i in ids if int(i) not in with_vectors]
        if lacking:
            warnings.append(f"{len(lacking)} enrolled observations have no vector in space "
                            f"{space!r} (e.g. {lacking[:3]}); models of that space do not "
                            "answer from them until they are embedded (`sporeprint embed`)")
    return report, warnings


def undo(fs, enrollment_id: int, undone_by: str | None = None) -> dict:
    if fs.read_only:
        raise SporeprintError(f"store {fs.path} is open read-only; undoing an enrollment "
                              "writes its enrollment tables: open it writable")
    return fs.undo_enrollment(int(enrollment_id), undone_by or current_user())



def list_lines(fs) -> list[str]:
    """One line per enrollment (oldest first), then the enrolled species in force."""
    rows = fs.enrollments().to_pylist()
    if not rows:
        return ["no enrollments"]
    out = []
    for r in rows:
        state = (f"undone {r['undone_at']:%Y-%m-%d %H:%M:%S} by {r['undone_by']}"
                 if r["undone_at"] is not None else "in force")
        out.append(f"{r['enrollment_id']}\t{r['enrolled_at']:%Y-%m-%d %H:%M:%S}\t"
                   f"{r['enrolled_by']}\t{r['n_observations']} observations, "
                   f"{r['n_new_species']} new species\t{r['labels_file']} "
                   f"({r['labels_digest'][:19]})\t{state}")
    species = fs.enrolled_species().to_pylist()
    if species:
        out.append("enrolled species in force:")
        for s in species:
            status = ("unknown (treated as possibly poisonous)" if s["poisonous"] is None else
                      "poisonous" if s["poisonous"] else "edible")
            out.append(f"  class {s['class_id']}\t{s['species']}\t{s['n_observations']} "
                       f"observations\tpoison status {status}"
                       f"{' (official list)' if s['official'] else ''}")
    return out

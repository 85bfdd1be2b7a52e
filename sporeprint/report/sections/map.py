"""The embedding map: a seeded sample of training observations, PCA then t-SNE to 2-d (PCA
alone where scikit-learn is not installed; the title and caption say which)."""

from __future__ import annotations

import numpy as np

from .. import figures
from ..neighbours import project_2d
from ..page import Figure, Section
from ..sample import VectorSample


def section(sample: VectorSample | None, space: str | None, seed: int) -> Section:
    s = Section("map", "Embedding map of training observations")
    if sample is None:
        return s.absent("No embedding map: the store has no training observations with a vector "
                        f"in {'space ' + repr(space) if space else 'any embedding space'} "
                        "(ingest or embed vectors first).")
    rows = sample.map_rows
    proj = project_2d(sample.vectors[rows], seed=seed)
    xy = proj.xy
    pois = sample.poisonous[rows]
    species = np.array(sample.species, dtype=object)[rows]
    names, counts = np.unique(species[pois], return_counts=True)
    labels = []
    for name in names[np.argsort(-counts, kind="stable")][:10]:
        at = np.median(xy[species == name], axis=0)
        labels.append((str(name), float(at[0]), float(at[1])))
    s.blocks.append(Figure(
        figures.embedding_map(xy, pois, labels), f"{proj.method} map of training embeddings",
        f"{len(rows):,} training observations (one image each, a seeded sample) of space "
        f"{space!r}, {proj.how}. Red: poisonous "
        f"species ({len(names)} of them, {int(pois.sum()):,} points, {pois.mean():.0%} of the "
        f"sample); grey: edible. The {len(labels)} poisonous species with most points are "
        "named at their median position.",
        "Tight single-colour islands are species the image embedding separates well. Red points "
        "inside grey clusters (and the reverse) are poisonous look-alikes of edible species: "
        f"the dangerous confusions. {proj.reading}"))
    return s

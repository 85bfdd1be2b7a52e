"""The danger frontier: sampled training observations whose nearest neighbours include one
of the other toxicity."""

from __future__ import annotations

import numpy as np

from .. import figures
from ..neighbours import danger_frontier
from ..page import Figure, Note, Section, Table
from ..sample import VectorSample


def section(sample: VectorSample | None, space: str | None) -> Section:
    s = Section("frontier", "Danger frontier: where edible and poisonous meet")
    if sample is None:
        return s.absent("No danger frontier: it needs training observations with vectors.")
    if sample.poisonous.all() or not sample.poisonous.any():
        return s.absent("No danger frontier: the sampled training observations are all of one "
                        "toxicity.")
    f = danger_frontier(sample.vectors, sample.poisonous, sample.map_rows, k=5)
    genus = np.array(sample.genus, dtype=object)[f.query_rows]
    gs, sampled = np.unique(genus, return_counts=True)
    front = np.array([int(f.on_frontier[genus == g].sum()) for g in gs])
    order = np.lexsort((gs, -front))[:15]
    order = order[front[order] > 0]
    s.blocks.append(Note(
        f"{int(f.on_frontier.sum()):,} of {len(f.query_rows):,} sampled training observations "
        f"({f.on_frontier.mean():.1%}) have, among their {f.k} nearest neighbours (cosine, exact, "
        f"searched among {len(sample.vectors):,} training observations of space {space!r}), "
        "one of the other toxicity."))
    if len(order) >= 2:
        top = order[0]
        s.blocks.append(Figure(
            figures.frontier_genera([str(x) for x in gs[order]], front[order].tolist(),
                                    sampled[order].tolist()),
            "frontier observations per genus",
            "Per genus (most frontier observations first), the sampled training observations "
            "(grey) and those whose nearest neighbours cross the edible/poisonous line (red). "
            f"Most: {gs[top]} ({front[top]:,} of its {sampled[top]:,} sampled observations).",
            "Genera with a long red bar hold poisonous and edible species that look alike in the "
            "embedding: this is where the poison-risk rule earns its false alarms, and where more "
            "training photos or expert review pay off most."))
    elif len(order) == 1:
        top = order[0]
        s.blocks.append(Note(f"No per-genus figure: one genus holds every frontier observation "
                             f"({gs[top]}: {front[top]:,} of {sampled[top]:,} sampled).",
                             "omitted"))
    pairs = [[str(sample.observation_ids[p]), sample.species[p], str(sample.observation_ids[e]),
              sample.species[e], sim, "yes" if sample.genus[p] == sample.genus[e] else "no"]
             for p, e, sim in f.pairs]
    if pairs:
        s.blocks.append(Table(["poisonous observation", "poisonous species", "edible observation",
                               "edible species", "cosine similarity", "same genus"], pairs,
                              "The closest edible/poisonous pairs among the nearest neighbours"))
    return s

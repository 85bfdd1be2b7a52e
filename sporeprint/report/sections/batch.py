"""The scored batch: its answer mix (the ``kind`` column), the poison-probability histogram
and the observations raised for poison risk with their evidence."""

from __future__ import annotations

import numpy as np

from heads.decision import POISON_RISK, PRIOR_ONLY, answer_mix

from .. import figures
from ..page import Figure, Note, Section, Table
from .common import query, share


def section(fs, batch: str | None) -> Section:
    s = Section("batch", "Scored batch")
    if batch is None:
        return s.absent("No scored batch in the predictions table: score one with "
                        "`sporeprint score`, then pass --batch.")
    mix = answer_mix(query(fs, "answer_kinds", batch).column("kind"))
    total = sum(mix.values())
    s.blocks.append(Note(f"Batch {batch!r}: {total:,} observations; answers: " +
                         ", ".join(f"{figures.ANSWER_LABELS[k]} {n:,}" for k, n in mix.items())
                         + "."))
    s.blocks.append(Figure(
        figures.answer_mix(mix),
        "answer mix",
        "What the decision rule answered per observation: a species; a poison-risk answer (a "
        "poisonous species named because P(poisonous) crossed the rule's threshold although it "
        "was not the most probable species); 'unknown species'; or prior-only (no usable image, "
        "decided from the training class prior).",
        f"Poison-risk answers ({share(mix[POISON_RISK], total)} here) are deliberate false "
        "alarms bought to avoid missing a poisonous mushroom; a large share means the batch is "
        "full of look-alikes or the heads are unsure. Prior-only answers "
        f"({share(mix[PRIOR_ONLY], total)} here) point at missing or broken photos."))
    pp = query(fs, "poison_probabilities", batch)
    if pp.num_rows:
        probs = pp.column("poison_prob").to_numpy(zero_copy_only=False).astype(float)
        kinds = np.array(pp.column("kind").to_pylist(), dtype=object)
        raised = probs[kinds == POISON_RISK]
        where = (f"Here the lowest P(poisonous) answered with poison risk is {raised.min():.2%}, "
                 f"and {int((probs < raised.min()).sum()):,} observations lie below it."
                 if raised.size else "No observation of this batch was answered with poison risk.")
        s.blocks.append(Figure(
            figures.poison_histogram(probs, kinds), "poison-probability histogram",
            "Calibrated P(poisonous) per observation on a log scale, coloured by the answer "
            f"given; {int((probs >= 0.5).sum()):,} of {len(probs):,} are 50% or more.",
            "The Track 3 rule raises poison risk once P(poisonous) outweighs the edible answer's "
            f"expected cost, often at a probability of a percent or two. {where} Observations "
            "just below that point are the ones a slightly different calibration would flip."))
    flagged = query(fs, "poison_flagged", batch, 20).to_pylist()
    if flagged:
        s.blocks.append(Table(
            ["observation", "answered species", "P(poisonous)", "reason", "evidence neighbours"],
            [[str(r["observation_id"]), r["species"] or str(r["class_id"]), r["poison_prob"],
              r["reason"], r["evidence"] or []] for r in flagged],
            "Observations raised for poison risk (highest P(poisonous) first, at most 20), with "
            "the nearest training observations that served as evidence"))
    else:
        s.blocks.append(Note("No observation of this batch was raised for poison risk."))
    return s

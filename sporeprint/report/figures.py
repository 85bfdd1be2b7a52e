"""The report's figures: matplotlib (Agg backend), each returned as PNG bytes.

Text from the data (species, genera, regions, run names) is passed through
:func:`literal` before matplotlib draws it, so a ``$`` in a name is a dollar sign and
never starts mathtext."""

from __future__ import annotations

import io

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

POISON = "#c62828"
EDIBLE = "#78909c"
UNKNOWN = "#f9a825"
ROLE_COLOURS = {"train": "#1565c0", "val": "#2e7d32", "test": "#6a1b9a", "new": "#ef6c00"}
TOXICITY_COLOURS = {"poisonous": POISON, "edible": EDIBLE, "unknown species": UNKNOWN,
                    "unlabelled": "#cfd8dc"}
# Keyed by the answer kind (heads.decision.KINDS), with the words the figures show.
ANSWER_COLOURS = {"species": "#1565c0", "poison_risk": POISON, "unknown": UNKNOWN,
                  "prior_only": "#9e9e9e"}
ANSWER_LABELS = {"species": "species", "poison_risk": "poison risk", "unknown": "unknown",
                 "prior_only": "prior-only"}


def literal(text) -> str:
    """``text`` as matplotlib draws it literally: every ``$`` escaped, so no mathtext is
    parsed (``$\\bad{$`` would raise, ``$x$`` would be set as maths)."""
    return str(text).replace("$", r"\$")


def _literals(texts) -> list[str]:
    return [literal(t) for t in texts]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _role_colour(role: str, i: int) -> str:
    return ROLE_COLOURS.get(role, plt.get_cmap("tab10")(i % 10))


def long_tail(per_role: dict[str, np.ndarray]) -> bytes:
    """Observations per class, classes sorted by count, one line per role (log y)."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, (role, counts) in enumerate(per_role.items()):
        c = np.sort(np.asarray(counts))[::-1]
        ax.plot(np.arange(1, len(c) + 1), c, color=_role_colour(role, i), lw=1.8,
                label=literal(f"{role} ({len(c)} classes)"))
    ax.set_yscale("log")
    ax.set_xlabel("class rank (most observed first)")
    ax.set_ylabel("observations (log scale)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(frameon=False)
    return _png(fig)


def toxicity_shares(roles: list[str], shares: dict[str, list[float]]) -> bytes:
    """Stacked horizontal bars: share of each toxicity group per role."""
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.55 * len(roles)))
    left = np.zeros(len(roles))
    for group, values in shares.items():
        v = np.asarray(values)
        ax.barh(_literals(roles), v, left=left, color=TOXICITY_COLOURS.get(group, "#999"),
                label=literal(group))
        for y, (x0, w) in enumerate(zip(left, v, strict=True)):
            if w >= 0.06:
                ax.text(x0 + w / 2, y, f"{w:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if group in ("poisonous", "edible") else "black")
        left += v
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the role's observations")
    ax.legend(ncol=4, frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    return _png(fig)


def months(per_role: dict[str, np.ndarray]) -> bytes:
    """Grouped bars per month (index 12 = month missing), one bar per role."""
    labels = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
              "missing"]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    width = 0.8 / max(len(per_role), 1)
    x = np.arange(13)
    for i, (role, counts) in enumerate(per_role.items()):
        ax.bar(x + (i - (len(per_role) - 1) / 2) * width, counts, width,
               color=_role_colour(role, i), label=literal(role))
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("observations")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def regions(names: list[str], counts: list[int]) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.28 * len(names)))
    ax.barh(_literals(names[::-1]), counts[::-1], color="#455a64")
    ax.set_xlabel("observations")
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def missing_heatmap(fields: list[str], roles: list[str], rates: np.ndarray) -> bytes:
    """``rates`` (fields, roles) in [0, 1], annotated as percentages; the colour scale runs
    from 0 to the largest rate, so that 0-5% is not one pale shade on a 0-100% scale."""
    top = float(np.max(rates)) if rates.size else 0.0
    top = top if top > 0 else 1.0
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.3 * len(fields)))
    im = ax.imshow(rates, cmap="Reds", vmin=0, vmax=top, aspect="auto")
    ax.set_xticks(range(len(roles)), _literals(roles))
    ax.set_yticks(range(len(fields)), _literals(fields), fontsize=8)
    digits = 1 if top < 0.1 else 0
    for i in range(len(fields)):
        for j in range(len(roles)):
            ax.text(j, i, f"{rates[i, j]:.{digits}%}", ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.6 * top else "black")
    bar = fig.colorbar(im, ax=ax, fraction=0.04, label="missing")
    bar.ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    return _png(fig)


def embedding_map(xy: np.ndarray, poisonous: np.ndarray, labels: list[tuple[str, float, float]]
                  ) -> bytes:
    """2-d map: edible points grey, poisonous points red, named poisonous species labelled."""
    fig, ax = plt.subplots(figsize=(7.5, 6))
    ax.scatter(xy[~poisonous, 0], xy[~poisonous, 1], s=5, c=EDIBLE, alpha=0.45, lw=0,
               label=f"edible ({int((~poisonous).sum())})")
    ax.scatter(xy[poisonous, 0], xy[poisonous, 1], s=12, c=POISON, alpha=0.85, lw=0,
               label=f"poisonous ({int(poisonous.sum())})")
    for name, x, y in labels:
        ax.annotate(literal(name), (x, y), fontsize=7, color="#7f0000", ha="center",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": POISON, "alpha": 0.8})
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(frameon=False, loc="best", markerscale=2)
    return _png(fig)


def run_metrics(rows: list[str], values: dict[str, list[float]]) -> bytes:
    """Tracks 1-3 (left) and macro F1 (right) per evaluated model."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.4), gridspec_kw={"width_ratios": [3, 1.3]})
    x = np.arange(len(rows))
    tracks = ["track1", "track2", "track3"]
    width = 0.8 / len(tracks)
    for i, t in enumerate(tracks):
        a.bar(x + (i - 1) * width, values[t], width, label=t.replace("track", "Track "),
              color=("#1565c0", POISON, "#37474f")[i])
    a.set_xticks(x, _literals(rows), fontsize=8, rotation=10)
    a.set_ylabel("cost per observation (lower is better)")
    a.legend(frameon=False, fontsize=8)
    a.grid(alpha=0.3, axis="y")
    b.bar(x, values["macro_f1"], color="#2e7d32")
    b.set_xticks(x, _literals(r.split(" ")[0] for r in rows), fontsize=8)
    b.set_ylabel("macro F1 ×100 (higher is better)")
    b.grid(alpha=0.3, axis="y")
    return _png(fig)


def answer_mix(mix: dict[str, int]) -> bytes:
    """Observations per answer kind (``heads.decision.answer_mix``), one bar each."""
    kinds, counts = list(mix), list(mix.values())
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.45 * len(kinds)))
    colours = [ANSWER_COLOURS.get(k, "#999") for k in kinds]
    ax.barh([ANSWER_LABELS.get(k, k) for k in kinds][::-1], counts[::-1], color=colours[::-1])
    total = max(sum(counts), 1)
    for y, c in enumerate(counts[::-1]):
        ax.text(c, y, f" {c} ({c / total:.0%})", va="center", fontsize=8)
    ax.set_xlim(0, max(counts) * 1.25 if counts else 1)
    ax.set_xlabel("observations")
    return _png(fig)


def poison_histogram(probs: np.ndarray, kinds: np.ndarray) -> bytes:
    """Histogram of P(poisonous) on a log x axis, stacked by answer kind."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    p = np.clip(probs, 1e-4, 1.0)
    bins = np.logspace(-4, 0, 41)
    groups = [k for k in ANSWER_COLOURS if (kinds == k).any()]
    ax.hist([p[kinds == k] for k in groups], bins=bins, stacked=True,
            color=[ANSWER_COLOURS[k] for k in groups], label=[ANSWER_LABELS[k] for k in groups])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("P(poisonous) (log scale; values below 1e-4 drawn at 1e-4)")
    ax.set_ylabel("observations")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return _png(fig)


def frontier_genera(genera: list[str], frontier: list[int], sampled: list[int]) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.3 * len(genera)))
    y = np.arange(len(genera))[::-1]
    ax.barh(y, sampled, color="#cfd8dc", label="sampled")
    ax.barh(y, frontier, color=POISON, label="on the frontier")
    ax.set_yticks(y, _literals(genera), fontsize=8)
    ax.set_xlabel("training observations")
    ax.legend(frameon=False, fontsize=8)
    return _png(fig)


def confusion(labels: list[str], matrix: np.ndarray) -> bytes:
    """Counts (truth rows, answer columns) with row shares."""
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    rows = matrix.sum(1, keepdims=True)
    share = matrix / np.maximum(rows, 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(matrix[i, j])}\n{share[i, j]:.0%}", ha="center", va="center",
                    fontsize=9, color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("answer")
    ax.set_ylabel("truth")
    return _png(fig)


def rule_metrics(rules: list[str], values: dict[str, list[float]]) -> bytes:
    """Tracks 1-3 (left) and macro F1 (right) per decision rule on the same observations."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.4), gridspec_kw={"width_ratios": [3, 1.3]})
    x = np.arange(len(rules))
    tracks = ["track1", "track2", "track3"]
    width = 0.8 / len(tracks)
    for i, t in enumerate(tracks):
        bars = a.bar(x + (i - 1) * width, values[t], width, label=t.replace("track", "Track "),
                     color=("#1565c0", POISON, "#37474f")[i])
        a.bar_label(bars, fmt="%.2f", fontsize=7)
    a.set_xticks(x, rules, fontsize=8)
    a.set_ylabel("cost per observation (lower is better)")
    a.legend(frameon=False, fontsize=8)
    a.grid(alpha=0.3, axis="y")
    bars = b.bar(x, values["macro_f1"], color="#2e7d32")
    b.bar_label(bars, fmt="%.1f", fontsize=7)
    b.set_xticks(x, rules, fontsize=7, rotation=15)
    b.set_ylabel("macro F1 ×100 (higher is better)")
    b.grid(alpha=0.3, axis="y")
    return _png(fig)


def reliability(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, float]]) -> bytes:
    """One panel per curve: ``name -> (bin confidence, bin accuracy, bin count, ECE)``;
    accuracy per confidence bin against the diagonal, bin counts as grey bars behind."""
    fig, axes = plt.subplots(1, len(curves), figsize=(8, 3.8), sharey=True, squeeze=False)
    for ax, (name, (conf, acc, count, ece)) in zip(axes[0], curves.items(), strict=True):
        edges = np.linspace(0, 1, len(count) + 1)
        twin = ax.twinx()
        twin.bar(edges[:-1], count, width=edges[1] - edges[0], align="edge", color="#eceff1",
                 edgecolor="#cfd8dc")
        twin.set_yticks([])
        ax.set_zorder(twin.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.plot([0, 1], [0, 1], ls="--", color="#9e9e9e", lw=1, label="perfectly calibrated")
        ok = count > 0
        ax.plot(conf[ok], acc[ok], "o-", color="#1565c0", lw=1.8, ms=4, label="observed")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name} (ECE {ece:.3f})", fontsize=10)
        ax.set_xlabel("confidence of the top species")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(frameon=False, fontsize=8, loc="upper left")
    return _png(fig)


def unknown_scores(known: np.ndarray, unknown: np.ndarray, threshold: float) -> bytes:
    """Histograms of the fused unknown score, known vs unknown species, threshold line."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    both = np.concatenate([known, unknown, [threshold]])
    bins = np.linspace(np.nanmin(both), np.nanmax(both), 41)
    ax.hist(known, bins=bins, color=EDIBLE, alpha=0.7, density=True,
            label=f"known species ({len(known)})")
    ax.hist(unknown, bins=bins, color=UNKNOWN, alpha=0.7, density=True,
            label=f"unknown species ({len(unknown)})")
    ax.axvline(threshold, color=POISON, lw=2, label=f"threshold {threshold:.3g}")
    ax.set_xlabel("unknown score (fused kNN distance and head uncertainty)")
    ax.set_ylabel("density")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def group_confusion(rows: list[str], columns: list[str], matrix: np.ndarray,
                    column_poisonous: list[bool | None]) -> bytes:
    """Counts of true species (rows) called as each column; poisonous column labels red."""
    fig, ax = plt.subplots(figsize=(min(max(7.0, 3.5 + 0.55 * len(columns)), 12),
                                    max(3.6, 2.4 + 0.4 * len(rows))))
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    ax.imshow(share, cmap="Reds", vmin=0, vmax=1, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(columns)):
            if matrix[i, j]:
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(columns)), _literals(columns), fontsize=7, rotation=40, ha="right")
    for label, p in zip(ax.get_xticklabels(), column_poisonous, strict=True):
        label.set_color(POISON if p else ("#f57f17" if p is None else "#37474f"))
    ax.set_yticks(range(len(rows)), _literals(rows), fontsize=7)
    ax.set_xlabel("answered as\n(label colour: red poisonous, grey edible, amber unknown)",
                  fontsize=8)
    ax.set_ylabel("true poisonous species", fontsize=8)
    return _png(fig)


def training_curves(curves: dict[str, tuple[list[dict], int | None]]) -> bytes:
    """Per fold ``name -> (history rows, kept epoch)``: training and validation loss (left)
    and validation Track 3 (right) per epoch; a dotted line at the kept epoch."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.4))
    for i, (name, (history, kept)) in enumerate(curves.items()):
        colour = plt.get_cmap("tab10")(i % 10)
        epoch = [r["epoch"] for r in history]
        a.plot(epoch, [r.get("train_loss", np.nan) for r in history], "-", color=colour,
               label=literal(f"{name} training"))
        if any("loss" in r for r in history):
            a.plot(epoch, [r.get("loss", np.nan) for r in history], "--", color=colour,
                   label=literal(f"{name} validation"))
        if any("track3" in r for r in history):
            b.plot(epoch, [r.get("track3", np.nan) for r in history], "o-", ms=3, color=colour,
                   label=literal(name))
        if kept is not None:
            for ax in (a, b):
                ax.axvline(kept, color=colour, ls=":", lw=1)
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend(frameon=False, fontsize=7)
    b.set_xlabel("epoch")
    b.set_ylabel("validation Track 3 (lower is better)")
    b.legend(frameon=False, fontsize=7)
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    return _png(fig)

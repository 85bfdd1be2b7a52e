"""How much a metadata table looks like the real Danish Fungi data: the same figures from
a simulated table and from a real DF20-format CSV.

:func:`realism_figures` reads one table (a simulation's split, or the real DF20-Mini test
metadata of Danish Fungi 2020, Picek et al., WACV 2022) and returns plain numbers:

- how telling the metadata is: observation-level top-1 and top-5 of a multinomial
  logistic regression on the metadata alone (habitat and substrate one-hot, month as
  sin/cos, place as a point on the unit sphere; every column z-scored on the fitted
  part), fitted on three quarters of the observations of each species with at least
  ``min_observations`` and scored on the held-out quarter, with all four fields and with
  each field alone, next to the prior (always the species most common in the fitted part);
- season and habits: the share of dated observations in August–October, the most common
  substrate and habitat and their shares;
- counts: species, images per observation, largest/smallest species (images);
- poison and unknown shares where the table can say: a ``poisonous`` column gives them;
  without one (the real DF20-Mini file: its ``class_id`` is the DF20-Mini numbering and the
  official poison list is by DF20 class id only) they are ``None`` with a note why.

:func:`simulation_figures` puts a simulation's three splits together (habits and the
regression from the training table, the DF20 analogue; poison and unknown shares from the
val and test tables).

The regression is plain numpy (Nesterov-accelerated gradient descent on the L2-penalised
mean cross-entropy, a fixed number of steps), so the same table and seed always give the
same figures.

>>> from sporeprint.simulator.realism import read_metadata_csv, realism_figures
>>> f = realism_figures(read_metadata_csv("tests/data/df20_mini_excerpt.csv"))  # doctest: +SKIP
>>> round(f["aug_oct_share"], 2)                                                # doctest: +SKIP
0.7
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from store import contract

FIELDS = ("habitat", "substrate", "month", "place")
NO_POISON_NOTE = "n/a (no DF20 numbering)"
_NEEDED = ("observation_id", "species")


@dataclass(frozen=True)
class Columns:
    """Per-observation values of one table (first image row of each observation)."""

    species: np.ndarray  # str
    habitat: np.ndarray  # str, "" when missing
    substrate: np.ndarray  # str, "" when missing
    month: np.ndarray  # float, nan when missing
    latitude: np.ndarray  # float, nan when missing
    longitude: np.ndarray  # float, nan when missing
    images: np.ndarray  # int, image rows per observation


def read_metadata_csv(path: str | Path) -> pa.Table:
    """A DF20-format metadata CSV as an Arrow table, every column read as text (the real
    files write months as ``8.0``; :func:`realism_figures` parses what it needs)."""
    import pyarrow.csv as pacsv

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metadata CSV {path} does not exist; pass the path of a "
                                "DF20-format CSV (e.g. the published DF20-Mini test metadata)")
    with path.open("rb") as f:
        names = f.readline().decode("utf-8").strip().split(",")
    opts = pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                strings_can_be_null=True)
    return pacsv.read_csv(path, convert_options=opts)


def _text(col) -> np.ndarray:
    v = pc.fill_null(pc.utf8_trim_whitespace(pc.cast(col, pa.string())), "")
    out = np.asarray(v.to_numpy(zero_copy_only=False), dtype=object).astype(str)
    out[np.isin(np.char.lower(out), ["nan", "na", "n/a", "null", "none"])] = ""
    return out


def _number(col) -> np.ndarray:
    s = _text(col)
    out = np.full(len(s), np.nan)
    ok = s != ""
    out[ok] = s[ok].astype(float)
    return out


def _observations(table: pa.Table) -> tuple[Columns, dict[str, str]]:
    cols = contract.resolve_columns(table.column_names)
    missing = [c for c in _NEEDED if c not in cols]
    if missing:
        raise ValueError(f"metadata table lacks {missing}; pass a DF20-format table with an "
                         "observationID (or gbifID) and a species column")
    ids = _text(table[cols["observation_id"]])
    _, first, inv = np.unique(ids, return_index=True, return_inverse=True)
    images = np.bincount(inv)

    def text(name):
        return _text(table[cols[name]])[first] if name in cols else np.full(len(first), "")

    def number(name):
        return _number(table[cols[name]])[first] if name in cols else np.full(len(first), np.nan)

    month = number("month")
    if "event_date" in cols:  # eventDate fills a missing month
        dates = text("event_date")
        gap = np.isnan(month) & (np.char.str_len(dates.astype(str)) >= 7)
        month[gap] = [float(d[5:7]) for d in dates[gap]]
    return Columns(species=text("species"), habitat=text("habitat"),
                   substrate=text("substrate"), month=month, latitude=number("latitude"),
                   longitude=number("longitude"), images=images), cols


# --- features and the regression ---------------------------------------------------------

def _one_hot(values: np.ndarray) -> np.ndarray:
    """One column per value seen (missing is a value of its own)."""
    vocab, code = np.unique(values, return_inverse=True)
    out = np.zeros((len(values), len(vocab)))
    out[np.arange(len(values)), code] = 1.0
    return out


def field_features(obs: Columns, field: str) -> np.ndarray:
    """(n, k) raw features of one metadata field."""
    if field in ("habitat", "substrate"):
        return _one_hot(getattr(obs, field))
    if field == "month":
        gone = np.isnan(obs.month)
        angle = 2 * np.pi * (np.nan_to_num(obs.month, nan=1.0) - 1) / 12
        return np.column_stack([np.where(gone, 0, np.sin(angle)),
                                np.where(gone, 0, np.cos(angle)), gone.astype(float)])
    if field == "place":
        gone = np.isnan(obs.latitude) | np.isnan(obs.longitude)
        lat = np.radians(np.nan_to_num(obs.latitude))
        lon = np.radians(np.nan_to_num(obs.longitude))
        xyz = np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
        return np.column_stack([np.where(gone[:, None], 0.0, xyz), gone.astype(float)])
    raise ValueError(f"field={field!r} is not one of {FIELDS}")


def fit_softmax(x: np.ndarray, y: np.ndarray, n_classes: int, c: float = 1.0,
                steps: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Weights (d, C) and intercepts (C,) of a multinomial logistic regression minimising
    mean cross-entropy + ||W||² / (2 c n) (scikit-learn's ``C`` convention, intercept not
    penalised) by Nesterov-accelerated gradient descent with step 1/L; deterministic."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])  # (n, d+1)
    lam = 1.0 / (c * n)
    # Lipschitz bound of the gradient: the softmax Hessian is at most 1/2 the identity.
    lip = 0.5 * np.linalg.norm(xb, 2) ** 2 / n + lam
    pen = np.ones((d + 1, 1))
    pen[-1] = 0.0
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), y] = 1.0
    w = np.zeros((d + 1, n_classes))
    prev = w.copy()
    for t in range(1, steps + 1):
        v = w + (t - 2) / (t + 1) * (w - prev) if t > 1 else w
        z = xb @ v
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        grad = xb.T @ (p - onehot) / n + lam * pen * v
        prev, w = w, v - grad / lip
    return w[:-1], w[-1]


def _held_out(species: np.ndarray, min_observations: int, seed: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, fit mask, held-out mask) over observations: a quarter of each kept
    species' observations (at least one), drawn with ``seed``, is held out."""
    names, y, counts = np.unique(species, return_inverse=True, return_counts=True)
    keep = (counts >= min_observations) & (names != "")
    rng = np.random.default_rng(seed)
    fit, test = np.zeros(len(y), bool), np.zeros(len(y), bool)
    for k in np.flatnonzero(keep):
        rows = rng.permutation(np.flatnonzero(y == k))
        n_test = max(1, len(rows) // 4)
        test[rows[:n_test]] = True
        fit[rows[n_test:]] = True
    relabel = np.full(len(names), -1)
    relabel[keep] = np.arange(int(keep.sum()))
    return relabel[y], fit, test


def metadata_accuracy(obs: Columns, min_observations: int = 5, seed: int = 0,
                      c: float = 1.0) -> dict[str, float | int]:
    """Held-out top-1/top-5 of the metadata-only regression, all fields and each alone."""
    y, fit, test = _held_out(obs.species, min_observations, seed)
    n_classes = int(y.max()) + 1 if (y >= 0).any() else 0
    out: dict[str, float | int] = {"lr_species": n_classes,
                                   "lr_observations": int(fit.sum() + test.sum())}
    if n_classes < 2 or not test.any():
        return out
    out["prior"] = float(np.mean(y[test] == np.bincount(y[fit], minlength=n_classes).argmax()))
    sets = {"all": FIELDS, **{f: (f,) for f in FIELDS}}
    for name, fields in sets.items():
        x = np.hstack([field_features(obs, f) for f in fields])
        mu, sd = x[fit].mean(0), x[fit].std(0)
        x = (x - mu) / np.where(sd > 0, sd, 1.0)
        w, b = fit_softmax(x[fit], y[fit], n_classes, c=c)
        scores = x[test] @ w + b
        truth = y[test]
        top5 = np.argsort(-scores, axis=1, kind="stable")[:, :5]
        out[f"lr_top1_{name}"] = float(np.mean(top5[:, 0] == truth))
        out[f"lr_top5_{name}"] = float(np.mean((top5 == truth[:, None]).any(1)))
    return out


# --- the figures -------------------------------------------------------------------------

def _top_share(values: np.ndarray) -> tuple[str | None, float | None]:
    seen = values[values != ""]
    if not len(seen):
        return None, None
    names, counts = np.unique(seen, return_counts=True)
    k = int(counts.argmax())
    return str(names[k]), float(counts[k] / len(seen))


def realism_figures(table: pa.Table, min_observations: int = 5, seed: int = 0,
                    regression: bool = True) -> dict:
    """Figures of one metadata table (one row per image, DF20 columns under any spelling
    the metadata contract knows). Shares are fractions; ``None`` where the table cannot
    say, with the reason under ``notes``."""
    obs, cols = _observations(table)
    n_obs = len(obs.species)
    out: dict = {"images": int(table.num_rows), "observations": n_obs,
                 "images_per_observation": float(table.num_rows / n_obs) if n_obs else None,
                 "notes": {}}
    named = obs.species[obs.species != ""]
    names, per_species = np.unique(np.repeat(obs.species, obs.images), return_counts=True)
    per_species = per_species[names != ""]
    out["species"] = int(len(np.unique(named)))
    out["class_ratio"] = float(per_species.max() / per_species.min()) if len(per_species) else None
    dated = obs.month[~np.isnan(obs.month)]
    out["aug_oct_share"] = float(np.mean((dated >= 8) & (dated <= 10))) if len(dated) else None
    out["month_counts"] = [int(np.sum(dated == m)) for m in range(1, 13)]
    out["top_substrate"], out["top_substrate_share"] = _top_share(obs.substrate)
    out["top_habitat"], out["top_habitat_share"] = _top_share(obs.habitat)

    if "poisonous" in cols:
        poison = _number(table[cols["poisonous"]])
        ids = _text(table[cols["observation_id"]])
        _, first = np.unique(ids, return_index=True)
        out["poisonous_image_share"] = float(np.nanmean(poison == 1)) if len(poison) else None
        out["poisonous_observation_share"] = float(np.mean(poison[first] == 1)) if n_obs else None
    else:
        out["poisonous_image_share"] = out["poisonous_observation_share"] = None
        out["notes"]["poisonous"] = NO_POISON_NOTE
    if "class_id" in cols:
        cid = _number(table[cols["class_id"]])
        ids = _text(table[cols["observation_id"]])
        _, first = np.unique(ids, return_index=True)
        out["unknown_share"] = float(np.mean(cid[first] == -1)) if n_obs else None
    else:
        out["unknown_share"] = None
        out["notes"]["unknown"] = "n/a (no class_id column)"
    if regression:
        out.update(metadata_accuracy(obs, min_observations, seed))
    return out


def simulation_figures(sim, min_observations: int = 5, seed: int = 0) -> dict:
    """The figures of a :class:`~sporeprint.simulator.simulate.Simulation`: those of its
    training table (the DF20 analogue), plus ``val_test_poisonous_observation_share`` and
    ``val_test_unknown_share`` over the val and test tables together."""
    out = realism_figures(sim.train, min_observations, seed)
    out["training_poisonous_image_share"] = out["poisonous_image_share"]
    later = pa.concat_tables([sim.val, sim.test])
    f = realism_figures(later, min_observations, seed, regression=False)
    out["val_test_poisonous_observation_share"] = f["poisonous_observation_share"]
    out["val_test_unknown_share"] = f["unknown_share"]
    out["val_test_aug_oct_share"] = f["aug_oct_share"]
    return out

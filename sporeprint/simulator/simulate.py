"""A FungiCLEF-like data simulator: DF20/DF21-format metadata and per-image embeddings.

The real Danish Fungi images and a DINOv2 backbone are not needed to exercise
sporeprint: this module draws a seeded, deterministic stand-in with the real
problem's shape (see docs/simulator.md for the generative model, its knobs and how hard
it is).

>>> from sporeprint.simulator.simulate import SimConfig, simulate, write_simulation
>>> sim = simulate(SimConfig(scale="small", seed=0))
>>> paths = write_simulation(sim, "sim-out")          # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sporeprint.simulator.counts import (
    images_per_observation,
    period_weights,
    split_into_observations,
    train_image_counts,
)
from sporeprint.simulator.embeddings import EmbeddingModel, EmbeddingParams, lookalike_twins
from sporeprint.simulator.metadata import SpeciesPreferences, draw_observations
from sporeprint.simulator.taxonomy import (
    FUNGAL_CLASSES,
    SimulationError,
    build_taxonomy,
    keep_classes,
)
from store.reference import NUM_CLASSES, poison_status

if TYPE_CHECKING:
    from store import FeatureStore

log = logging.getLogger(__name__)

DF20_COLUMNS = [
    "observationID", "year", "month", "day", "countryCode", "locality", "taxonID",
    "scientificName", "kingdom", "phylum", "class", "order", "family", "genus",
    "specificEpithet", "taxonRank", "species", "level0Gid", "level0Name", "level1Gid",
    "level1Name", "level2Gid", "level2Name", "ImageUniqueID", "Substrate", "rightsHolder",
    "Latitude", "Longitude", "CoorUncert", "Habitat", "image_path", "class_id", "MetaSubstrate",
    "poisonous",
]
LABEL_COLUMNS = ["taxonID", "scientificName", "kingdom", "phylum", "class", "order", "family",
                 "genus", "specificEpithet", "taxonRank", "species", "class_id", "poisonous"]
# scale -> (default number of classes, multiplier on DF20's per-class training counts)
SCALES = {"small": (200, 0.1), "medium": (600, 0.3), "full": (NUM_CLASSES, 1.0)}
DF20_TRAIN_IMAGES = 295_938
DF21_OBSERVATIONS_PER_TRAIN_IMAGE = 30_131 / 295_938
EXTRA_SPECIES = 2_713 - NUM_CLASSES  # DF21 species absent from DF20
MAX_DIM = 4096
IMAGE_SIDES = (16, 1024)  # side of the simulated JPEGs


@dataclass
class SimConfig:
    """What to simulate. ``scale`` picks defaults for ``classes`` and ``count_scale``.

    >>> SimConfig(scale="small", classes=120, seed=3).resolved().count_scale
    0.1
    """

    scale: str = "small"
    classes: int | None = None  # known DF20 classes kept
    poisonous_species: int | None = None  # poisonous among them (None: DF20's ~3%, at least 3)
    seed: int = 0
    dim: int = 1024
    images: bool = False  # write JPEGs too (used by write_simulation / the CLI)
    count_scale: float | None = None  # multiplier on DF20-like training counts per class
    min_count: int = 30  # training images of the rarest class at full scale
    max_count: int = 1900  # training images of the most frequent class at full scale
    unknown_fraction: float = 1 / 3  # share of val observations from unknown species
    poisonous_fraction: float = 0.02  # share of val observations of poisonous species (DF21 ~2.3%)
    poisonous_image_share: float = 0.044  # share of training images of poisonous species (DF20)
    test_unknown_fraction: float = 0.4  # the same in the test draw: the later period shifts
    test_poisonous_fraction: float = 0.03
    period_observations: float = DF21_OBSERVATIONS_PER_TRAIN_IMAGE  # val obs / train image
    test_factor: float = 4.0  # test observations per val observation (a larger, independent draw)
    missing: float = 0.03  # base rate of missing metadata values
    metadata_strength: float = 0.45  # share of records from the species' own real profile (0 = none)
    month_jitter: float = 0.2  # share of observations moved a month from their record's
    lookalike_share: float = 0.9  # share of other species paired with a look-alike
    label_noise: float = 0.03  # share of training observations labelled as another species
    embedding: EmbeddingParams = field(default_factory=EmbeddingParams)

    def resolved(self) -> SimConfig:
        """A copy with scale defaults filled in and values checked."""
        if self.scale not in SCALES:
            raise SimulationError(f"scale={self.scale!r} is not one of {sorted(SCALES)}; "
                             "pass --scale small, medium or full")
        classes, count_scale = SCALES[self.scale]
        classes = self.classes if self.classes is not None else classes
        if not 1 <= classes <= NUM_CLASSES:
            raise SimulationError(f"classes={classes} is outside 1..{NUM_CLASSES}; pass a value "
                                  "in range")
        for name in ("unknown_fraction", "poisonous_fraction", "poisonous_image_share",
                     "test_unknown_fraction",
                     "test_poisonous_fraction", "missing", "lookalike_share", "label_noise",
                     "month_jitter"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise SimulationError(f"{name}={v} must be in [0, 1)")
        if not 0.0 <= self.metadata_strength <= 1.0:
            raise SimulationError(f"metadata_strength={self.metadata_strength} must be in [0, 1] "
                                  "(the share of records drawn from a species' own profile)")
        for u, p in (("unknown_fraction", "poisonous_fraction"),
                     ("test_unknown_fraction", "test_poisonous_fraction")):
            if getattr(self, u) + getattr(self, p) >= 1.0:
                raise SimulationError(f"{u} + {p} must stay below 1")
        if self.test_factor <= 0:
            raise SimulationError(f"test_factor={self.test_factor} must be positive (e.g. 4)")
        if self.poisonous_species is not None and not 0 <= self.poisonous_species <= 49:
            raise SimulationError(f"poisonous_species={self.poisonous_species} is outside 0..49 "
                                  "(the official list's poisonous species)")
        if self.count_scale is not None and self.count_scale <= 0:
            raise SimulationError(f"count_scale={self.count_scale} must be positive (e.g. 0.1)")
        if not 2 <= self.dim <= MAX_DIM:
            raise SimulationError(f"dim={self.dim} is outside 2..{MAX_DIM} (DINOv2-giant is "
                                  "1536-d); pass --dim in range (default 1024)")
        if self.seed < 0:
            raise SimulationError(f"seed={self.seed} is negative; pass --seed 0 or more")
        emb = EmbeddingParams(**{**asdict(self.embedding), "dim": self.dim})
        return SimConfig(**{**asdict(self), "classes": classes, "embedding": emb,
                            "count_scale": self.count_scale or count_scale})


@dataclass
class Simulation:
    """A simulated dataset held in memory.

    ``train``/``val``/``test`` hold one row per image in the DF20 columns (test keeps its
    labels here; ``test_public()`` drops them). Vectors are aligned with ``image_paths``,
    ``image_observation_ids``, ``image_class_ids``, ``image_roles`` and ``image_species``.
    """

    config: SimConfig
    species: pa.Table
    train: pa.Table
    val: pa.Table
    test: pa.Table
    image_paths: np.ndarray
    vectors: np.ndarray
    image_observation_ids: np.ndarray
    image_class_ids: np.ndarray
    image_roles: np.ndarray
    image_species: np.ndarray  # row of each image's species in ``species``

    @property
    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        return self.image_paths, self.vectors

    @property
    def poisonous_class_ids(self) -> np.ndarray:
        s = self.species
        mask = pc.and_(s["known"], s["poisonous"])
        return np.asarray(s.filter(mask)["class_id"], dtype=np.int64)

    @property
    def class_ids(self) -> np.ndarray:
        """The known DF20 class ids present in this simulation."""
        return np.asarray(self.species.filter(self.species["known"])["class_id"], dtype=np.int64)

    @property
    def unknown_species(self) -> list[str]:
        return self.species.filter(pc.invert(self.species["known"]))["species"].to_pylist()

    def test_public(self) -> pa.Table:
        """The 2024-style test table: no label columns, ``observation_id`` for the id."""
        t = self.test.drop_columns(LABEL_COLUMNS)
        return t.rename_columns(["observation_id" if c == "observationID" else c
                                 for c in t.column_names])

    def test_truth(self) -> pa.Table:
        """``observation_id, class_id``: one row per test observation."""
        return _first_per_observation(self.test).select(["observationID", "class_id"]) \
            .rename_columns(["observation_id", "class_id"])

    def test_species_truth(self) -> pa.Table:
        """``observation_id, class_id, species, genus, family, poisonous``: the true species of
        every test observation, the unknown ones (class_id -1) included — what an expert
        would later tell, for measuring enrollment of new species."""
        cols = ["observationID", "class_id", "species", "genus", "family", "poisonous"]
        t = _first_per_observation(self.test).select(cols)
        return t.rename_columns(["observation_id", *cols[1:]])

    def summary(self) -> dict:
        """Counts and shares per split (observation level for unknown/poisonous shares)."""
        out = {}
        for role in ("train", "val", "test"):
            obs = _first_per_observation(getattr(self, role))
            cid = np.asarray(obs["class_id"])
            out[role] = {"images": getattr(self, role).num_rows, "observations": len(cid),
                         "unknown_share": float(np.mean(cid == -1)) if len(cid) else 0.0,
                         "poisonous_share": float(np.mean(np.asarray(obs["poisonous"]) == 1))
                         if len(cid) else 0.0}
        return out


def _first_per_observation(t: pa.Table) -> pa.Table:
    ids = np.asarray(t["observationID"])
    _, first = np.unique(ids, return_index=True)
    return t.take(np.sort(first))


def _species_table(tax, keys: np.ndarray, train_counts: np.ndarray) -> pa.Table:
    names = tax.species_names()
    g = tax.genus_idx[keys]
    f = tax.family_idx[g]
    o = tax.order_idx[f]
    c = tax.class_idx[o]
    return pa.table({
        "key": pa.array(keys, pa.int64()),
        "class_id": pa.array(tax.class_id[keys], pa.int64()),
        "species": [names[k] for k in keys],
        "scientific_name": [f"{names[k]} {tax.authors[k]}" for k in keys],
        "specific_epithet": [tax.epithets[k] for k in keys],
        "taxon_id": pa.array(tax.taxon_id[keys], pa.int64()),
        "genus": [tax.genus_names[i] for i in g],
        "family": [tax.family_names[i] for i in f],
        "order": [tax.order_names[i] for i in o],
        "class": [FUNGAL_CLASSES[i][0] for i in c],
        "phylum": [FUNGAL_CLASSES[i][1] for i in c],
        "poisonous": pa.array(tax.poisonous[keys]),
        "known": pa.array(tax.known[keys]),
        "train_images": pa.array(train_counts, pa.int64()),
    })


def _split_table(species: pa.Table, obs_species: np.ndarray,
                 n_images: np.ndarray, obs_ids: np.ndarray, image_numbers: np.ndarray,
                 meta: dict[str, np.ndarray]) -> pa.Table:
    """One row per image in DF20 column order."""
    per_obs = np.repeat(np.arange(len(obs_species)), n_images)
    sp = species.take(obs_species[per_obs])
    ids = pa.array(obs_ids[per_obs], pa.int64())
    paths = pc.binary_join_element_wise(pc.cast(ids, pa.string()),
                                        pc.cast(pa.array(image_numbers), pa.string()), "-")
    paths = pc.binary_join_element_wise(paths, pa.scalar(".JPG"), "")
    n = len(per_obs)

    def obs_col(name, typ):
        v = meta[name][per_obs]
        if v.dtype == object:
            return pa.array(v, typ, from_pandas=True)
        if v.dtype.kind == "f":
            missing = np.isnan(v)
            if pa.types.is_integer(typ):
                v = np.where(missing, 0, v).astype(np.int64)
            return pa.array(v, typ, mask=missing)
        return pa.array(v, typ)

    cols = {
        "observationID": ids,
        "year": obs_col("year", pa.int64()),
        "month": obs_col("month", pa.int64()),
        "day": obs_col("day", pa.int64()),
        "countryCode": obs_col("countryCode", pa.string()),
        "locality": obs_col("locality", pa.string()),
        "taxonID": sp["taxon_id"],
        "scientificName": sp["scientific_name"],
        "kingdom": pa.array(np.full(n, "Fungi", dtype=object), pa.string()),
        "phylum": sp["phylum"], "class": sp["class"], "order": sp["order"],
        "family": sp["family"], "genus": sp["genus"],
        "specificEpithet": sp["specific_epithet"],
        "taxonRank": pa.array(np.full(n, "SPECIES", dtype=object), pa.string()),
        "species": sp["species"],
    }
    for name in ("level0Gid", "level0Name", "level1Gid", "level1Name", "level2Gid", "level2Name"):
        cols[name] = obs_col(name, pa.string())
    cols["ImageUniqueID"] = pa.nulls(n, pa.string())
    cols["Substrate"] = obs_col("Substrate", pa.string())
    cols["rightsHolder"] = obs_col("rightsHolder", pa.string())
    for name in ("Latitude", "Longitude", "CoorUncert"):
        cols[name] = obs_col(name, pa.float64())
    cols["Habitat"] = obs_col("Habitat", pa.string())
    cols["image_path"] = paths
    cols["class_id"] = sp["class_id"]
    cols["MetaSubstrate"] = obs_col("MetaSubstrate", pa.string())
    cols["poisonous"] = pc.cast(sp["poisonous"], pa.int64())
    return pa.table([cols[c] for c in DF20_COLUMNS], names=DF20_COLUMNS)


def _around(x: float, half: float) -> tuple[float, float]:
    return max(0.0, x - half), min(1.0, x + half)


def noisy_labels(rng: np.random.Generator, rows: np.ndarray, genus_idx: np.ndarray,
                 n_known: int, rate: float) -> np.ndarray:
    """Species rows as labelled: a share ``rate`` of the known-species observations is
    labelled as another known species, of the same genus when it has one (the usual
    mistake), otherwise any."""
    out = rows.copy()
    wrong = np.flatnonzero((rng.random(len(rows)) < rate) & (rows < n_known))
    for i in wrong:
        g = genus_idx[rows[i]]
        mates = np.flatnonzero(genus_idx[:n_known] == g)
        mates = mates[mates != rows[i]]
        if len(mates) == 0:
            mates = np.delete(np.arange(n_known), rows[i])
        out[i] = mates[rng.integers(len(mates))]
    return out


def poisonous_image_share(counts: np.ndarray, poisonous: np.ndarray, share: float,
                          floor: int) -> np.ndarray:
    """Training counts with the poisonous species' scaled (keeping their long-tail order)
    so that they hold ``share`` of the training images: DF20's 4.4% at any scale, however
    few poisonous species a small simulation keeps."""
    out = counts.copy()
    pois = poisonous & (counts > 0)
    if not pois.any() or share <= 0:
        return out
    others = float(counts[~pois].sum())
    target = share / (1.0 - share) * others
    out[pois] = np.maximum(floor, np.rint(counts[pois] * target / counts[pois].sum()))
    return out


def simulate(config: SimConfig) -> Simulation:
    """Draw a simulated dataset; the same config always gives the same data."""
    cfg = config.resolved()
    seeds = np.random.SeedSequence([cfg.seed, 20_240_315])
    rng_tax, rng_counts, rng_meta, rng_period, rng_ids, rng_emb, rng_vec, rng_look = (
        np.random.default_rng(s) for s in seeds.spawn(8))

    status = poison_status()
    poisonous = np.array([status[c] for c in range(NUM_CLASSES)])
    tax = build_taxonomy(rng_tax, poisonous, n_unknown=EXTRA_SPECIES)
    full_counts = train_image_counts(rng_counts, NUM_CLASSES, DF20_TRAIN_IMAGES, cfg.min_count,
                                     cfg.max_count, poisonous=poisonous)
    known_keys = keep_classes(tax, rng_counts, cfg.classes, cfg.poisonous_species)
    n_unknown = max(5, round(EXTRA_SPECIES * cfg.classes / NUM_CLASSES))
    unknown_keys = NUM_CLASSES + np.sort(rng_counts.choice(EXTRA_SPECIES, n_unknown, replace=False))
    keys = np.concatenate([known_keys, unknown_keys])
    floor = max(2, round(cfg.min_count * cfg.count_scale))
    counts = np.zeros(len(keys), np.int64)
    counts[: len(known_keys)] = np.maximum(
        floor, np.rint(full_counts[known_keys] * cfg.count_scale)).astype(np.int64)
    counts = poisonous_image_share(counts, tax.poisonous[keys], cfg.poisonous_image_share, floor)
    species = _species_table(tax, keys, counts)

    # Observations: training from the long-tailed counts, val/test from the period weights.
    tr_rows, tr_n = split_into_observations(rng_counts, counts)
    tr_order = rng_counts.permutation(len(tr_rows))
    tr_rows, tr_n = tr_rows[tr_order], tr_n[tr_order]
    # The test draw shifts from validation: other unknown and poisonous shares, a later year.
    p_val = period_weights(rng_period, counts, tax.known[keys], tax.poisonous[keys],
                           cfg.unknown_fraction, cfg.poisonous_fraction)
    p_test = period_weights(rng_period, counts, tax.known[keys], tax.poisonous[keys],
                            cfg.test_unknown_fraction, cfg.test_poisonous_fraction)
    n_period = max(1, round(cfg.period_observations * int(counts.sum())))
    n_test = max(1, round(cfg.test_factor * n_period))
    va_rows = rng_period.choice(len(keys), size=n_period, p=p_val)
    te_rows = rng_period.choice(len(keys), size=n_test, p=p_test)
    va_n = images_per_observation(rng_period, n_period)
    te_n = images_per_observation(rng_period, n_test)

    # Look-alike pairs share part of their look and differ in their habits.
    twin, overlap = lookalike_twins(rng_look, tax.genus_idx[keys], tax.poisonous[keys],
                                    tax.known[keys], share=cfg.lookalike_share,
                                    overlap=_around(cfg.embedding.twin_overlap, 0.05))
    prefs = SpeciesPreferences.draw(rng_meta, tax.genus_idx[keys], cfg.metadata_strength,
                                    twin=twin, month_jitter=cfg.month_jitter)
    labels = {"train": noisy_labels(rng_look, tr_rows, tax.genus_idx[keys], len(known_keys),
                                    cfg.label_noise)}
    splits = [("train", tr_rows, tr_n, (2000, 2020)), ("val", va_rows, va_n, (2021, 2021)),
              ("test", te_rows, te_n, (2022, 2022))]
    n_obs = [len(s[1]) for s in splits]
    n_img = [int(s[2].sum()) for s in splits]
    obs_ids = 2_200_000_000 + rng_ids.choice(800_000_000, size=sum(n_obs), replace=False)
    image_numbers = 1 + rng_ids.permutation(sum(n_img))

    model = EmbeddingModel.draw(rng_emb, cfg.embedding, tax.genus_idx[keys], tax.family_idx,
                                twin=twin, overlap=overlap)
    vectors = np.empty((sum(n_img), cfg.dim), np.float32)
    tables, o0, i0 = {}, 0, 0
    for (role, rows, n_images, years), no, ni in zip(splits, n_obs, n_img, strict=True):
        meta = draw_observations(rng_meta, prefs, rows, years, missing=cfg.missing)
        tables[role] = _split_table(species, labels.get(role, rows), n_images,
                                    obs_ids[o0:o0 + no], image_numbers[i0:i0 + ni], meta)
        model.generate(rng_vec, rows, n_images, later_period=role != "train",
                       out=vectors[i0:i0 + ni], substrate=meta["_substrate_idx"],
                       habitat=meta["_habitat_idx"])
        o0, i0 = o0 + no, i0 + ni
        log.debug("simulated %s: %d observations, %d images", role, no, ni)

    allt = [tables[r] for r in ("train", "val", "test")]
    paths = np.concatenate([np.asarray(t["image_path"], dtype=object) for t in allt])
    return Simulation(
        config=cfg, species=species, train=tables["train"], val=tables["val"],
        test=tables["test"], image_paths=paths, vectors=vectors,
        image_observation_ids=np.concatenate([np.asarray(t["observationID"]) for t in allt]),
        image_class_ids=np.concatenate([np.asarray(t["class_id"]) for t in allt]),
        image_roles=np.repeat(np.array(["train", "val", "test"]), n_img),
        image_species=np.concatenate([np.repeat(s[1], s[2]) for s in splits]),
    )


def check_image_size(image_size: int) -> None:
    """SimulationError unless ``image_size`` (the side of the simulated JPEGs) is in range."""
    if not IMAGE_SIDES[0] <= image_size <= IMAGE_SIDES[1]:
        raise SimulationError(f"image_size={image_size} is outside {IMAGE_SIDES[0]}.."
                              f"{IMAGE_SIDES[1]} pixels; pass --image-size in range (default 96)")


def write_simulation(sim: Simulation, out_dir: str | Path, images: bool | None = None,
                     image_size: int = 96, row_group: int = 16_384,
                     progress: bool = False) -> dict[str, Path]:
    """Write the simulation in the real formats; returns ``{name: path}``.

    Files: ``df20_train.csv``, ``df21_val.csv``, ``test_2024.csv`` (no labels),
    ``test_2024_truth.csv``, ``test_2024_species.csv`` (the true species of every test
    observation, unknown species included), ``embeddings.parquet`` (``image_path``, ``embedding``
    fixed-size list of float32; every image), the same per split in
    ``embeddings_{train,val,test}.parquet`` and, with ``images`` (default: ``sim.config.images``),
    ``images/<image_path>`` JPEGs.
    """
    import pyarrow.csv as pacsv

    out = Path(out_dir)
    check_image_size(image_size)
    if out.exists() and not out.is_dir():
        raise SimulationError(f"output path {out} exists and is not a directory; pass a "
                              "directory")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"train": out / "df20_train.csv", "val": out / "df21_val.csv",
             "test": out / "test_2024.csv", "truth": out / "test_2024_truth.csv",
             "species_truth": out / "test_2024_species.csv",
             "embeddings": out / "embeddings.parquet"}
    pacsv.write_csv(sim.train, paths["train"])
    pacsv.write_csv(sim.val, paths["val"])
    pacsv.write_csv(sim.test_public(), paths["test"])
    pacsv.write_csv(sim.test_truth(), paths["truth"])
    pacsv.write_csv(sim.test_species_truth(), paths["species_truth"])

    roles = np.asarray(sim.image_roles)
    _write_embeddings(paths["embeddings"], sim.image_paths, sim.vectors, row_group)
    for role in ("train", "val", "test"):  # per split, for ingesting one split at a time
        paths[f"embeddings_{role}"] = out / f"embeddings_{role}.parquet"
        keep = np.flatnonzero(roles == role)
        _write_embeddings(paths[f"embeddings_{role}"], sim.image_paths[keep], sim.vectors[keep],
                          row_group)
    if sim.config.images if images is None else images:
        from sporeprint.simulator.images import SpeciesLook, write_images

        looks = [SpeciesLook.draw(sim.config.seed, g, k) for g, k in
                 zip(sim.species["genus"].to_pylist(), sim.species["key"].to_pylist(), strict=True)]
        paths["images"] = out / "images"
        write_images(sim.image_paths, sim.image_observation_ids, sim.image_species, looks,
                     paths["images"], sim.config.seed, image_size, progress=progress)
    log.info("wrote simulation to %s", out)
    return paths


def ingest_simulation(fs: FeatureStore, files: dict[str, Path], space: str, split_seed: int,
                      model_id: str | None = None) -> None:
    """Load what :func:`write_simulation` wrote into the open, writable store ``fs``:
    the train and val roles with their vectors in ``space``, then fit the metadata
    encoder, encode the observations and make the validation splits with ``split_seed``
    (the test role stays out, as new observations to score)."""
    for role in ("train", "val"):
        fs.ingest_metadata(files[role], role=role)
        fs.ingest_embeddings(files[f"embeddings_{role}"], space, model_id=model_id)
    fs.fit_encoder()
    fs.encode_observations()
    fs.make_splits(split_seed)


def _write_embeddings(path: Path, image_paths: np.ndarray, vectors: np.ndarray,
                      row_group: int) -> None:
    """``image_path`` + ``embedding`` (fixed-size float32 list), written in row groups."""
    import pyarrow.parquet as pq

    dim = vectors.shape[1]
    schema = pa.schema([("image_path", pa.string()), ("embedding", pa.list_(pa.float32(), dim))])
    with pq.ParquetWriter(path, schema,
                          compression={"image_path": "snappy", "embedding": "none"}) as w:
        for s in range(0, len(image_paths), row_group):
            chunk = np.ascontiguousarray(vectors[s:s + row_group])
            emb = pa.FixedSizeListArray.from_arrays(pa.array(chunk.reshape(-1)), dim)
            w.write_table(pa.table([pa.array(image_paths[s:s + row_group], pa.string()), emb],
                                   schema=schema))

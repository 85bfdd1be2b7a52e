"""The FungiCLEF-like simulator: determinism, formats, proportions, taxonomy, difficulty."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from sporeprint.simulator.counts import train_image_counts
from sporeprint.simulator.difficulty import knn_baseline
from sporeprint.simulator.simulate import (
    DF20_COLUMNS,
    LABEL_COLUMNS,
    SimConfig,
    simulate,
    write_simulation,
)

FILES = ["df20_train.csv", "df21_val.csv", "test_2024.csv", "test_2024_truth.csv",
         "test_2024_species.csv",
         "embeddings.parquet", "embeddings_train.parquet", "embeddings_val.parquet",
         "embeddings_test.parquet"]


@pytest.fixture(scope="module")
def small():
    return simulate(SimConfig(scale="small", seed=0, dim=32))


@pytest.fixture(scope="module")
def medium():
    # Enough period observations for the share checks; low dimension keeps it fast.
    return simulate(SimConfig(scale="medium", seed=1, dim=8))


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_files_and_other_seed_differs(tmp_path, small):
    a = write_simulation(small, tmp_path / "a")
    b = write_simulation(simulate(SimConfig(scale="small", seed=0, dim=32)), tmp_path / "b")
    c = write_simulation(simulate(SimConfig(scale="small", seed=1, dim=32)), tmp_path / "c")
    for name in ("train", "val", "test", "truth", "embeddings", "embeddings_train",
                 "embeddings_val", "embeddings_test"):
        assert _digest(a[name]) == _digest(b[name]), name
        assert _digest(a[name]) != _digest(c[name]), name
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(FILES)


def test_written_formats(tmp_path, small):
    paths = write_simulation(small, tmp_path)
    train = pacsv.read_csv(paths["train"])
    val = pacsv.read_csv(paths["val"])
    test = pacsv.read_csv(paths["test"])
    truth = pacsv.read_csv(paths["truth"])
    assert train.column_names == DF20_COLUMNS and val.column_names == DF20_COLUMNS
    assert "observation_id" in test.column_names and "observationID" not in test.column_names
    assert not set(LABEL_COLUMNS) & set(test.column_names)
    # Truth: one row per test observation, the same ids.
    test_ids = np.unique(np.asarray(test["observation_id"]))
    assert np.array_equal(np.sort(np.asarray(truth["observation_id"])), test_ids)
    # The true species of every test observation, unknown ones included, in a file of its
    # own: the same ids and class ids as the truth, a name for each, unknowns never in training.
    named = pacsv.read_csv(paths["species_truth"])
    assert named.column_names == ["observation_id", "class_id", "species", "genus", "family",
                                  "poisonous"]
    assert named.select(["observation_id", "class_id"]).equals(truth.select(["observation_id",
                                                                             "class_id"]))
    unknown = np.asarray(named["class_id"]) == -1
    names = np.asarray(named["species"])
    assert unknown.any() and all(names)
    assert not set(names[unknown]) & set(np.asarray(train["species"]))
    # Ids unique across the three files; image paths DF20-style and unique.
    ids = [np.unique(np.asarray(t[c])) for t, c in
           ((train, "observationID"), (val, "observationID"), (test, "observation_id"))]
    assert len(np.unique(np.concatenate(ids))) == sum(len(i) for i in ids)
    all_paths = np.concatenate([np.asarray(t["image_path"]) for t in (train, val, test)])
    assert len(np.unique(all_paths)) == len(all_paths)
    obs_of_path = np.array([p.split("-")[0] for p in np.asarray(train["image_path"])])
    assert np.array_equal(obs_of_path.astype(np.int64), np.asarray(train["observationID"]))
    assert all(p.endswith(".JPG") for p in all_paths)
    # Embeddings: one row per image of every split, fixed-size float32, unit norm.
    emb = pq.read_table(paths["embeddings"])
    typ = emb.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(typ) and typ.list_size == 32
    assert typ.value_type == pa.float32()
    assert sorted(emb["image_path"].to_pylist()) == sorted(all_paths.tolist())
    vec = np.asarray(emb["embedding"].combine_chunks().flatten()).reshape(-1, 32)
    assert np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)


def test_period_proportions_and_unknown_species(medium):
    s = medium.summary()
    # Validation and the (four times larger) test draw have shares of their own: the later
    # period shifts, as FungiCLEF's test years did.
    for role, unknown, poisonous in (("val", 1 / 3, 0.02), ("test", 0.4, 0.03)):
        assert abs(s[role]["unknown_share"] - unknown) < 0.04, s[role]
        assert abs(s[role]["poisonous_share"] - poisonous) < 0.01, s[role]
    assert 3.5 < s["test"]["observations"] / s["val"]["observations"] < 4.5
    assert s["train"]["unknown_share"] == 0.0
    # Unknown observations are species never seen in training.
    val_unknown = set(np.asarray(medium.val["species"])[np.asarray(medium.val["class_id"]) == -1])
    assert val_unknown and not val_unknown & set(np.asarray(medium.train["species"]))
    assert val_unknown <= set(medium.unknown_species)
    # The later period has a different class distribution from training.
    known = medium.class_ids
    tr = np.bincount(np.searchsorted(known, np.asarray(medium.train["class_id"])), minlength=len(known))
    v_ids = np.asarray(medium.val["class_id"])
    va = np.bincount(np.searchsorted(known, v_ids[v_ids >= 0]), minlength=len(known))
    tv = 0.5 * np.abs(tr / tr.sum() - va / va.sum()).sum()
    assert tv > 0.15, tv


def test_observations_have_one_to_four_correlated_images(medium):
    ids, roles = medium.image_observation_ids, np.asarray(medium.image_roles)
    # Training as in DF20 (1.07 images per observation in the DF20-Mini metadata), the later
    # period as in DF21 (about 2).
    for role, lo, hi in (("train", 1.03, 1.12), ("val", 1.7, 2.1), ("test", 1.7, 2.1)):
        _, per_obs = np.unique(ids[roles == role], return_counts=True)
        assert per_obs.min() == 1 and per_obs.max() <= 4, role
        assert lo < per_obs.mean() < hi, (role, per_obs.mean())
    # Observation-level metadata is the same on every image row of an observation.
    t = medium.train.select(["observationID", "Substrate", "month", "Latitude"]).to_pandas()
    assert (t.groupby("observationID").nunique(dropna=False) <= 1).all().all()


def test_images_of_one_observation_are_more_alike(small):
    v, ids, sp = small.vectors, small.image_observation_ids, small.image_species
    rng = np.random.default_rng(0)
    # Pairs from the same observation (consecutive rows), from the same species but another
    # observation, and from two species.
    k = np.flatnonzero(ids[:-1] == ids[1:])
    same_obs_cos = np.einsum("nd,nd->n", v[k], v[k + 1]).mean()
    i = rng.integers(len(v), size=20000)
    mates = [np.flatnonzero(sp == s) for s in range(int(sp.max()) + 1)]
    j = np.array([m[rng.integers(len(m))] for m in (mates[s] for s in sp[i])])
    other_obs = ids[i] != ids[j]
    same_species_cos = np.einsum("nd,nd->n", v[i[other_obs]], v[j[other_obs]]).mean()
    r = rng.integers(len(v), size=20000)
    two_species_cos = np.einsum("nd,nd->n", v[i], v[r])[sp[i] != sp[r]].mean()
    assert same_obs_cos > same_species_cos > two_species_cos + 0.02


def test_train_counts_are_long_tailed_like_df20():
    c = train_image_counts(np.random.default_rng(0), 1604, 295_938, 30, 1900)
    assert c.min() == 30 and c.max() == 1900
    assert abs(c.sum() - 295_938) / 295_938 < 0.01
    assert np.median(c) < c.mean() < 0.2 * c.max()


def test_metadata_values_missing_and_danish(medium):
    t = medium.train
    n = t.num_rows
    for col in ("month", "Latitude", "Substrate", "Habitat"):
        share = t[col].null_count / n
        assert 0.01 < share < 0.1, (col, share)
    lat = np.asarray(t["Latitude"].drop_null())
    lon = np.asarray(t["Longitude"].drop_null())
    assert lat.min() >= 54.5 and lat.max() <= 57.8 and lon.min() >= 8.0 and lon.max() <= 15.3
    assert np.mean(np.asarray(t["countryCode"].fill_null("")) == "DK") > 0.95
    # Real marginals (DF20-Mini: soil 74%, Deciduous woodland 28%, 72% in Aug-Oct) ...
    df = t.select(["class_id", "Substrate", "Habitat", "month"]).to_pandas()
    subs = df["Substrate"].value_counts(normalize=True)
    habs = df["Habitat"].value_counts(normalize=True)
    assert subs.index[0] == "soil" and 0.6 < subs.iloc[0] < 0.85, subs.head(2)
    assert 0.15 < habs.iloc[0] < 0.4, habs.head(2)
    assert df["month"].dropna().between(8, 10).mean() > 0.55
    # ... and species-dependent habits: wood-dwellers exist, and species differ from the
    # overall mix by more than sampling noise would make them.
    per = df.dropna(subset=["Substrate"]).groupby("class_id")["Substrate"]
    soil = per.agg(lambda s: np.mean(s == "soil"))
    big = per.size() >= 20
    assert soil[big].min() < 0.4 < 0.9 < soil[big].max()


@pytest.mark.parametrize("classes", [None, 120])
def test_poisonous_species_have_edible_same_genus_look_alikes(classes):
    sim = simulate(SimConfig(scale="small", classes=classes, dim=2, count_scale=0.01))
    sp = sim.species.to_pandas()
    known = sp[sp.known]
    # DF20's share of poisonous species (49 of 1,604, about 3%), at least 3.
    assert len(sim.poisonous_class_ids) == {None: 6, 120: 4}[classes]
    edible_genera = set(known[~known.poisonous].genus)
    assert set(known[known.poisonous].genus) <= edible_genera
    assert len(known) == (classes or 200)


def test_classes_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="classes=2 is too small"):
        simulate(SimConfig(classes=2, dim=2))
    with pytest.raises(ValueError, match="classes=60 is too small"):
        simulate(SimConfig(classes=60, poisonous_species=49, dim=2))
    with pytest.raises(ValueError, match="poisonous_species=50"):
        simulate(SimConfig(poisonous_species=50, dim=2))
    with pytest.raises(ValueError, match="scale='huge'"):
        simulate(SimConfig(scale="huge"))


def test_knn_baseline_is_hard_but_learnable_and_metadata_is_weak():
    sim = simulate(SimConfig(scale="small", classes=300, count_scale=0.2, seed=5))
    r = knn_baseline(sim, k=10)
    assert r["observations"] > 500
    assert 0.40 <= r["knn_top1"] <= 0.70, r
    # Metadata as telling as real Danish records (a metadata-only model gets 5-25% top-1
    # there), not a shortcut: alone it is far below the images.
    assert 0.03 <= r["metadata_top1"] <= 0.25, r
    assert r["metadata_top1"] < r["knn_top1"] - 0.2, r

"""Per-image embeddings with the structures that make frozen-backbone features hard to classify.

Everything is drawn in a ``latent_dim``-dimensional space (default 128) with a
slowly decaying spectrum, mapped into ``dim`` (default 1024) by a random
orthonormal projection, plus a little isotropic noise in all ``dim``
directions, then L2-normalised to float32 — so, like DINOv2 features, most of
the variance lives in about a hundred directions. A latent image vector is the sum of

* the species mean ``family_scale·F[family] + genus_scale·G[genus] + species_scale·I[species]``
  (normalised; siblings in a genus share most of it);
* a **growth stage** per observation (``stages`` of them, e.g. young, mature, old) and a
  **view** per image (``views`` of them, e.g. cap from above, gills/underside, cut, in
  situ), each an offset ``sqrt(mode_shared)·genus part + sqrt(1 - mode_shared)·species part``.
  The genus part makes the underside of two siblings look alike; the species part
  moves each species in its *own* directions, so no shared subspace holds the
  within-species variation, and the species' identity seen from below is not the
  one seen from above (a class is several clusters, not one). Each species has
  its own mix of stages and views;
* **look-alikes**: a species with a twin (every poisonous species and its edible
  same-genus look-alike, plus a share of other same-genus pairs) copies a share
  ``overlap`` of the twin's identity and mode offsets; only metadata (habitat,
  substrate, season, place; see ``metadata.separate_niches``) tells some of them apart;
* an observation's **camera and light**: coefficients on ``camera_rank`` shared
  directions; the later (validation/test) period adds new cameras — extra
  directions and an offset of the old coefficients — that training mostly lacks;
* what the photo shows **around** the fungus: a direction per substrate and per habitat
  (shared by all species; ``substrate_scale``, ``habitat_scale``), so an image carries
  some of what the metadata says, as real photos of a mushroom on wood or moss do;
* observation and image noise.

>>> import numpy as np
>>> m = EmbeddingModel.draw(np.random.default_rng(0), EmbeddingParams(dim=16), np.array([0, 0]),
...                         np.array([0]), twin=np.array([-1, 0]), overlap=np.array([0.0, 0.7]))
>>> m.generate(np.random.default_rng(1), np.array([0, 1]), np.array([1, 2])).shape
(3, 16)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EmbeddingParams:
    """Knobs of the embedding model (defaults measured by ``benchmarks/difficulty.py``;
    see docs/simulator.md)."""

    dim: int = 1024
    latent_dim: int = 128  # directions that carry the structure (capped at dim)
    spectrum: float = 0.5  # latent coordinate j is scaled by (1 + j/64) ** -spectrum
    family_scale: float = 1.0
    genus_scale: float = 0.9
    species_scale: float = 0.3
    stages: int = 3  # growth stages (per observation)
    views: int = 4  # views (per image)
    stage_scale: float = 1.3
    view_scale: float = 2.0
    mode_global: float = 0.6  # share of a mode offset common to all species (gills look like gills)
    mode_shared: float = 0.1  # share common to the genus
    mode_concentration: float = 1.0  # Dirichlet concentration of each species' stage/view mix
    camera_rank: int = 12
    camera_scale: float = 0.45
    new_camera_rank: int = 4  # directions only the later period uses
    new_camera_scale: float = 0.45
    period_shift: float = 0.25  # offset of the old camera coefficients in the later period
    twin_overlap: float = 0.95  # share of a look-alike's look copied from its twin (±0.05)
    spread_sd: float = 0.35  # log-sd of a per-species multiplier on its modes and noise
    observation_noise: float = 1.5
    image_noise: float = 2.6
    ambient_noise: float = 0.25  # isotropic noise over all ``dim`` directions
    substrate_scale: float = 0.15  # what the photo shows of the substrate (per observation)
    habitat_scale: float = 0.1  # and of the habitat


def _unit_rows(rng: np.random.Generator, shape: tuple[int, ...], dim: int) -> np.ndarray:
    x = rng.standard_normal((*shape, dim))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _mix_twins(own: np.ndarray, twin: np.ndarray, overlap: np.ndarray) -> np.ndarray:
    """Rows of ``own`` (S, ..., r) with a share ``overlap`` copied from their twin's row
    (twins have no twin themselves, so one pass suffices); for independent rows of
    equal norm the norm is kept on average."""
    out = own.copy()
    has = np.flatnonzero(twin >= 0)
    if len(has):
        a = overlap[has].reshape((-1,) + (1,) * (own.ndim - 1))
        out[has] = np.sqrt(a) * own[twin[has]] + np.sqrt(1.0 - a) * own[has]
    return out


@dataclass
class EmbeddingModel:
    """Drawn parameters, all in the latent space; ``basis`` (r, dim) maps latent to output."""

    params: EmbeddingParams
    means: np.ndarray  # (S, r)
    stage_offsets: np.ndarray  # (S, stages, r)
    view_offsets: np.ndarray  # (S, views, r)
    spread: np.ndarray  # (S,) how variable each species looks
    stage_p: np.ndarray  # (S, stages)
    view_p: np.ndarray  # (S, views)
    camera: np.ndarray  # (camera_rank, r)
    new_camera: np.ndarray  # (new_camera_rank, r)
    shift: np.ndarray  # (camera_rank,) later-period offset of the camera coefficients
    basis: np.ndarray  # (r, dim) float32, spectrum folded in
    surroundings: tuple[np.ndarray, np.ndarray] | None = None  # (32, r) substrate, (31, r) habitat

    @classmethod
    def draw(cls, rng: np.random.Generator, params: EmbeddingParams, genus_idx: np.ndarray,
             family_idx: np.ndarray, twin: np.ndarray | None = None,
             overlap: np.ndarray | None = None) -> EmbeddingModel:
        """``genus_idx`` per species, ``family_idx`` per genus; ``twin`` per species (index
        of its look-alike, -1 none) with the copied share ``overlap``."""
        p = params
        n = len(genus_idx)
        r = min(p.latent_dim, p.dim)
        twin = np.full(n, -1) if twin is None else np.asarray(twin)
        overlap = np.zeros(n) if overlap is None else np.asarray(overlap, dtype=float)
        n_gen = int(genus_idx.max()) + 1
        fam = _unit_rows(rng, (int(family_idx.max()) + 1,), r)
        gen = _unit_rows(rng, (n_gen,), r)
        ident = _unit_rows(rng, (n,), r)
        means = (p.family_scale * fam[family_idx[genus_idx]] + p.genus_scale * gen[genus_idx]
                 + p.species_scale * ident)
        means /= np.linalg.norm(means, axis=1, keepdims=True)
        means = _mix_twins(means, twin, overlap)  # look-alikes of another genus too
        means /= np.linalg.norm(means, axis=1, keepdims=True)

        def modes(k: int, scale: float, mix: np.ndarray) -> np.ndarray:
            common = _unit_rows(rng, (1, k), r)
            shared = _unit_rows(rng, (n_gen, k), r)[genus_idx]
            own = np.sqrt(max(1.0 - p.mode_global - p.mode_shared, 0.0)) * _unit_rows(rng, (n, k), r)
            off = _mix_twins(np.sqrt(p.mode_global) * common + np.sqrt(p.mode_shared) * shared
                             + own, twin, overlap)
            # Centred on the species' own mix: the modes move a species around its mean
            # without moving the mean, so only a model that tells the modes apart gains.
            off -= np.einsum("sk,skr->sr", mix, off)[:, None, :]
            return scale * off

        stage_p = rng.dirichlet(np.full(p.stages, p.mode_concentration), size=n)
        view_p = rng.dirichlet(np.full(p.views, p.mode_concentration), size=n)
        spread = np.exp(p.spread_sd * rng.standard_normal(n))
        stage_offsets = modes(p.stages, p.stage_scale, stage_p) * spread[:, None, None]
        view_offsets = modes(p.views, p.view_scale, view_p) * spread[:, None, None]
        camera = _unit_rows(rng, (p.camera_rank,), r)
        new_camera = _unit_rows(rng, (p.new_camera_rank,), r)
        shift = rng.standard_normal(p.camera_rank)
        shift *= p.period_shift / max(float(np.linalg.norm(shift)), 1e-12)
        q, _ = np.linalg.qr(rng.standard_normal((p.dim, r)))  # (dim, r) orthonormal columns
        spectrum = (1.0 + np.arange(r) / 64.0) ** -p.spectrum
        spectrum *= np.sqrt(r / np.sum(spectrum**2))  # keep the total variance
        basis = (spectrum[:, None] * q.T).astype(np.float32)
        from store.reference import habitats, substrate_groups

        surroundings = (_unit_rows(rng, (len(substrate_groups()),), r),
                        _unit_rows(rng, (len(habitats()),), r))
        return cls(p, means, stage_offsets, view_offsets, spread, stage_p, view_p, camera,
                   new_camera, shift, basis, surroundings)

    def generate(self, rng: np.random.Generator, species: np.ndarray, n_images: np.ndarray,
                 later_period: bool = False, out: np.ndarray | None = None,
                 chunk: int = 8192, substrate: np.ndarray | None = None,
                 habitat: np.ndarray | None = None) -> np.ndarray:
        """Vectors for observations of ``species`` with ``n_images`` images each, in
        observation order (images of an observation consecutive). float32 (sum(n_images), d).
        ``substrate``/``habitat``: the observation's vocabulary index (-1 or absent: nothing
        of it shows)."""
        p = self.params
        r = self.basis.shape[0]
        total = int(n_images.sum())
        if out is None:
            out = np.empty((total, p.dim), np.float32)
        row = 0
        for start in range(0, len(species), chunk):
            sp, k = species[start:start + chunk], n_images[start:start + chunk]
            m = len(sp)
            stage = _draw_rows(rng, self.stage_p[sp])
            cam = rng.standard_normal((m, len(self.camera))) * (
                p.camera_scale / np.sqrt(max(len(self.camera), 1)))
            obs = self.means[sp] + self.stage_offsets[sp, stage] + cam @ self.camera
            if self.surroundings is not None:
                for idx, dirs, scale in ((substrate, self.surroundings[0], p.substrate_scale),
                                         (habitat, self.surroundings[1], p.habitat_scale)):
                    if idx is not None and scale:
                        v = np.asarray(idx[start:start + chunk])
                        obs += np.where((v >= 0)[:, None], scale * dirs[np.maximum(v, 0)], 0.0)
            if later_period:
                obs += self.shift @ self.camera
                new = rng.standard_normal((m, len(self.new_camera))) * (
                    p.new_camera_scale / np.sqrt(max(len(self.new_camera), 1)))
                obs += new @ self.new_camera
            obs += (p.observation_noise / np.sqrt(r)) * self.spread[sp, None] * rng.standard_normal(
                (m, r))
            img_sp = np.repeat(sp, k)
            view = _draw_rows(rng, self.view_p[img_sp])
            lat = np.repeat(obs, k, axis=0) + self.view_offsets[img_sp, view]
            lat += (p.image_noise / np.sqrt(r)) * self.spread[img_sp, None] * rng.standard_normal(
                lat.shape)
            img = lat.astype(np.float32) @ self.basis  # (n_img, dim)
            img += (p.ambient_noise / np.sqrt(p.dim)) * rng.standard_normal(
                img.shape, dtype=np.float32)
            img /= np.linalg.norm(img, axis=1, keepdims=True)
            out[row:row + len(img)] = img
            row += len(img)
        return out


def _draw_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category per row of ``probs`` (inverse CDF)."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cdf[:, -1:]
    return np.minimum((u > cdf).sum(1), probs.shape[1] - 1)


def lookalike_twins(rng: np.random.Generator, genus_idx: np.ndarray, poisonous: np.ndarray,
                    known: np.ndarray, share: float = 0.3, overlap: tuple[float, float] = (0.75, 0.95)
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(twin, overlap)`` per species: every poisonous species gets an edible known
    same-genus twin (a fixed one per genus, so several poisonous species can share it);
    then about ``share`` of the remaining species each pick a look-alike among the
    others, of the same genus when one is free, else of any genus (convergent looks).
    Twins themselves have no twin. ``overlap`` ~ U(lo, hi)."""
    n = len(genus_idx)
    twin = np.full(n, -1, np.int64)
    leader = np.zeros(n, bool)
    edible_known = np.flatnonzero(known & ~poisonous)
    for s in np.flatnonzero(poisonous):
        mates = edible_known[genus_idx[edible_known] == genus_idx[s]]
        if len(mates):
            twin[s] = mates[0]
            leader[mates[0]] = True
    free = np.flatnonzero((twin < 0) & ~leader & ~poisonous)
    for s in rng.permutation(free):
        if twin[s] >= 0 or leader[s] or rng.random() >= share:
            continue
        mates = free[(twin[free] < 0) & ~leader[free] & (free != s)]
        same = mates[genus_idx[mates] == genus_idx[s]]
        mates = same if len(same) else mates
        if len(mates):
            t = mates[rng.integers(len(mates))]
            twin[s], leader[t] = t, True
    lo, hi = overlap
    ov = np.where(twin >= 0, rng.uniform(lo, hi, n), 0.0)
    return twin, ov

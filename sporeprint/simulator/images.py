"""Small synthetic mushroom JPEGs whose look depends on the species.

A species has a cap colour (hue near its genus's), cap shape (width, height),
stem proportions and a texture (spots or stripes, their number and colour).
An observation adds its own background and framing; each image adds jitter,
a little rotation and pixel noise. The pictures only need to carry species
signal through the real decode → backbone → store path; they do not look like
real fungi.

>>> import numpy as np
>>> look = SpeciesLook.draw(seed=0, genus="Amanita", key=3)
>>> render(look, np.random.default_rng(0), np.random.default_rng(1), size=64).size
(64, 64)
"""

from __future__ import annotations

import colorsys
import logging
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return int(r * 255), int(g * 255), int(b * 255)


@dataclass
class SpeciesLook:
    cap: tuple[int, int, int]
    stem: tuple[int, int, int]
    mark: tuple[int, int, int]
    cap_width: float  # fraction of the image
    cap_height: float
    stem_width: float
    stem_height: float
    texture: int  # 0 plain, 1 spots, 2 stripes, 3 a band across the cap
    marks: int
    mark_size: float  # spot diameter, stripe or band width, as a fraction of the cap width

    @classmethod
    def draw(cls, seed: int, genus: str, key: int) -> SpeciesLook:
        g = np.random.default_rng([seed, zlib.crc32(genus.encode())])
        s = np.random.default_rng([seed, 1_000_003, key])
        hue = g.random() + 0.1 * s.standard_normal()
        sat = 0.45 + 0.5 * (0.5 * g.random() + 0.5 * s.random())
        mix = 0.5 * g.random() + 0.5 * s.random()  # shape: half the genus's, half its own
        return cls(cap=_rgb(hue, sat, 0.45 + 0.5 * s.random()),
                   stem=_rgb(hue + 0.15 + 0.7 * s.random(), 0.2 + 0.5 * s.random(),
                             0.55 + 0.4 * s.random()),
                   mark=_rgb(hue + 0.25 + 0.5 * s.random(), 0.4 + 0.6 * s.random(),
                             0.15 + 0.85 * s.random()),
                   cap_width=0.55 + 0.3 * mix, cap_height=0.2 + 0.2 * mix,
                   stem_width=0.1 + 0.15 * s.random(), stem_height=0.2 + 0.2 * g.random(),
                   texture=int(s.integers(4)), marks=int(s.integers(3, 9)),
                   mark_size=0.08 + 0.1 * s.random())


def render(look: SpeciesLook, obs_rng: np.random.Generator, img_rng: np.random.Generator,
           size: int = 96) -> Image.Image:
    """One picture; ``obs_rng`` must be seeded per observation (shared background/framing),
    ``img_rng`` per image."""
    bg = _rgb(0.15 + 0.2 * obs_rng.random(), 0.3 + 0.4 * obs_rng.random(), 0.2 + 0.5 * obs_rng.random())
    cx = size * (0.5 + 0.05 * obs_rng.standard_normal() + 0.02 * img_rng.standard_normal())
    base = size * (0.9 + 0.03 * img_rng.standard_normal())
    zoom = 0.9 + 0.15 * obs_rng.random() + 0.04 * img_rng.standard_normal()
    im = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(im)
    sw, sh = look.stem_width * size * zoom, look.stem_height * size * zoom
    d.rectangle([cx - sw / 2, base - sh, cx + sw / 2, base], fill=look.stem)
    cw, ch = look.cap_width * size * zoom, look.cap_height * size * zoom
    top = base - sh - ch
    box = [cx - cw / 2, top, cx + cw / 2, top + 2 * ch]
    d.pieslice(box, 180, 360, fill=look.cap)
    mark = look.mark_size * cw
    if look.texture == 1:
        for _ in range(look.marks):
            a, r = img_rng.uniform(np.pi, 2 * np.pi), img_rng.uniform(0, 0.75)
            x, y = cx + np.cos(a) * r * cw / 2, top + ch + np.sin(a) * r * ch
            rad = max(1.0, mark / 2)
            d.ellipse([x - rad, y - rad, x + rad, y + rad], fill=look.mark)
    elif look.texture == 2:
        for i in range(look.marks):
            x = cx - cw / 2 + (i + 0.5) * cw / look.marks
            d.line([x, top + ch, cx + (x - cx) * 0.3, top + ch * 0.2], fill=look.mark,
                   width=max(1, round(mark / 3)))
    elif look.texture == 3:
        d.chord(box, 180, 360, fill=look.mark)
        inner = [box[0] + mark, box[1] + mark, box[2] - mark, box[3]]
        d.chord(inner, 180, 360, fill=look.cap)
    im = im.rotate(float(6 * img_rng.standard_normal()), resample=Image.BILINEAR, fillcolor=bg)
    pixels = np.asarray(im, dtype=np.float32)
    pixels += 8.0 * img_rng.standard_normal(pixels.shape, dtype=np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_images(paths: np.ndarray, observation_ids: np.ndarray, species_rows: np.ndarray,
                 looks: list[SpeciesLook], out_dir: Path, seed: int, size: int = 96,
                 progress: bool = False) -> int:
    """Write one JPEG per entry of ``paths`` under ``out_dir``; returns the number written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    items = range(len(paths))
    bar = None
    if progress:  # a bar on a terminal; one summary line in a log otherwise
        from tqdm import tqdm

        items = bar = tqdm(items, desc="images", unit="img", disable=None)
        started = time.perf_counter()
    for i in items:
        obs_rng = np.random.default_rng([seed, 7, int(observation_ids[i])])
        img_rng = np.random.default_rng([seed, 11, zlib.crc32(str(paths[i]).encode())])
        render(looks[species_rows[i]], obs_rng, img_rng, size).save(
            out_dir / str(paths[i]), format="JPEG", quality=88)
    if bar is not None and bar.disable:
        logger.info("wrote %d images in %.1f s", len(paths), time.perf_counter() - started)
    return len(paths)

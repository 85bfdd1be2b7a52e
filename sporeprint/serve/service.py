"""What the web page and its JSON API do, without the web framework: identify a photo,
a stored observation or a vector, search look-alikes, and make thumbnails of the
store's images.

Everything goes through the Python API (:func:`sporeprint.open`, read-only): the
run's :class:`~sporeprint.scoring.ScoringModel` decides (``model.predict``), the
space's own model embeds photos (``db.embed``) and ``db.search`` finds look-alikes.
One lock serialises access to the store's connection and the models.

>>> service = Service("demo-run/fungi.duckdb")                       # doctest: +SKIP
>>> service.identify_observation(123, metadata={}, filters={}, k=5)["answer"]  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import math
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sporeprint.errors import SporeprintError
from store import ENCODER_INPUT_SCHEMA, PARTS, ROLES, StoreError

log = logging.getLogger(__name__)

# The metadata fields the page's form sends (a request may send any name of the store's
# metadata contract, store/contract.py).
METADATA_FIELDS = ("date", "month", "day", "latitude", "longitude", "substrate",
                   "meta_substrate", "habitat")
# The observation columns the metadata encoder reads.
ENCODER_FIELDS = tuple(n for n in ENCODER_INPUT_SCHEMA.names if n != "observation_id")
FILTER_FIELDS = ("role", "poisonous", "species", "genus", "family", "near", "radius_km",
                 "date_from", "date_to", "split")
DEFAULT_ROLE = "train"  # look-alikes are training observations unless asked otherwise
THUMB_SIZES = (128, 256, 512, 1024)


@dataclass
class Limits:
    """Caps on what a request may make the server do."""

    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000  # a 40 MP photo; larger uploads are refused before decoding
    max_k: int = 100


class NotFound(SporeprintError):
    """An image or observation id the store does not hold."""


class TooLarge(SporeprintError):
    """An upload over the size or pixel cap."""


class NoModel(SporeprintError):
    """The store has no trained heads, so nothing can be identified."""


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def shown(value, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters: how an error message names a value a
    request sent (which may be megabytes long)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _number(name: str, value, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SporeprintError(f"{name} {shown(value)} is not a number")
    try:
        x = float(value)
    except ValueError:
        raise SporeprintError(f"{name} {shown(value)} is not a number") from None
    except OverflowError:  # an int past float's range
        x = math.inf
    if not math.isfinite(x) or not lo <= x <= hi:
        raise SporeprintError(f"{name} {shown(value)} is outside {lo:g}..{hi:g}")
    return x


def _integer(name: str, value, lo: int, hi: int) -> int:
    x = _number(name, value, lo, hi)
    if x != int(x):
        raise SporeprintError(f"{name} {shown(value)} is not a whole number")
    return int(x)


def parse_vector(value, dim: int) -> np.ndarray:
    """A request's ``vector``: ``dim`` numbers (or a list holding one such list) as a (1,
    ``dim``) float32 row whose length float32 can normalise; anything else is refused
    in one line saying what is wrong with it."""
    row = value[0] if isinstance(value, list) and len(value) == 1 and isinstance(
        value[0], list) else value
    if not isinstance(row, list) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in row):
        raise SporeprintError(f"vector {shown(value)} is not a list of numbers; send "
                              f"{dim} numbers, e.g. [0.12, -0.03, ...]")
    if len(row) != dim:
        raise SporeprintError(f"vector has {len(row)} numbers; the run's space has dimension "
                              f"{dim}, so send {dim}")
    try:
        v = np.array(row, dtype=np.float64)
    except OverflowError:  # an int past float64's range
        v = np.array([math.inf])
    if not np.isfinite(v).all():
        raise SporeprintError("vector holds NaN, inf or a number past float64's range; send "
                              "finite numbers")
    peak = float(np.abs(v).max())
    if peak == 0:
        raise SporeprintError("vector is all zeros, which has no direction to compare; send "
                              "the image's embedding")
    length = peak * float(np.sqrt(np.sum((v / peak) ** 2)))
    if not FLOAT32_TINY <= length * length <= FLOAT32_MAX:
        raise SporeprintError(f"vector has length {length:.3g} (largest value {peak:.3g}): its "
                              "scale is past what float32 can normalise for cosine search; "
                              "send it at unit length (divide it by its length)")
    return v.astype(np.float32)[None, :]


FLOAT32_TINY = float(np.nextafter(np.float32(0), np.float32(1)))
FLOAT32_MAX = float(np.finfo(np.float32).max)


def parse_metadata(fields: dict) -> dict:
    """Observation metadata from request fields (strings or numbers; blanks are missing),
    checked by the store's metadata contract (``store/contract.py``): the column names
    and value rules of ingestion and ``model.predict`` — ``month``/``Month``, ``Habitat``,
    ``Latitude`` with ``Longitude``, ``date`` or ``eventDate`` (YYYY-MM-DD, fills month and
    day), ... An unknown field or an invalid value raises ``MetadataError`` (HTTP 400).
    Returns the metadata encoder's fields that were given (``meta_substrate`` filled from
    ``substrate`` as ingestion does)."""
    from store import check_metadata

    given = {k: v for k, v in fields.items() if not _blank(v)}
    typed, _ = check_metadata([given], what="metadata")
    row = typed.select(list(ENCODER_FIELDS)).to_pylist()[0]
    return {k: v for k, v in row.items() if v is not None}


def parse_filters(fields: dict) -> dict:
    """Look-alike filters from request fields, named as ``sporeprint search``'s options
    (poisonous yes/no, near "LAT,LON"); role defaults to train, ``role=all`` lifts it.
    Returns keyword arguments of ``Search.where`` (validated there)."""
    unknown = sorted(set(fields) - set(FILTER_FIELDS))
    if unknown:
        raise SporeprintError(f"unknown filters {unknown}; use {', '.join(FILTER_FIELDS)}")
    f = {k: v.strip() if isinstance(v, str) else v for k, v in fields.items() if not _blank(v)}
    out: dict = {}
    role = f.get("role", DEFAULT_ROLE)
    if role != "all":
        if role not in ROLES:
            raise SporeprintError(f"role {role!r} is not one of all, {', '.join(ROLES)}")
        out["role"] = role
    if "poisonous" in f:
        p = f["poisonous"]
        p = {"yes": True, "true": True, "no": False, "false": False, "any": None}.get(
            str(p).lower(), p) if not isinstance(p, bool) else p
        if p not in (True, False, None):
            raise SporeprintError(f"poisonous {f['poisonous']!r} is not yes, no or any")
        if p is not None:
            out["poisonous"] = p
    for name in ("species", "genus", "family", "date_from", "date_to", "split"):
        if name in f:
            out[name] = str(f[name])
    if "split" in out and out["split"] not in PARTS:
        raise SporeprintError(f"split {out['split']!r} is not one of {', '.join(PARTS)}")
    if "near" in f:
        near = f["near"]
        try:
            lat, lon = (float(v) for v in (near.split(",") if isinstance(near, str) else near))
        except (TypeError, ValueError):
            raise SporeprintError(f"near {near!r} is not LAT,LON; e.g. near=55.7,12.5") from None
        out["near"] = (lat, lon)
    if "radius_km" in f:
        out["radius_km"] = _number("radius_km", f["radius_km"], 0, 20_100)
    return out


def parse_k(value, limits: Limits, default: int = 10) -> int:
    if _blank(value):
        return default
    return _integer("k", value, 1, limits.max_k)


def _json_value(v):
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class Service:
    """The store (read-only), the run's scoring model and the species names, shared by
    every request. ``run``: a run id (or comma-separated fold runs); default the latest
    trained ensemble, or none (search only) when the store has no trained heads."""

    def __init__(self, store: str | Path, run: str | None = None, space: str | None = None,
                 limits: Limits | None = None):
        import sporeprint

        self.limits = limits or Limits()
        self.lock = threading.RLock()
        self.db = sporeprint.open(store)
        try:
            self.model = self._load_model(run)
            self.space = self._pick_space(space)
            self.species = self._species()
            self.examples = self._examples()
            self.choices = self._choices()
        except BaseException:
            self.db.close()
            raise
        self._thumbs: OrderedDict = OrderedDict()
        self._embed_error: str | None = None

    def close(self) -> None:
        with self.lock:
            self.db.close()

    # -- set-up -------------------------------------------------------------------------
    def _load_model(self, run: str | None):
        if run is None and self.db.store.default_run() is None:
            log.warning("the store has no trained heads: look-alike search only "
                        "(train with `sporeprint train` to identify photos)")
            return None
        return self.db.model(run)

    def _pick_space(self, space: str | None) -> str:
        if self.model is not None:
            if space is not None and space != self.model.space:
                raise SporeprintError(f"space {space!r} differs from the run's space "
                                      f"{self.model.space!r}; leave --space out")
            return self.model.space
        if space is not None:
            self.db.store.require_space(space)
            return space
        names = self.db.spaces
        if len(names) != 1:
            raise SporeprintError(f"pass --space (the store has {', '.join(names) or 'no spaces'} "
                                  "and no trained run to take the space from)")
        return names[0]

    def _species(self) -> dict[int, dict]:
        rows = self.db.store.species_table().to_pylist()
        out = {r["class_id"]: r for r in rows}
        # enrolled species: their names, and a poison status that may be unknown (null)
        for r in self.db.store.enrolled_species().to_pylist():
            out[r["class_id"]] = {**out.get(r["class_id"], {}), **{
                k: r[k] for k in ("class_id", "species", "genus", "family", "poisonous")},
                "enrolled": True}
        return out

    def _examples(self) -> dict[int, int]:
        """One training image per species (the first with a photo file, else the first):
        the thumbnail shown beside each member of a prediction set."""
        rows = self.db.store.sql(
            "SELECT o.class_id, coalesce(min(i.image_id) FILTER (WHERE i.file_path IS NOT "
            "NULL), min(i.image_id)) AS image_id FROM images i JOIN observations o USING "
            "(observation_id) WHERE o.role = 'train' AND o.class_id IS NOT NULL GROUP BY 1")
        return dict(zip(rows.column("class_id").to_pylist(), rows.column("image_id").to_pylist(),
                        strict=True))

    def _choices(self) -> dict[str, list[str]]:
        """Values offered in the page's drop-downs: the official DF20 lists plus any value
        the store's training metadata holds."""
        from store.reference import habitats, substrate_groups

        out = {"substrate": set(substrate_groups()), "habitat": set(habitats())}
        try:
            vocab = self.db.store.encoder().vocab
        except Exception:  # noqa: BLE001 - a store without an encoder offers the official lists
            vocab = {}
        for name in out:
            out[name] |= set(vocab.get(name, []))
        return {name: sorted(v) for name, v in out.items()}

    def info(self) -> dict:
        m = self.model
        return {"store": str(self.db.store.path), "read_only": self.db.store.read_only,
                "space": self.space, "run": m.run_key if m is not None else None,
                "can_identify": m is not None, "classes": 0 if m is None else len(m.classes),
                "limits": {"max_upload_bytes": self.limits.max_upload_bytes,
                           "max_pixels": self.limits.max_pixels, "max_k": self.limits.max_k},
                "choices": self.choices}

    # -- identify -----------------------------------------------------------------------
    def _require_model(self):
        if self.model is None:
            raise NoModel("the store has no trained heads; run `sporeprint train` (and restart "
                          "`sporeprint serve`) to identify photos")
        return self.model

    def check_photo(self, data: bytes) -> tuple[str, tuple[int, int]]:
        """The photo's format and size, read from its header; refuses non-images and
        photos over the byte or pixel cap before anything decodes the pixels."""
        from PIL import Image, UnidentifiedImageError

        if len(data) > self.limits.max_upload_bytes:
            raise TooLarge(f"the photo is {len(data):,} bytes; the limit is "
                           f"{self.limits.max_upload_bytes:,}")
        if not data:
            raise SporeprintError("the photo is empty (0 bytes); choose a JPEG or PNG file")
        try:
            with Image.open(io.BytesIO(data)) as img:
                fmt, size = img.format or "JPEG", img.size
        except Image.DecompressionBombError as exc:  # over twice Pillow's own pixel limit
            found = re.search(r"\((\d+) pixels\)", str(exc))
            count = f"{int(found.group(1)):,} pixels" if found else "more pixels than that"
            raise TooLarge(f"the photo is {count}; the limit is {self.limits.max_pixels:,}; "
                           "send a smaller copy") from None
        except (UnidentifiedImageError, OSError, ValueError):
            raise SporeprintError("the upload is not a photo this server can read; choose a "
                                  "JPEG, PNG or WebP file") from None
        if size[0] * size[1] > self.limits.max_pixels:
            raise TooLarge(f"the photo is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels; "
                           f"the limit is {self.limits.max_pixels:,}; send a smaller copy")
        return fmt, size

    def embed_photo(self, data: bytes) -> np.ndarray:
        """The photo's vector (1, d) in the run's space, from its own model."""
        from embedder import POOLINGS, ImageDecodeError, ModelUnavailableError

        fmt, _ = self.check_photo(data)
        with tempfile.TemporaryDirectory(prefix="sporeprint-upload-") as tmp:
            path = Path(tmp) / f"upload.{fmt.lower()}"
            path.write_bytes(data)
            with self.lock:
                if self._embed_error:  # loading the model failed once: fail fast from now on
                    raise SporeprintError(self._embed_error)
                spec = self.db.store.require_space(self.space)
                if spec.pooling not in POOLINGS:  # vectors ingested from a file, no model
                    raise SporeprintError(
                        f"photos cannot be identified with this store: the vectors of space "
                        f"{self.space!r} were ingested precomputed (model {spec.model_id!r}), "
                        "so no model here turns a photo into one; identify stored "
                        "observations by id, or serve a run trained on a space made by "
                        "`sporeprint embed`")
                try:
                    return self.db.embed([path], space=self.space)
                except ImageDecodeError as exc:  # its message names the temporary file
                    raise SporeprintError(f"the photo cannot be decoded ({exc.reason}); "
                                          "choose another JPEG, PNG or WebP file") from None
                except ModelUnavailableError as exc:
                    model_id = self.db.store.require_space(self.space).model_id
                    self._embed_error = (
                        f"photos cannot be identified with this store: space {self.space!r} "
                        f"was made by {model_id!r}, which cannot be loaded here ({exc}); "
                        "identify stored observations by id, or serve a run trained on a "
                        "space made by `sporeprint embed`")
                    raise SporeprintError(self._embed_error) from exc

    def identify_photo(self, data: bytes, metadata: dict, filters: dict, k: int) -> dict:
        model = self._require_model()
        vector = self.embed_photo(data)
        return self._identify(model, vector, [metadata], None, filters, k,
                              {"kind": "photo", "metadata": metadata})

    def identify_vector(self, vector, metadata: dict, filters: dict, k: int) -> dict:
        model = self._require_model()
        v = parse_vector(vector, model.index.dim)
        return self._identify(model, v, [metadata], None, filters, k,
                              {"kind": "vector", "metadata": metadata})

    def identify_observation(self, observation_id: int, metadata: dict, filters: dict,
                             k: int) -> dict:
        """A stored observation: its image vectors with its stored metadata (fields given in
        ``metadata`` replace the stored ones). Its look-alikes leave it out."""
        model = self._require_model()
        obs = int(observation_id)
        with self.lock:
            fs = self.db.store
            stored = fs.observation_inputs([obs]).drop(["observation_id"])
            if stored.num_rows == 0:
                raise NotFound(f"observation {obs} is not in the store")
            _, vectors = fs.fetch_embeddings(self.space, fs.observation_image_ids(obs))
            about = fs.describe_observations([obs]).to_pylist()[0]
        if len(vectors) == 0:
            raise SporeprintError(f"observation {obs} has no vectors in space {self.space!r}; "
                                  "embed its images first (sporeprint embed)")
        meta = {k: v for k, v in stored.to_pylist()[0].items() if v is not None}
        meta.update(metadata)
        return self._identify(model, vectors, [meta] * len(vectors), [obs] * len(vectors),
                              filters, k, {"kind": "observation", "observation_id": obs,
                                           "metadata": meta,
                                           "stored": {k_: _json_value(v)
                                                      for k_, v in about.items()}})

    def _identify(self, model, vectors, metadata, observation_ids, filters, k, query) -> dict:
        # Every encoder field present (None = missing): ``predict`` builds its table from
        # the rows' keys, and a row with no keys would make no row at all.
        metadata = [{f: m.get(f) for f in ENCODER_FIELDS} for m in metadata]
        with self.lock:
            table = model.predict(vectors, metadata, observation_ids=observation_ids)
            row = table.to_pylist()[0]
            if query["kind"] == "observation":
                search = self.db.search(observation=query["observation_id"], space=self.space)
            else:
                v = np.asarray(vectors, np.float32).mean(0)
                search = self.db.search(vector=v / np.linalg.norm(v), space=self.space)
            hits = self._hits(search, filters, k)
        if "stored" in query:
            query["stored"]["in_model"] = self._in_model(model, query["stored"].get("class_id"))
        for h in hits["lookalikes"]:
            h["in_model"] = self._in_model(model, h.get("class_id"))
        answer = self._answer(row)
        top5 = [self._species_entry(c, p) for c, p in
                zip(row["top5_class_ids"], row["top5_probs"], strict=True)]
        for t in top5:
            t["named_by_answer"] = t["class_id"] == answer["class_id"]
        return {"query": query, "run": model.run_key, "answer": answer,
                "prediction_set": self._prediction_set(model, row),
                "warnings": row.get("warnings") or [], "top5": top5,
                "answer_outside_top5": self._outside_top5(row, answer, top5),
                "evidence_observation_ids": row["evidence_observation_ids"],
                **hits}

    def _prediction_set(self, model, row: dict) -> dict:
        """The answer's conformal set: its level, size, rank (species / genus / unknown)
        and members, most probable first, each with its probability, poison status and a
        training thumbnail (``-1``: a species not in the model); without a set, ``members``
        is empty and ``why`` says why (e.g. heads trained without a held-out calibration
        slice)."""
        out = {"coverage": model.coverage, "poison_coverage": model.poison_coverage,
               "size": row.get("set_size"), "answer_rank": row.get("answer_rank"),
               "genus": row.get("genus"), "members": [], "poisonous_members": [],
               "poison_check": [], "genus_poisonous": None, "why": None}
        if row.get("set_size") is None:
            out["why"] = model.sets_line()
            return out
        probs = dict(zip(row.get("ranked_class_ids") or [], row.get("ranked_probs") or [],
                         strict=True))
        for cid in row["prediction_set"]:
            if cid < 0:
                out["members"].append({"class_id": -1, "species": None, "genus": None,
                                       "poisonous": None, "prob": probs.get(cid),
                                       "image_url": None, "in_model": False})
                continue
            entry = self._species_entry(cid, probs.get(cid))
            image = self.examples.get(int(cid))
            entry["image_url"] = f"/images/{image}" if image is not None else None
            out["members"].append(entry)
        out["poisonous_members"] = [m for m in out["members"] if m["poisonous"]]
        out["poison_check"] = [self._species_entry(c, probs.get(c))
                               for c in row.get("poison_check") or []]
        if out["genus"] is not None:
            out["genus_poisonous"] = sorted(
                r["species"] or f"class {c}" for c, r in self.species.items()
                if r.get("genus") == out["genus"] and r.get("poisonous"))
        return out

    @staticmethod
    def _in_model(model, class_id) -> bool | None:
        """Whether the run was trained on ``class_id``: False for a species it never saw
        (class -1 is the store's "not one of the training species"), None when
        unlabelled."""
        if class_id is None:
            return None
        return bool(np.isin(int(class_id), model.answer_classes))

    def _outside_top5(self, row: dict, answer: dict, top5: list[dict]) -> dict | None:
        """The species the answer names when the top-5 list leaves it out (a poison-risk
        answer names the most probable poisonous species, which may rank lower), with its
        probability on the top-5 list's scale; None when the list holds it."""
        cid = answer["class_id"]
        if cid < 0 or any(t["named_by_answer"] for t in top5):
            return None
        prob = next((row.get(f"best_{side}_prob") for side in ("poisonous", "edible")
                     if row.get(f"best_{side}_class") == cid), None)
        entry = self._species_entry(cid, prob)
        entry["named_by_answer"] = True
        return entry

    def _answer(self, row: dict) -> dict:
        cid = int(row["class_id"])
        sp = self.species.get(cid, {}) if cid >= 0 else {}
        return {"kind": row["kind"], "class_id": cid, "species": sp.get("species"),
                "genus": sp.get("genus"), "poisonous": sp.get("poisonous") if cid >= 0 else None,
                "poison_prob": row["poison_prob"], "unknown_prob": row["unknown_prob"],
                "unknown_score": _json_value(row["unknown_score"]), "reason": row["reason"]}

    def _species_entry(self, class_id: int, prob: float) -> dict:
        sp = self.species.get(int(class_id), {})
        return {"class_id": int(class_id), "species": sp.get("species"),
                "genus": sp.get("genus"), "poisonous": sp.get("poisonous"), "prob": prob,
                "in_model": True}

    # -- search -------------------------------------------------------------------------
    def search(self, observation_id: int, filters: dict, k: int) -> dict:
        with self.lock:
            if self.db.store.existing_observations([int(observation_id)]).num_rows == 0:
                raise NotFound(f"observation {observation_id} is not in the store")
            out = self._hits(self.db.search(observation=int(observation_id), space=self.space),
                             filters, k)
        return {"query": {"kind": "observation", "observation_id": int(observation_id)}, **out}

    def _hits(self, search, filters: dict, k: int) -> dict:
        rows = search.where(**filters).limit(k).to_list()
        for r in rows:
            for key, v in r.items():
                r[key] = _json_value(v)
            r["image_url"] = f"/images/{r['image_id']}"
        return {"filters": {k_: list(v) if isinstance(v, tuple) else v
                            for k_, v in filters.items()},
                "k": k, "lookalikes": rows, "search": search.info.to_dict()}

    # -- images -------------------------------------------------------------------------
    def thumbnail(self, image_id: int, size: int = 256) -> bytes | None:
        """A JPEG of the store's image ``image_id`` at most ``size`` pixels on a side, or
        None when the store has no readable photo file for it (a placeholder is shown).
        Only files the store lists are read, and they are decoded and re-encoded, so
        nothing but image pixels leaves the server."""
        from embedder import ImageDecodeError, load_rgb

        if size not in THUMB_SIZES:
            raise SporeprintError(f"size {shown(size)} is not one of "
                                  f"{', '.join(map(str, THUMB_SIZES))}")
        key = (int(image_id), size)
        with self.lock:
            if key in self._thumbs:
                self._thumbs.move_to_end(key)
                return self._thumbs[key]
            try:
                path = self.db.store.image_file_path(int(image_id))
            except StoreError:
                raise NotFound(f"image {image_id} is not in the store") from None
        data = None
        if path is not None and Path(path).is_file():
            try:
                img = load_rgb(path, max_pixels=self.limits.max_pixels)
                img.thumbnail((size, size))
                buf = io.BytesIO()
                img.save(buf, "JPEG", quality=85)
                data = buf.getvalue()
            except ImageDecodeError as exc:
                log.warning("image %s: %s", image_id, exc.reason)
        with self.lock:
            self._thumbs[key] = data
            while len(self._thumbs) > 512:
                self._thumbs.popitem(last=False)
        return data

    @staticmethod
    def preview(data: bytes, size: int = 256) -> bytes:
        """A small JPEG of an uploaded photo, to show beside its answer."""
        from PIL import Image

        from embedder import load_rgb

        img = load_rgb(Image.open(io.BytesIO(data)))
        img.thumbnail((size, size))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        return buf.getvalue()

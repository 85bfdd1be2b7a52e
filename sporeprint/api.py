"""The Python API: open a store, query it with SQL, search look-alikes, score vectors.

>>> import sporeprint
>>> db = sporeprint.open("demo-run/fungi.duckdb")                    # doctest: +SKIP
>>> db.sql("SELECT role, count(*) AS n FROM observations GROUP BY 1").to_pandas()  # doctest: +SKIP
>>> hits = db.search(observation=123).where(poisonous=True, role="train")  # doctest: +SKIP
>>> hits.limit(5).to_arrow()                                       # doctest: +SKIP
>>> model = db.model()                                             # doctest: +SKIP
>>> model.predict(vectors, [{"habitat": "Deciduous woodland", "month": 9}])  # doctest: +SKIP

docs/api.md walks through it with runnable examples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from sporeprint.errors import SporeprintError

# The words `sporeprint search --poisonous` takes, accepted by `Search.where` too.
POISONOUS_WORDS = {"yes": True, "true": True, "no": False, "false": False}


class Database:
    """An open store. Read-only unless ``write=True`` (read-only SQL cannot touch files,
    attach databases or load extensions). Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path, write: bool = False):
        from store import FeatureStore

        self.store = FeatureStore(path, read_only=not write, create=False)
        self._indexes: dict = {}
        self._models: dict = {}
        self._embedders: dict = {}

    # -- plumbing -----------------------------------------------------------------------
    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"sporeprint.Database({self.store!r})"

    @property
    def spaces(self) -> list[str]:
        """Names of the store's embedding spaces."""
        return self.store.space_names()

    def default_space(self) -> str:
        """The space used when none is given: the store's only space, else the space of
        the store's default trained run (``FeatureStore.default_run``)."""
        return self.pick_space(None)[0]

    def pick_space(self, space: str | None) -> tuple[str, str]:
        """``(space, why)``: the given space (checked), else :meth:`default_space`'s."""
        if space is not None:
            self.store.require_space(space)
            return space, "given"
        names = self.spaces
        if len(names) == 1:
            return names[0], "the store's only space"
        run_id = self.store.default_run()
        run = self.store.get_run(run_id.split(",")[0]) if run_id else None
        if run is not None and run.get("space") in names:
            return run["space"], f"the space of the default run {run_id}"
        raise SporeprintError(f"pass space= (the store has {', '.join(names) or 'no spaces'} "
                              "and no trained run to take the space from)")

    def _space(self, space: str | None) -> str:
        return self.pick_space(space)[0]

    # -- SQL ----------------------------------------------------------------------------
    def sql(self, query: str, params: list | dict | None = None) -> pa.Table:
        """Run one SQL statement with bound parameters; a ``pyarrow.Table``."""
        return self.store.sql(query, params)

    # -- search -------------------------------------------------------------------------
    def search(self, observation: int | None = None, vector=None, image: str | Path | None = None,
               space: str | None = None) -> Search:
        """Start a look-alike search from exactly one of: a stored observation (the
        observation itself is left out of its results), a vector (d,) or (1, d), or a photo
        (embedded with the space's own model). Refine with ``.where(...)`` and
        ``.limit(k)``; run with ``.to_arrow()``, ``.to_pandas()`` or ``.to_list()``."""
        given = [x is not None for x in (observation, vector, image)]
        if sum(given) != 1:
            raise SporeprintError("pass exactly one of observation=, vector= or image=")
        space, why = self.pick_space(space)
        search = Search(self, space, observation, vector, image)
        search.space_why = why
        return search

    def index(self, space: str, kind: str = "auto", where: str = "all"):
        """``(index, why)`` used by searches: the saved fresh index of ``kind`` (``auto``:
        the kind planned for the selection's size), else an exact one built in memory once
        and cached for this Database."""
        from sporeprint.indexing import ensure_index

        key = (space, kind, where)
        if key not in self._indexes:
            self._indexes[key] = ensure_index(self.store, space, kind, where)
        return self._indexes[key]

    def embed(self, images: list[str | Path], space: str | None = None) -> np.ndarray:
        """Image vectors (n, d) from photo files, with the space's own model."""
        from sporeprint.embedding import embedder_for_space

        space = self._space(space)
        if space not in self._embedders:
            self._embedders[space] = embedder_for_space(self.store.require_space(space))
        return np.asarray(self._embedders[space].embed_images([str(p) for p in images]),
                          dtype=np.float32)

    # -- models -------------------------------------------------------------------------
    def model(self, run_id: str | None = None):
        """The :class:`~sporeprint.scoring.ScoringModel` of a run (an ensemble or fold
        heads, comma-separated), loaded once: heads, training index, calibration.
        Default: the latest trained ensemble (or head)."""
        from sporeprint.scoring import ScoringModel

        if run_id is None:
            run_id = self.store.default_run()
            if run_id is None:
                raise SporeprintError("the store has no trained heads; run `sporeprint train`")
        if run_id not in self._models:
            ids = [r.strip() for r in run_id.split(",") if r.strip()]
            model = ScoringModel.load(self.store, ids)
            model.species_names = {r["class_id"]: r["species"] for r in
                                   self.store.species_table().to_pylist() if r["species"]}
            if model.enrolled is not None:
                model.species_names.update(model.enrolled.names)
            self._models[run_id] = model
        return self._models[run_id]

    # -- enrolled species ---------------------------------------------------------------
    def enroll(self, labels: str | Path, by: str | None = None):
        """Enroll the species a labels file names for stored observations (columns
        ``observation_id, species`` and optional ``genus, family, poisonous``; see
        docs/enrollment.md); needs ``write=True``. Returns the store's report
        (``enrollment_id``, ``new_species``, ``joined``, ``lines()``); models loaded
        after it answer the enrolled species."""
        from sporeprint.enrollment import enroll

        report, warnings = enroll(self.store, labels, by)
        report.warnings = warnings
        self._models.clear()
        return report

    def undo_enrollment(self, enrollment_id: int, by: str | None = None) -> dict:
        """Undo one enrollment (its record stays); models loaded after it answer as
        before the enrollment."""
        from sporeprint.enrollment import undo

        done = undo(self.store, enrollment_id, by)
        self._models.clear()
        return done

    def enrollments(self) -> pa.Table:
        """Every enrollment's record (who, when, which file and its digest, undone when)."""
        return self.store.enrollments()

    def enrolled_species(self) -> pa.Table:
        """The enrolled species in force, with their poison status (null = unknown,
        treated as possibly poisonous)."""
        return self.store.enrolled_species()


class Search:
    """A look-alike query being built; nothing runs until ``to_arrow``/``to_list``."""

    def __init__(self, db: Database, space: str, observation=None, vector=None, image=None):
        self._db, self.space = db, space
        self._observation, self._vector, self._image = observation, vector, image
        self._filters: dict = {}
        self._k = 10
        self._kind = "auto"
        self._selection = "all"
        self.space_why = "given"
        self.info = None

    def where(self, **filters) -> Search:
        """Filters: species, genus, family, poisonous (True/False, or "yes"/"no" as on the
        command line), date_from, date_to, near=(lat, lon), radius_km, role, split.
        Invalid values raise at once."""
        from store import SearchFilters

        p = filters.get("poisonous")
        if isinstance(p, str) and p.strip().lower() in POISONOUS_WORDS:
            filters = {**filters, "poisonous": POISONOUS_WORDS[p.strip().lower()]}
        merged = {**self._filters, **filters}
        SearchFilters(**merged)  # validates names and values now
        self._filters = merged
        return self

    def limit(self, k: int) -> Search:
        if not isinstance(k, (int, np.integer)) or k <= 0:
            raise SporeprintError(f"limit {k!r} must be a positive number of observations")
        self._k = int(k)
        return self

    def using(self, kind: str = "auto", where: str = "all") -> Search:
        """Search a saved index of ``kind`` (exact, hnsw, ivf_flat, ivf_pq; ``auto`` plans by
        the store's size) over selection ``where`` (default: every image)."""
        self._kind, self._selection = kind, where
        return self

    def _query(self) -> tuple[np.ndarray, list[int] | None]:
        from sporeprint.lookalikes import observation_query

        fs = self._db.store
        if self._observation is not None:
            return observation_query(fs, self.space, int(self._observation)), [int(self._observation)]
        if self._image is not None:
            return self._db.embed([self._image], self.space), None
        v = np.asarray(self._vector, dtype=np.float32)
        if v.ndim == 2 and v.shape[0] == 1:
            v = v[0]
        if v.ndim != 1:
            raise SporeprintError(f"vector has shape {v.shape}; pass one vector (d,) or (1, d)")
        return v[None, :], None

    def to_arrow(self) -> pa.Table:
        from sporeprint.lookalikes import find_lookalikes
        from store import SearchFilters

        index, why = self._db.index(self.space, self._kind, self._selection)
        query, exclude = self._query()
        if query.shape[1] != index.dim:
            raise SporeprintError(f"query vector has dim {query.shape[1]}, space {self.space!r} "
                                  f"has {index.dim}")
        info: list = []
        hits = find_lookalikes(self._db.store, index, query, k=self._k,
                               filters=SearchFilters(**self._filters),
                               exclude_observations=exclude, info=info)[0]
        self.info = info[0]
        self.info.why = why
        self.info.space, self.info.space_why = self.space, self.space_why
        self.info.path = index.last_search.plan if index.last_search is not None else None
        return hits

    def to_pandas(self):
        return self.to_arrow().to_pandas()

    def to_list(self) -> list[dict]:
        return self.to_arrow().to_pylist()


def open(path: str | Path, write: bool = False) -> Database:  # noqa: A001 - the API's verb
    """Open a store (a DuckDB file made by ``sporeprint ingest`` or ``sporeprint demo``)."""
    return Database(path, write=write)

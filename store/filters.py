"""Search filters: which observations a look-alike search may return.

Values are checked when a :class:`SearchFilters` is made, so a typo such as
``role="trian"`` fails at once instead of returning no rows.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, fields

from .errors import InvalidValueError
from .vocabulary import PARTS, ROLES

EARTH_RADIUS_KM = 6371.0088


@dataclass
class SearchFilters:
    """Which observations may be returned; ``None`` means no constraint.

    Dates compare against the observation's year-month-day (observations with an
    incomplete date never match a date filter); ``near`` is ``(lat, lon)`` and
    needs ``radius_km``; ``split`` is a part (p1, p2, test) of the current split.
    ``poisonous=True`` keeps observations of a species on the official poisonous
    list; ``poisonous=False`` keeps those of a species known to be edible, so
    observations with no species label (or an unknown species, -1) match neither.

    >>> SearchFilters(poisonous=True, role="train").is_empty()
    False
    >>> SearchFilters(role="trian")
    Traceback (most recent call last):
    ...
    store.errors.InvalidValueError: role='trian' is not a role; use one of train, val, test, new
    """

    species: str | None = None
    genus: str | None = None
    family: str | None = None
    poisonous: bool | None = None
    date_from: dt.date | str | None = None
    date_to: dt.date | str | None = None
    near: tuple[float, float] | None = None
    radius_km: float | None = None
    role: str | None = None
    split: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check (and normalise) every value; raises :class:`InvalidValueError`."""
        for name in ("species", "genus", "family"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InvalidValueError(f"{name}={value!r} must be a non-empty name as stored "
                                        "in the metadata (e.g. genus='Amanita')")
        if self.poisonous is not None and not isinstance(self.poisonous, bool):
            raise InvalidValueError(f"poisonous={self.poisonous!r} must be True, False or None "
                                    "(no constraint)")
        for name in ("date_from", "date_to"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _date(value, name))
        if self.date_from is not None and self.date_to is not None \
                and self.date_from > self.date_to:
            raise InvalidValueError(f"date_from={self.date_from} is after date_to={self.date_to}; "
                                    "swap them")
        if (self.near is None) != (self.radius_km is None):
            raise InvalidValueError("near and radius_km go together; pass both "
                                    "(--near LAT,LON --radius-km R)")
        if self.near is not None:
            try:
                lat, lon = (float(v) for v in self.near)
                radius = float(self.radius_km)
            except (TypeError, ValueError) as exc:
                raise InvalidValueError(
                    f"near={self.near!r} radius_km={self.radius_km!r}: expected (latitude, "
                    "longitude) and a radius in km, all numbers") from exc
            if not (-90 <= lat <= 90 and -180 <= lon <= 180) or not (
                    math.isfinite(radius) and radius > 0):
                raise InvalidValueError(
                    f"near={self.near} radius_km={self.radius_km} is out of range; latitude in "
                    "[-90, 90], longitude in [-180, 180], radius > 0")
            self.near, self.radius_km = (lat, lon), radius
        if self.role is not None and self.role not in ROLES:
            raise InvalidValueError(f"role={self.role!r} is not a role; use one of "
                                    f"{', '.join(ROLES)}")
        if self.split is not None and self.split not in PARTS:
            raise InvalidValueError(f"split={self.split!r} is not a split part; use one of "
                                    f"{', '.join(PARTS)}")

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def sql(self, split_seed: int | None = None) -> tuple[str, list]:
        """A WHERE clause over ``o`` (observations) and ``s`` (species, LEFT JOINed) plus its
        bound values; ``split_seed`` is needed when ``split`` is set."""
        self.validate()
        clauses, params = [], []
        for name in ("species", "genus", "family", "role"):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f'o."{name}" = ?')
                params.append(str(value))
        if self.poisonous is not None:
            clauses.append("s.poisonous = ?")  # NULL (unlabelled) matches neither value
            params.append(bool(self.poisonous))
        for name, op in (("date_from", ">="), ("date_to", "<=")):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"try(make_date(o.year, o.month, o.day)) {op} ?")
                params.append(value)
        if self.near is not None:
            lat, lon = self.near
            clauses.append(
                "2 * ? * asin(sqrt(pow(sin(radians(o.latitude - ?) / 2), 2) + cos(radians(?)) * "
                "cos(radians(o.latitude)) * pow(sin(radians(o.longitude - ?) / 2), 2))) <= ?")
            params += [EARTH_RADIUS_KM, lat, lat, lon, float(self.radius_km)]
        if self.split is not None:
            if split_seed is None:
                raise InvalidValueError("a split filter needs the store's split seed")
            clauses.append("o.observation_id IN (SELECT observation_id FROM splits "
                           "WHERE part = ? AND seed = ?)")
            params += [str(self.split), int(split_seed)]
        return (" AND ".join(clauses) or "TRUE"), params


def _date(value, name: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise InvalidValueError(f"{name}={value!r} is not a date; use YYYY-MM-DD") from exc

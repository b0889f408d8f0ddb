"""Search requests and results: parsing user input, paging, opening what was found."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from insitu.catalog.models import DatasetRecord, parse_text, time_key
from insitu.errors import InvalidQuery

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import xarray as xr

    from insitu.catalog.index import SearchIndex

__all__ = ["OpensDatasets", "SearchResult", "parse_bbox", "parse_text", "parse_time_range"]

_DATE = re.compile(
    r"^\s*(-?\d{1,6})(?:-(\d{1,2})(?:-(\d{1,2})(?:[T ](\d{1,2})(?::(\d{2})(?::(\d{2}))?)?)?)?)?\s*$"
)


def _bound(value: Any, end: bool) -> int:
    if value is None or value == "":
        return (10**6 - 1) * 10**10 if end else -(10**6 - 1) * 10**10
    if isinstance(value, datetime | date) or hasattr(value, "calendar"):
        return time_key(
            value.year,
            value.month,
            value.day,
            getattr(value, "hour", 0),
            getattr(value, "minute", 0),
            getattr(value, "second", 0),
        )
    m = _DATE.match(str(value))
    if not m:
        raise InvalidQuery(
            f"Time {value!r} is not a date. Use YYYY, YYYY-MM, YYYY-MM-DD or "
            "YYYY-MM-DDThh:mm:ss, e.g. 1990-01 or 2000-12-31."
        )
    year = int(m.group(1))
    month = int(m.group(2) or (12 if end else 1))
    day = int(m.group(3) or (31 if end else 1))
    hour = int(m.group(4) or (23 if end else 0))
    minute = int(m.group(5) or (59 if end else 0))
    second = int(m.group(6) or (59 if end else 0))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        raise InvalidQuery(f"Time {value!r} has a month, day or clock value out of range.")
    return time_key(year, month, day, hour, minute, second)


def parse_time_range(start: Any, end: Any) -> tuple[int, int]:
    """Sortable keys of a time range; partial dates cover their whole period.

    ``('1990', '1999')`` covers 1990-01-01T00:00:00 to 1999-12-31T23:59:59.
    """
    lo, hi = _bound(start, end=False), _bound(end, end=True)
    if lo > hi:
        raise InvalidQuery(f"Time range {start!r} to {end!r} ends before it starts; swap them.")
    return lo, hi


def parse_bbox(value: str | Sequence[float]) -> tuple[float, float, float, float]:
    """``west,south,east,north`` in degrees, as text or four numbers."""
    parts: Sequence[Any] = value.split(",") if isinstance(value, str) else value
    try:
        w, s, e, n = (float(p) for p in parts)
    except (TypeError, ValueError) as exc:
        raise InvalidQuery(
            f"Bounding box {value!r} is not four numbers. Give west,south,east,north in "
            "degrees, e.g. -10,35,30,70."
        ) from exc
    if not (-90 <= s <= n <= 90):
        raise InvalidQuery(
            f"Bounding box {value!r}: latitudes must satisfy -90 <= south <= north <= 90."
        )
    return w, s, e, n


class OpensDatasets(Protocol):
    """What a result opens its matches with: the :class:`~insitu.catalog.Catalog` that
    searched (named by role, so this module does not import the one that imports it)."""

    def open_dataset(self, dataset_id: str, *, time: slice | None = None) -> xr.Dataset: ...


@dataclass
class SearchResult:
    """One page of datasets matching a search, the total, and facet counts over all matches.

    Iterating yields the page's :class:`DatasetRecord` objects. :meth:`to_xarray` opens
    the matches lazily.
    """

    total: int
    results: list[DatasetRecord]
    facet_counts: dict[str, dict[str, int]]
    matches: Sequence[int] | npt.NDArray[np.intp] = field(repr=False, default=())
    index: SearchIndex | None = field(repr=False, default=None)
    catalog: OpensDatasets | None = field(repr=False, default=None)

    @property
    def all_ids(self) -> list[str]:
        """Ids of every matching dataset, on all pages, in the result's order."""
        if self.index is None:
            return self.dataset_ids
        return self.index.dataset_ids(self.matches)

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[DatasetRecord]:
        return iter(self.results)

    @property
    def dataset_ids(self) -> list[str]:
        """Ids of the datasets on this page."""
        return [r.dataset_id for r in self.results]

    def to_json(self) -> dict[str, Any]:
        """``{"total": N, "results": [...], "facets": {...}}``, ready for ``json.dumps``."""
        return {
            "total": self.total,
            "results": [r.summary() for r in self.results],
            "facets": self.facet_counts,
        }

    def to_dataset_dict(self, *, time: slice | None = None) -> dict[str, xr.Dataset]:
        """Every matching dataset (all pages), opened lazily, keyed by dataset id."""
        if self.catalog is None:
            raise InvalidQuery("This result is detached from its catalog; search again.")
        return {ds: self.catalog.open_dataset(ds, time=time) for ds in self.all_ids}

    def to_xarray(self, *, time: slice | None = None) -> xr.Dataset | dict[str, xr.Dataset]:
        """The matching dataset, or a dict keyed by dataset id when several match."""
        if self.total == 0:
            raise InvalidQuery("The search matched no dataset; there is nothing to open.")
        opened = self.to_dataset_dict(time=time)
        return next(iter(opened.values())) if len(opened) == 1 else opened

"""The catalog's records: collections, files, datasets and scan reports.

Plain frozen dataclasses, so stores, the search index and the web layer share one shape.
Times are kept twice: as ISO-like text in the file's own calendar (``1850-01-16T12:00:00``)
and as a sortable integer ``YYYYMMDDhhmmss`` (:func:`time_key`) that compares correctly
across calendars for range queries.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

from insitu.errors import InvalidQuery

__all__ = [
    "Collection",
    "DatasetRecord",
    "FileRecord",
    "FileState",
    "FileStatus",
    "IndexRow",
    "LocatedFile",
    "ScanReport",
    "VariableInfo",
    "parse_text",
    "time_key",
    "words",
]

_WORD = re.compile(r"[^\W_]+")  # letters and digits: '_', '.', '-' and blanks separate words


def words(text: str) -> list[str]:
    """The lowercase words of ``text``, as the catalog's text index sees them.

    ``'air_temperature'`` is two words, ``air`` and ``temperature``; so is
    ``'MPI-ESM1-2-LR'`` four (``mpi esm1 2 lr``).
    """
    return _WORD.findall(text.lower())


def parse_text(text: str) -> list[list[str]]:
    """The phrases of a free-text search: one per blank-separated term, each the term's
    words (:func:`words`), the last one a word's beginning.

    A dataset matches when its text has every phrase: ``'air_temp'`` finds
    ``air_temperature``, ``'tas'`` finds ``tas`` and ``tasmax``, and ``'perature'`` finds
    nothing (words and their beginnings, not any substring).
    """
    phrases = []
    for term in text.split():
        found = words(term)
        if not found:
            raise InvalidQuery(
                f"Search term {term!r} (in {text!r}) has no word to look for; give letters "
                "or digits, e.g. 'air_temperature' or 'tas'."
            )
        phrases.append(found)
    return phrases


class FileStatus(enum.StrEnum):
    """What the scan made of a file. Everything but ``OK`` is listed by ``catalog problems``."""

    OK = "ok"
    BAD_PATH = "bad_path"  # the path does not fit the collection's template
    UNREADABLE = "unreadable"  # empty, truncated, corrupt or not NetCDF/HDF5
    DENIED = "denied"  # permission denied
    LOOP = "symlink_loop"  # a symbolic link that leads back into itself
    BROKEN_LINK = "broken_link"  # a symbolic link to nothing
    BAD_NAME = "bad_name"  # a name that is not valid UTF-8
    BAD_TIME = "bad_time"  # readable, but its time axis cannot be decoded


@dataclass(frozen=True, slots=True)
class Collection:
    """A registered archive root with its path template."""

    name: str
    root: str
    template: str
    public: bool = False


@dataclass(frozen=True, slots=True)
class FileState:
    """What an incremental rescan compares: size and modification time."""

    size: int
    mtime_ns: int
    status: FileStatus
    dataset_id: str | None


@dataclass(frozen=True, slots=True)
class VariableInfo:
    """One variable of a file: its name, dimensions, shape, type and CF attributes."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def units(self) -> str | None:
        """The ``units`` attribute, if any."""
        value = self.attrs.get("units")
        return str(value) if value is not None else None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the stores keep variables as JSON)."""
        return {
            "name": self.name,
            "dims": list(self.dims),
            "shape": list(self.shape),
            "dtype": self.dtype,
            "attrs": self.attrs,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VariableInfo:
        """Inverse of :meth:`to_json`."""
        return cls(
            data["name"],
            tuple(data["dims"]),
            tuple(data["shape"]),
            data["dtype"],
            dict(data.get("attrs", {})),
        )


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One file of a collection, or one problem met while scanning it.

    ``path`` is relative to the collection root, with '/' separators. For files that
    could not be read, ``status`` and ``reason`` say why and most other fields are empty.
    ``time_values`` holds the raw (encoded) values of the time coordinate as float64 bytes,
    in ``time_units`` and ``calendar``, so that a dataset's time axis can be assembled
    without opening its files.
    """

    collection: str
    path: str
    size: int
    mtime_ns: int
    status: FileStatus
    reason: str = ""
    dataset_id: str | None = None
    master_id: str | None = None
    version: str | None = None
    facets: dict[str, str] = field(default_factory=dict)
    data_model: str | None = None
    dims: dict[str, int] = field(default_factory=dict)
    variables: tuple[VariableInfo, ...] = ()
    global_attrs: dict[str, Any] = field(default_factory=dict)
    time_var: str | None = None
    time_units: str | None = None
    calendar: str | None = None
    time_start: str | None = None
    time_end: str | None = None
    tkey_start: int | None = None
    tkey_end: int | None = None
    n_times: int = 0
    time_values: bytes | None = None
    bbox: tuple[float, float, float, float] | None = None  # west, south, east, north

    @property
    def ok(self) -> bool:
        """True when the file is indexed as part of a dataset."""
        return self.status is FileStatus.OK


@dataclass(frozen=True, slots=True)
class LocatedFile:
    """One indexed file of a dataset: its absolute path on this machine, and its record
    (whose ``path`` is relative to the collection root)."""

    path: str
    record: FileRecord


@dataclass(frozen=True, slots=True)
class DatasetRecord:
    """An aggregation of files that share every dataset-level facet.

    ``facets`` maps each facet to its values: one value for dataset-level facets, possibly
    several for file-level ones (the variables of a CMIP5 dataset).
    """

    dataset_id: str
    collection: str
    master_id: str
    version: str
    latest: bool
    facets: dict[str, list[str]]
    n_files: int
    size: int
    variables: tuple[VariableInfo, ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict)
    calendar: str | None = None
    time_start: str | None = None
    time_end: str | None = None
    tkey_start: int | None = None
    tkey_end: int | None = None
    bbox: tuple[float, float, float, float] | None = None

    def summary(self) -> dict[str, Any]:
        """A JSON-ready dict of what a search result shows."""
        return {
            "dataset_id": self.dataset_id,
            "collection": self.collection,
            "version": self.version,
            "latest": self.latest,
            "facets": {k: v[0] if len(v) == 1 else v for k, v in self.facets.items()},
            "n_files": self.n_files,
            "size": self.size,
            "variables": [v.name for v in self.variables],
            "time_start": self.time_start,
            "time_end": self.time_end,
            "calendar": self.calendar,
            "bbox": list(self.bbox) if self.bbox else None,
        }

    def search_text(self) -> str:
        """What free-text search looks in, as words separated by one blank: the dataset
        id, the variables' names, long and standard names, the string and number
        attributes."""
        parts = [self.dataset_id]
        for v in self.variables:
            parts.append(v.name)
            for key in ("long_name", "standard_name"):
                value = v.attrs.get(key)
                if isinstance(value, str):
                    parts.append(value)
        parts.extend(str(v) for v in self.attrs.values() if isinstance(v, str | int | float))
        return " ".join(words(" ".join(parts)))


@dataclass(frozen=True, slots=True)
class IndexRow:
    """What the search index keeps of one dataset: the store's row number (``row``, how
    pages of results are read back) and the fields searched and sorted on."""

    row: int
    dataset_id: str
    collection: str
    version: str
    latest: bool
    facets: dict[str, list[str]]
    n_files: int
    size: int
    tkey_start: int | None
    tkey_end: int | None
    bbox: tuple[float, float, float, float] | None


@dataclass(slots=True)
class ScanReport:
    """What one scan of a collection did, with counts per outcome."""

    collection: str
    seen: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    aliases: int = 0
    problems: dict[str, int] = field(default_factory=dict)
    datasets: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        """One line for the end of a scan."""
        probs = sum(self.problems.values())
        detail = ", ".join(f"{n} {k}" for k, n in sorted(self.problems.items()))
        return (
            f"{self.collection}: {self.seen} files seen, {self.new} new, {self.changed} changed, "
            f"{self.unchanged} unchanged, {self.removed} removed; {self.datasets} datasets; "
            f"{probs} problems" + (f" ({detail})" if detail else "") + f"; {self.seconds:.1f} s"
        )


def time_key(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> int:
    """Sortable integer ``YYYYMMDDhhmmss`` of a calendar date (any CF calendar)."""
    return ((((year * 100 + month) * 100 + day) * 100 + hour) * 100 + minute) * 100 + second

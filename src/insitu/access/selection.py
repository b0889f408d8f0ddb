"""Query parameters that select part of a dataset, shared by subsets and quicklooks.

Parsing is pure (text in, frozen values out) and happens before anything is opened, so a
malformed value is a 400 that names it and shows the expected form. Selecting works on
the lazy dataset from :meth:`insitu.catalog.Catalog.open_dataset`: coordinates are small
and in memory, so every check here (does the range select anything, where is the nearest
point) runs without reading data.

Conventions (the OpenAPI descriptions repeat them):

- a coordinate range is ``LO/HI`` in the coordinate's units, inclusive, either side may
  be empty (``lat=-10/10``, ``level=/50000``); a single value selects the nearest grid
  point (``level=85000``) and keeps the dimension (length 1);
- longitudes are circular: ``lon=350/10`` crosses the date line and the answer's
  longitudes run continuously from -10 to 10;
- times are ``START/END`` dates (``1990``, ``1990-01``, ``1990-01-16T12:00:00``); a
  partial date covers its whole period; one date selects the steps within it;
- index ranges are ``DIM:START:STOP[:STEP]`` or ``DIM:INDEX``, comma-separated, with
  Python's meaning (zero-based, STOP excluded, negative counts from the end).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from insitu.catalog import parse_time_range, time_key
from insitu.errors import InvalidQuery
from insitu.formats import Axes, axes

if TYPE_CHECKING:
    import xarray as xr

    from insitu.catalog import DatasetRecord

__all__ = [
    "Range",
    "TimeRange",
    "bounds_names",
    "check_parameters",
    "data_variables",
    "dataset_axes",
    "main_variable",
    "nearest_index",
    "parse_isel",
    "parse_point",
    "parse_range",
    "parse_time",
    "parse_variables",
    "select_coordinate",
    "time_key_of",
    "time_text",
]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.@+-]{0,127}$")
_DATE = re.compile(
    r"^(-?\d{1,6})(?:-(\d{1,2})(?:-(\d{1,2})(?:[T ](\d{1,2})(?::(\d{2})(?::(\d{2}))?)?)?)?)?$"
)


@dataclass(frozen=True, slots=True)
class Range:
    """An inclusive coordinate range (either end may be open) or one point (``lo == hi``)."""

    name: str
    lo: float | None
    hi: float | None
    point: bool = False

    def text(self) -> str:
        """The range as the query parameter spells it."""
        if self.point:
            return f"{self.name}={self.lo:g}"
        lo = "" if self.lo is None else f"{self.lo:g}"
        hi = "" if self.hi is None else f"{self.hi:g}"
        return f"{self.name}={lo}/{hi}"


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Dates as given (canonical zero-padded text) with their sortable keys."""

    start: str | None
    end: str | None
    lo: int
    hi: int

    def text(self) -> str:
        """The range as the query parameter spells it."""
        return f"time={self.start or ''}/{self.end or ''}"


def _number(name: str, text: str, form: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidQuery(f"{name}={text!r} is not a number; expected {form}.") from None
    if not math.isfinite(value):
        raise InvalidQuery(f"{name}={text!r} is not a finite number; expected {form}.")
    return value


def parse_range(name: str, value: str | None) -> Range | None:
    """``LO/HI`` (either side may be empty) or one value, as numbers."""
    if value is None:
        return None
    form = f"LO/HI or one value, e.g. {name}={'-10/10' if name != 'level' else '85000'}"
    text = value.strip()
    lo_text, sep, hi_text = text.partition("/")
    if not sep:
        point = _number(name, text, form)
        out = Range(name, point, point, point=True)
    else:
        if "/" in hi_text or not (lo_text.strip() or hi_text.strip()):
            raise InvalidQuery(f"{name}={value!r} is not a range; expected {form}.")
        lo = _number(name, lo_text.strip(), form) if lo_text.strip() else None
        hi = _number(name, hi_text.strip(), form) if hi_text.strip() else None
        if name != "lon" and lo is not None and hi is not None and lo > hi:
            raise InvalidQuery(
                f"{name}={value!r} ends before it starts; write it as {hi:g}/{lo:g}."
            )
        out = Range(name, lo, hi)
    if name == "lat":
        for end in (out.lo, out.hi):
            if end is not None and not -90 <= end <= 90:
                raise InvalidQuery(f"lat={value!r}: latitudes lie between -90 and 90 degrees.")
    return out


def check_parameters(given: Iterable[str], known: Iterable[str]) -> None:
    """Refuse query parameters a route does not know: a typo must not widen a selection."""
    import difflib

    allowed = sorted({*known, "token"})
    for name in given:
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise InvalidQuery(
                f"Unknown parameter {name!r}.{hint} This route takes {', '.join(allowed)}."
            )


def parse_point(name: str, value: str | None) -> float | None:
    """One coordinate value (``lat=45.5``), checked like :func:`parse_range`."""
    rng = parse_range(name, value)
    if rng is None:
        return None
    if not rng.point or rng.lo is None:
        raise InvalidQuery(f"{name}={value!r} must be one value here, e.g. {name}=45.5.")
    return rng.lo


def _canonical_date(text: str) -> str:
    m = _DATE.match(text)
    if not m:  # parse_time_range has already refused it; this keeps mypy honest
        raise InvalidQuery(f"Time {text!r} is not a date.")
    year, *rest = m.groups()
    out = f"{int(year):04d}"
    for sep, part in zip(("-", "-", "T", ":", ":"), rest, strict=True):
        if part is None:
            break
        out += f"{sep}{int(part):02d}"
    return out


def parse_time(value: str | None) -> TimeRange | None:
    """``START/END`` or one date; partial dates cover their period."""
    if value is None:
        return None
    text = value.strip()
    start, sep, end = text.partition("/")
    start, end = start.strip(), end.strip()
    if not sep:
        end = start
    if "/" in end or not (start or end):
        raise InvalidQuery(
            f"time={value!r} is not a date range; expected START/END or one date, "
            "e.g. time=1990-01/1990-12 or time=1990-07."
        )
    lo, hi = parse_time_range(start or None, end or None)
    return TimeRange(
        _canonical_date(start) if start else None, _canonical_date(end) if end else None, lo, hi
    )


def parse_variables(value: str | None) -> tuple[str, ...] | None:
    """Comma-separated variable names, or None for the default."""
    if value is None or not value.strip():
        return None
    names = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    for name in names:
        if not _NAME.match(name):
            raise InvalidQuery(
                f"variables={value!r}: {name!r} is not a variable name; expected names "
                "separated by commas, e.g. variables=ta,tas."
            )
    return names


def parse_isel(value: str | None) -> dict[str, slice]:
    """``DIM:START:STOP[:STEP]`` or ``DIM:INDEX`` items, comma-separated."""
    if value is None or not value.strip():
        return {}
    form = "DIM:START:STOP[:STEP] or DIM:INDEX separated by commas, e.g. isel=time:0:12,plev:0"
    out: dict[str, slice] = {}
    for item in value.split(","):
        dim, *parts = (p.strip() for p in item.split(":"))
        if not dim or not _NAME.match(dim) or not 1 <= len(parts) <= 3:
            raise InvalidQuery(f"isel={value!r}: {item.strip()!r} is not {form}.")
        try:
            nums = [int(p) if p else None for p in parts]
        except ValueError:
            raise InvalidQuery(
                f"isel={value!r}: {item.strip()!r} has a part that is not an integer; "
                f"expected {form}."
            ) from None
        if any(n is not None and abs(n) > 2**53 for n in nums):
            raise InvalidQuery(f"isel={value!r}: index {item.strip()!r} is out of range.")
        if dim in out:
            raise InvalidQuery(f"isel={value!r} names dimension {dim!r} twice; give it once.")
        if len(nums) == 1:
            index = nums[0]
            if index is None:
                raise InvalidQuery(f"isel={value!r}: {item.strip()!r} is not {form}.")
            # One index keeps its dimension (length 1), like a one-value coordinate range.
            out[dim] = slice(index, index + 1 if index != -1 else None)
        else:
            step = nums[2] if len(nums) == 3 else None
            if step is not None and step <= 0:
                raise InvalidQuery(f"isel={value!r}: the step of {dim!r} must be positive.")
            out[dim] = slice(nums[0], nums[1], step)
    return out


def bounds_names(ds: xr.Dataset) -> set[str]:
    """Variables that are the cell bounds of a coordinate (CF ``bounds`` attribute)."""
    names = set()
    for var in ds.variables.values():
        b = var.attrs.get("bounds")
        if isinstance(b, str) and b in ds.variables:
            names.add(b)
    return names


def data_variables(ds: xr.Dataset) -> list[str]:
    """Data variables that are not cell bounds (what a user asks for by default)."""
    skip = bounds_names(ds)
    return [str(v) for v in ds.data_vars if v not in skip]


def main_variable(ds: xr.Dataset, record: DatasetRecord) -> str:
    """The dataset's own variable (``variable_id``) or its largest non-bounds variable."""
    names = data_variables(ds)
    if not names:
        raise InvalidQuery(f"Dataset {record.dataset_id!r} has no data variables.")
    own = record.attrs.get("variable_id") or ds.attrs.get("variable_id")
    if isinstance(own, str) and own in names:
        return own
    return max(names, key=lambda n: (ds[n].ndim, ds[n].size))


def dataset_axes(ds: xr.Dataset, names: Iterable[str]) -> Axes:
    """The time, lat, lon and vertical dimensions of the variables ``names``."""
    found: dict[str, str | None] = {"time": None, "lat": None, "lon": None, "vertical": None}
    for name in names:
        ax = axes(ds[name])
        for key in found:
            dim = getattr(ax, key)
            if dim is None:
                continue
            if found[key] not in (None, dim):
                raise InvalidQuery(
                    f"Variables {sorted(names)} use different {key} dimensions "
                    f"({found[key]!r} and {dim!r}); ask for them separately, or select "
                    "by index with isel=DIM:START:STOP."
                )
            found[key] = dim
    return Axes(**found)


def _coverage(ds: xr.Dataset, dim: str) -> str:
    values = np.asarray(ds[dim].values)
    units = ds[dim].attrs.get("units", "")
    return f"{values.min():g} to {values.max():g} {units}".rstrip() + f" ({values.size} points)"


def nearest_index(
    ds: xr.Dataset, dim: str, value: float, *, circular: bool = False, label: str | None = None
) -> int:
    """Position of the grid point nearest ``value`` along ``dim``, which must be near the grid.

    "Near" is within half the grid spacing of its ends, so a regional grid does not answer
    a point on the other side of the globe with its edge.
    """
    coord = np.asarray(ds[dim].values, dtype="float64")
    if coord.size == 0:
        raise InvalidQuery(f"Dimension {dim!r} is empty here; nothing can be selected on it.")
    dist = np.abs(coord - value)
    if circular:
        dist = np.minimum(dist % 360.0, 360.0 - dist % 360.0)
    i = int(np.argmin(dist))
    spacing = float(np.max(np.abs(np.diff(coord)))) if coord.size > 1 else 0.0
    if dist[i] > max(spacing / 2.0, 1e-9 * max(1.0, abs(value))) and not (
        circular and _is_global(coord)
    ):
        raise InvalidQuery(
            f"{label or dim}={value:g} lies outside the grid of this dataset: {dim!r} covers "
            f"{_coverage(ds, dim)}. Choose a value inside it."
        )
    return i


def _is_global(lon: np.ndarray[Any, Any]) -> bool:
    if lon.size < 2:
        return False
    step = float(np.max(np.abs(np.diff(np.sort(lon)))))
    return float(np.ptp(lon)) + step >= 360.0 - 1e-6


def select_coordinate(
    ds: xr.Dataset, dim: str, rng: Range, *, circular: bool = False
) -> xr.Dataset:
    """``ds`` restricted to ``rng`` along the 1-D coordinate ``dim``; 400 if nothing is left.

    Longitudes (``circular``) are compared modulo 360 and relabelled to run continuously
    from the range's start, so the answer's coordinate stays monotonic as CF requires;
    their bounds move with them.
    """
    if dim not in ds.coords or ds[dim].ndim != 1:
        raise InvalidQuery(
            f"{rng.text()}: dimension {dim!r} has no 1-D coordinate to select on; select by "
            f"index instead, e.g. isel={dim}:0:10."
        )
    if rng.point:
        assert rng.lo is not None
        i = nearest_index(ds, dim, rng.lo, circular=circular, label=rng.name)
        return ds.isel({dim: slice(i, i + 1)})
    coord = np.asarray(ds[dim].values, dtype="float64")
    if circular and rng.lo is not None and rng.hi is not None:
        width = (rng.hi - rng.lo) % 360.0 if rng.hi - rng.lo < 360.0 else 360.0
        if rng.hi != rng.lo and width == 0.0:
            width = 360.0
        offset = (coord - rng.lo) % 360.0
        picked = np.flatnonzero(offset <= width + 1e-9)
        picked = picked[np.argsort(offset[picked], kind="stable")]
        new = rng.lo + offset[picked]
        # Keep the answer's longitudes in a familiar frame: 350/10 becomes -10..10.
        if new.size and new.max() > 360.0:
            new = new - 360.0 * math.floor(new.max() / 360.0)
        elif new.size and new.min() < -180.0:
            new = new + 360.0 * math.ceil((-180.0 - new.min()) / 360.0)
        out = _pick(ds, dim, picked, rng)
        shift = new - coord[picked]
        if np.any(shift != 0.0):
            out = _relabel(out, dim, new, shift)
        return out
    keep = np.ones(coord.shape, dtype=bool)
    if rng.lo is not None:
        keep &= coord >= rng.lo
    if rng.hi is not None:
        keep &= coord <= rng.hi
    return _pick(ds, dim, np.flatnonzero(keep), rng)


def _pick(ds: xr.Dataset, dim: str, picked: np.ndarray[Any, Any], rng: Range) -> xr.Dataset:
    if picked.size == 0:
        raise InvalidQuery(
            f"{rng.text()} selects nothing: {dim!r} of this dataset covers {_coverage(ds, dim)}."
        )
    lo, hi = int(picked[0]), int(picked[-1])
    if hi - lo + 1 == picked.size and np.all(np.diff(picked) == 1):
        return ds.isel({dim: slice(lo, hi + 1)})  # a slice keeps Dask's reads contiguous
    return ds.isel({dim: picked})


def _relabel(
    ds: xr.Dataset, dim: str, values: np.ndarray[Any, Any], shift: np.ndarray[Any, Any]
) -> xr.Dataset:
    coord = ds[dim]
    out = ds.assign_coords({dim: (dim, values.astype(coord.dtype), coord.attrs)})
    out[dim].encoding = dict(coord.encoding)
    bounds = coord.attrs.get("bounds")
    if isinstance(bounds, str) and bounds in out.variables:
        b = out[bounds]
        moved = np.asarray(b.values, dtype="float64") + shift.reshape(
            [-1 if d == dim else 1 for d in b.dims]
        )
        out[bounds] = (b.dims, moved.astype(b.dtype), b.attrs)
    return out


def time_text(values: Sequence[Any] | np.ndarray[Any, Any]) -> list[str]:
    """ISO text of decoded times (datetime64 or cftime), to the second."""
    arr = np.asarray(values)
    if arr.dtype.kind == "M":
        return [str(t) for t in np.datetime_as_string(arr, unit="s")]
    return [t.isoformat() if hasattr(t, "isoformat") else str(t) for t in arr.ravel()]


def time_key_of(t: Any) -> int:
    """The catalog's sortable key (``YYYYMMDDhhmmss``) of one decoded time."""
    if isinstance(t, np.datetime64):
        t = t.astype("datetime64[s]").item()
    return time_key(t.year, t.month, t.day, t.hour, t.minute, t.second)

"""Reading NetCDF headers: variables, dimensions, attributes, time coverage, spatial bounds.

:func:`read_headers` runs in the scan's worker processes; it never raises for a bad file,
it returns the file's status and the reason instead. Only headers and the small coordinate
variables (time, latitude, longitude) are read, never the data variables.

Headers come from the file's format reader (:func:`insitu.formats.reader_for`): netCDF-4
files straight from their HDF5 layout (about twice as fast as netCDF4-python), classic
files, unusual layouts and every file that fails there through netCDF4-python, which also
says why a bad file cannot be read. Both give the same header.
"""

from __future__ import annotations

import errno
import math
import os
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import cftime
import numpy as np

from insitu._util import gc_paused
from insitu.catalog.models import FileStatus, time_key
from insitu.formats import (
    HDF5_SIGNATURE,
    Header,
    HeaderVariable,
    NetCDF4Reader,
    reader_for,
    time_axis,
    truncation,
)

__all__ = ["HeaderResult", "read_header", "read_headers"]

# (relpath, status, reason, header) where header is a JSON-ready dict or None.
HeaderResult = tuple[str, FileStatus, str, dict[str, Any] | None]

_LAT_NAMES = ("lat", "latitude", "nav_lat", "rlat_abs")
_LON_NAMES = ("lon", "longitude", "nav_lon")
_LAT_UNITS = ("degrees_north", "degree_north", "degrees_n", "degree_n", "degrees")
_LON_UNITS = ("degrees_east", "degree_east", "degrees_e", "degree_e", "degrees")


def read_headers(batch: list[tuple[str, str]], *, fast: bool = True) -> list[HeaderResult]:
    """Read the headers of ``(relpath, abspath)`` pairs; one result per pair, in order.

    ``fast=False`` skips the HDF5 reader and opens every file with netCDF4-python (the
    tests compare the two).
    """
    # A batch makes tens of thousands of short-lived, acyclic objects; the cyclic
    # collector would keep re-walking the worker's whole heap (numpy, netCDF4) for them.
    with gc_paused():
        return _share(_finish([_read(rel, path, fast) for rel, path in batch]))


def read_header(relpath: str, path: str, *, fast: bool = True) -> HeaderResult:
    """Read one file's header, or say why it cannot be read."""
    return _finish([_read(relpath, path, fast)])[0]


def _share(results: list[HeaderResult]) -> list[HeaderResult]:
    """The results, with files whose variables (or dimensions) equal the previous file's
    holding that very list: pickle then sends it once, and the scan turns it into records
    and JSON once (files of a dataset share them, and come one after another)."""
    previous: dict[str, Any] = {}
    for _, _, _, header in results:
        if header is None:
            continue
        for key in ("variables", "dims"):
            if key in previous and header[key] == previous[key]:
                header[key] = previous[key]
            else:
                previous[key] = header[key]
    return results


@dataclass(slots=True)
class _Span:
    """A time axis whose first and last dates are still to be decoded (by :func:`_finish`,
    for a whole batch at once: ``cftime.num2date`` costs 60 µs a call, 2 µs a value)."""

    units: str
    calendar: str
    first: float
    last: float


_Read = tuple[HeaderResult, _Span | None]


def _finish(read: list[_Read]) -> list[HeaderResult]:
    """The results with the time coverage of every file decoded, one call per time units."""
    out = [result for result, _ in read]
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (_, span) in enumerate(read):
        if span is not None:
            groups.setdefault((span.units, span.calendar), []).append(i)
    for (units, calendar), members in groups.items():
        values: list[float] = []
        for i in members:
            span = read[i][1]
            assert span is not None
            values += (span.first, span.last)
        try:
            dates = list(cftime.num2date(values, units, calendar=calendar))
        except Exception:
            dates = []  # some file's values cannot be decoded: decode each alone, for its reason
        for k, i in enumerate(members):
            if dates:
                out[i] = _dated(out[i], dates[2 * k], dates[2 * k + 1])
                continue
            span = read[i][1]
            assert span is not None
            try:
                first, last = cftime.num2date([span.first, span.last], units, calendar=calendar)
            except Exception as exc:
                rel, _, _, header = out[i]
                out[i] = (
                    rel,
                    FileStatus.BAD_TIME,
                    (
                        f"cannot decode time {units!r} in calendar {calendar!r}: {exc}; "
                        "fix the file's time units or calendar attribute"
                    ),
                    header,
                )
            else:
                out[i] = _dated(out[i], first, last)
    return out


def _dated(result: HeaderResult, first: Any, last: Any) -> HeaderResult:
    header = result[3]
    assert header is not None
    header["time_start"] = _iso(first)
    header["time_end"] = _iso(last)
    header["tkey_start"] = _key(first)
    header["tkey_end"] = _key(last)
    return result


def _read(relpath: str, path: str, fast: bool) -> _Read:
    """One file's header with its time axis still to decode, or why it cannot be read."""
    opened = ExitStack()
    try:
        reader = reader_for(path)
        if not fast and isinstance(reader, NetCDF4Reader):
            reader = _LIBRARY_HEADERS
        raw = opened.enter_context(reader.header(path))
    except PermissionError as exc:
        return (relpath, FileStatus.DENIED, _denied_reason(exc), None), None
    except OSError as exc:
        if exc.errno == errno.EACCES:
            return (relpath, FileStatus.DENIED, _denied_reason(exc), None), None
        return (relpath, FileStatus.UNREADABLE, _unreadable_reason(path, exc), None), None
    except Exception as exc:  # netCDF-C reports some corruptions as other errors
        return (relpath, FileStatus.UNREADABLE, _unreadable_reason(path, exc), None), None
    try:
        with opened:
            return _describe(relpath, raw)
    except Exception as exc:
        reason = (
            f"header opened but reading it failed ({_error_text(exc)}); the file is probably "
            "corrupt: re-copy it from its source"
        )
        return (relpath, FileStatus.UNREADABLE, reason, None), None


_LIBRARY_HEADERS = NetCDF4Reader(fast_header=False)  # read_headers(fast=False): netCDF-C


def _error_text(exc: BaseException) -> str:
    """The library's message without the file name it repeats."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _denied_reason(exc: OSError) -> str:
    detail = _error_text(exc)
    extra = "" if detail.lower() == "permission denied" else f" ({detail})"
    return f"permission denied{extra}: give the scanning user read permission on the file"


def _unreadable_reason(path: str, exc: BaseException) -> str:
    if os.path.isdir(path):  # a *.zarr directory (the reader's message says what is wrong)
        return f"Zarr store that cannot be read: {_error_text(exc)}"
    try:
        with open(path, "rb") as fh:
            magic = fh.read(8)
    except OSError:
        magic = b""
    if not magic:
        return "empty file (0 bytes): not NetCDF; remove it or re-copy it from its source"
    if magic.startswith(b"GRIB"):
        return f"GRIB file that cannot be read ({_error_text(exc)}); re-copy it from its source"
    if magic[:3] != b"CDF" and magic != HDF5_SIGNATURE:
        return (
            f"not a NetCDF or HDF5 file (starts with {magic[:4]!r}): remove it or move it "
            "out of the archive"
        )
    short = truncation(path)
    if short:
        return short
    state = "is damaged" if short is None else "is intact but netCDF cannot read the rest"
    return (
        f"corrupt NetCDF/HDF5 file: its header {state} ({_error_text(exc)}); "
        "re-copy it from its source"
    )


def _describe(relpath: str, raw: Header) -> _Read:
    by_name = {v.name: v for v in raw.variables}
    header: dict[str, Any] = {
        "data_model": raw.data_model,
        "dims": raw.dims,
        "variables": [
            {
                "name": v.name,
                "dims": list(v.dims),
                "shape": list(v.shape),
                "dtype": v.dtype,
                "attrs": v.attrs,
            }
            for v in raw.variables
        ],
        "global_attrs": raw.global_attrs,
    }
    status, reason, span = FileStatus.OK, "", None
    found = time_axis({v.name: (v.dims, v.attrs) for v in raw.variables})
    if found is None:
        reason = "no time axis: indexed as time-invariant"
    else:
        # The values and units of the variable that dates the time dimension (an auxiliary
        # coordinate for raw NEMO output), recorded under the dimension's name.
        status, reason, span = _read_time(by_name[found.source], header)
        header["time_var"] = found.dim
    header["bbox"] = _bbox(by_name)
    if raw.groups:
        names = ", ".join(repr(g) for g in raw.groups)
        note = (
            f"groups {names} are not indexed, only the root group: open one with "
            "xarray.open_dataset(path, group=NAME)"
        )
        reason = f"{reason}; {note}" if reason else note
    return (relpath, status, reason, header), span


def _read_time(var: HeaderVariable, header: dict[str, Any]) -> tuple[FileStatus, str, _Span | None]:
    units = var.attrs.get("units")
    calendar = str(var.attrs.get("calendar", "standard")).lower()
    header["calendar"] = calendar
    header["time_units"] = units
    values = np.asarray(var.read(), dtype="float64")
    header["n_times"] = int(values.size)
    if values.size == 0:
        return FileStatus.OK, "time axis is empty", None
    header["time_values"] = values.tobytes()
    if not isinstance(units, str) or " since " not in units:
        return (
            FileStatus.BAD_TIME,
            (
                f"time variable {var.name!r} has units {units!r}, not '<unit> since <date>'; "
                "fix the file's time units"
            ),
            None,
        )
    if not np.all(np.isfinite(values)):
        reason = f"time variable {var.name!r} has missing or non-finite values"
        return FileStatus.BAD_TIME, reason, None
    increasing = values.size < 2 or bool(np.all(values[1:] > values[:-1]))
    note = "" if increasing else "time values are not strictly increasing"
    return FileStatus.OK, note, _Span(units, calendar, float(values.min()), float(values.max()))


def _iso(t: Any) -> str:
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"


def _key(t: Any) -> int:
    return time_key(t.year, t.month, t.day, t.hour, t.minute, t.second)


def _coord(
    by_name: dict[str, HeaderVariable],
    standard: str,
    names: tuple[str, ...],
    units: tuple[str, ...],
) -> HeaderVariable | None:
    for name, var in by_name.items():
        attrs = var.attrs
        if attrs.get("standard_name") == standard or (
            name.lower() in names and str(attrs.get("units", "")).lower() in units
        ):
            bounds = attrs.get("bounds")
            if isinstance(bounds, str) and bounds in by_name:
                return by_name[bounds]
            return var
    return None


def _bbox(by_name: dict[str, HeaderVariable]) -> list[float] | None:
    lat = _coord(by_name, "latitude", _LAT_NAMES, _LAT_UNITS)
    lon = _coord(by_name, "longitude", _LON_NAMES, _LON_UNITS)
    if lat is None or lon is None or lat.size > 10_000_000 or lon.size > 10_000_000:
        return None
    try:
        la, lo = _floats(lat), _floats(lon)
    except Exception:
        return None
    if not (np.isfinite(la).any() and np.isfinite(lo).any()):
        return None
    # fmin/fmax skip NaN: what np.nanmin/nanmax compute, without their checks.
    lo, la = lo.ravel(), la.ravel()
    box = [
        float(np.fmin.reduce(lo)),
        float(np.fmin.reduce(la)),
        float(np.fmax.reduce(lo)),
        float(np.fmax.reduce(la)),
    ]
    return box if all(math.isfinite(v) for v in box) else None


def _floats(var: HeaderVariable) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A variable's values as float64, with fill and non-finite values as NaN."""
    values = np.array(var.read(), dtype="float64")
    attrs = var.attrs
    for key in ("_FillValue", "missing_value"):
        if key in attrs:
            fill = np.asarray(attrs[key], dtype="float64").ravel()
            values[values == fill[0] if fill.size == 1 else np.isin(values, fill)] = np.nan
    if "scale_factor" in attrs:
        values *= float(np.asarray(attrs["scale_factor"]).ravel()[0])
    if "add_offset" in attrs:
        values += float(np.asarray(attrs["add_offset"]).ravel()[0])
    values[np.abs(values) > 1e30] = np.nan  # default fill values of unflagged variables
    return values

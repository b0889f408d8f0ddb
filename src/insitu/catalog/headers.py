"""Reading NetCDF headers: variables, dimensions, attributes, time coverage, spatial bounds.

:func:`read_headers` runs in the scan's worker processes; it never raises for a bad file,
it returns the file's status and the reason instead. Only headers and the small coordinate
variables (time, latitude, longitude) are read, never the data variables.
"""

from __future__ import annotations

import errno
import math
from typing import Any

import cftime
import netCDF4
import numpy as np

from insitu.catalog.models import FileStatus, time_key

__all__ = ["HeaderResult", "read_header", "read_headers"]

# (relpath, status, reason, header) where header is a JSON-ready dict or None.
HeaderResult = tuple[str, FileStatus, str, dict[str, Any] | None]

_LAT_NAMES = ("lat", "latitude", "nav_lat", "rlat_abs")
_LON_NAMES = ("lon", "longitude", "nav_lon")


def read_headers(batch: list[tuple[str, str]]) -> list[HeaderResult]:
    """Read the headers of ``(relpath, abspath)`` pairs; one result per pair, in order."""
    return [read_header(rel, path) for rel, path in batch]


def read_header(relpath: str, path: str) -> HeaderResult:
    """Read one file's header, or say why it cannot be read."""
    try:
        ds = netCDF4.Dataset(path, "r")
    except PermissionError as exc:
        return relpath, FileStatus.DENIED, f"permission denied: {exc.strerror}", None
    except OSError as exc:
        if exc.errno == errno.EACCES:
            return relpath, FileStatus.DENIED, "permission denied", None
        return relpath, FileStatus.UNREADABLE, _unreadable_reason(path, exc), None
    except Exception as exc:  # netCDF-C reports some corruptions as other errors
        return relpath, FileStatus.UNREADABLE, _unreadable_reason(path, exc), None
    try:
        with ds:
            return _describe(relpath, ds)
    except Exception as exc:
        return relpath, FileStatus.UNREADABLE, f"header opened but reading it failed: {exc}", None


def _unreadable_reason(path: str, exc: BaseException) -> str:
    try:
        with open(path, "rb") as fh:
            magic = fh.read(8)
    except OSError:
        magic = b""
    if not magic:
        return "empty file (0 bytes): not NetCDF; remove it or re-copy it from its source"
    if magic[:3] != b"CDF" and magic[1:4] != b"HDF":
        return f"not a NetCDF or HDF5 file (starts with {magic[:4]!r}): {exc}"
    return f"corrupt or truncated NetCDF/HDF5 file: {exc}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()] if value.ndim else _jsonable(value.item())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _attrs(obj: Any) -> dict[str, Any]:
    return {k: _jsonable(obj.getncattr(k)) for k in obj.ncattrs()}


def _describe(relpath: str, ds: netCDF4.Dataset) -> HeaderResult:
    variables = []
    by_name: dict[str, Any] = {}
    for name, var in ds.variables.items():
        attrs = _attrs(var)
        by_name[name] = (var, attrs)
        variables.append({
            "name": name,
            "dims": list(var.dimensions),
            "shape": [int(n) for n in var.shape],
            "dtype": "str" if var.dtype is str else str(var.dtype),
            "attrs": attrs,
        })
    header: dict[str, Any] = {
        "data_model": ds.data_model,
        "dims": {name: len(dim) for name, dim in ds.dimensions.items()},
        "variables": variables,
        "global_attrs": _attrs(ds),
    }
    status, reason = FileStatus.OK, ""
    time_name = _find_time(by_name)
    if time_name is None:
        reason = "no time axis: indexed as time-invariant"
    else:
        status, reason = _read_time(by_name[time_name], header)
        header["time_var"] = time_name
    header["bbox"] = _bbox(by_name)
    return relpath, status, reason, header


def _find_time(by_name: dict[str, Any]) -> str | None:
    candidates = []
    for name, (var, attrs) in by_name.items():
        if var.ndim != 1 or var.dimensions[0] != name:
            continue
        units = str(attrs.get("units", ""))
        if attrs.get("axis") == "T" or attrs.get("standard_name") == "time" or name == "time":
            candidates.append(name)
        elif " since " in units:
            candidates.append(name)
    return candidates[0] if candidates else None


def _read_time(entry: tuple[Any, dict[str, Any]], header: dict[str, Any]) -> tuple[FileStatus, str]:
    var, attrs = entry
    units = attrs.get("units")
    calendar = str(attrs.get("calendar", "standard")).lower()
    header["calendar"] = calendar
    header["time_units"] = units
    var.set_auto_maskandscale(False)
    values = np.asarray(var[:], dtype="float64")
    header["n_times"] = int(values.size)
    if values.size == 0:
        return FileStatus.OK, "time axis is empty"
    header["time_values"] = values.tobytes()
    if not isinstance(units, str) or " since " not in units:
        return FileStatus.BAD_TIME, (
            f"time variable {var.name!r} has units {units!r}, not '<unit> since <date>'; "
            "fix the file's time units"
        )
    if not np.all(np.isfinite(values)):
        return FileStatus.BAD_TIME, f"time variable {var.name!r} has missing or non-finite values"
    try:
        first, last = cftime.num2date(
            [float(values.min()), float(values.max())], units, calendar=calendar
        )
    except Exception as exc:
        return FileStatus.BAD_TIME, (
            f"cannot decode time {units!r} in calendar {calendar!r}: {exc}; "
            "fix the file's time units or calendar attribute"
        )
    header["time_start"] = _iso(first)
    header["time_end"] = _iso(last)
    header["tkey_start"] = _key(first)
    header["tkey_end"] = _key(last)
    if values.size > 1 and not np.all(np.diff(values) > 0):
        return FileStatus.OK, "time values are not strictly increasing"
    return FileStatus.OK, ""


def _iso(t: Any) -> str:
    return (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T"
            f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}")


def _key(t: Any) -> int:
    return time_key(t.year, t.month, t.day, t.hour, t.minute, t.second)


def _coord(by_name: dict[str, Any], standard: str, names: tuple[str, ...],
           units: tuple[str, ...]) -> Any | None:
    for name, (var, attrs) in by_name.items():
        if attrs.get("standard_name") == standard or (
            name.lower() in names and str(attrs.get("units", "")).lower() in units
        ):
            bounds = attrs.get("bounds")
            if isinstance(bounds, str) and bounds in by_name:
                return by_name[bounds][0]
            return var
    return None


def _bbox(by_name: dict[str, Any]) -> list[float] | None:
    lat = _coord(by_name, "latitude", _LAT_NAMES,
                 ("degrees_north", "degree_north", "degrees_n", "degree_n", "degrees"))
    lon = _coord(by_name, "longitude", _LON_NAMES,
                 ("degrees_east", "degree_east", "degrees_e", "degree_e", "degrees"))
    if lat is None or lon is None or lat.size > 10_000_000 or lon.size > 10_000_000:
        return None
    try:
        la = np.ma.filled(np.ma.masked_invalid(np.ma.asarray(lat[:], dtype="float64")), np.nan)
        lo = np.ma.filled(np.ma.masked_invalid(np.ma.asarray(lon[:], dtype="float64")), np.nan)
    except Exception:
        return None
    if not (np.isfinite(la).any() and np.isfinite(lo).any()):
        return None
    box = [float(np.nanmin(lo)), float(np.nanmin(la)), float(np.nanmax(lo)), float(np.nanmax(la))]
    return box if all(math.isfinite(v) for v in box) else None

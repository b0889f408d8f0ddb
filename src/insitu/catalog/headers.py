"""Reading NetCDF headers: variables, dimensions, attributes, time coverage, spatial bounds.

:func:`read_headers` runs in the scan's worker processes; it never raises for a bad file,
it returns the file's status and the reason instead. Only headers and the small coordinate
variables (time, latitude, longitude) are read, never the data variables.
"""

from __future__ import annotations

import errno
import math
import os
import struct
from typing import Any, BinaryIO

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
        return relpath, FileStatus.DENIED, _denied_reason(exc), None
    except OSError as exc:
        if exc.errno == errno.EACCES:
            return relpath, FileStatus.DENIED, _denied_reason(exc), None
        return relpath, FileStatus.UNREADABLE, _unreadable_reason(path, exc), None
    except Exception as exc:  # netCDF-C reports some corruptions as other errors
        return relpath, FileStatus.UNREADABLE, _unreadable_reason(path, exc), None
    try:
        with ds:
            if ds.data_model.startswith("NETCDF3"):
                # netCDF-C opens a classic file cut short and reads the missing data as
                # zeros, so a truncated copy would be indexed as good data.
                short = _truncation(path)
                if short:
                    return relpath, FileStatus.UNREADABLE, short, None
            return _describe(relpath, ds)
    except Exception as exc:
        return (
            relpath,
            FileStatus.UNREADABLE,
            (
                f"header opened but reading it failed ({_error_text(exc)}); the file is probably "
                "corrupt: re-copy it from its source"
            ),
            None,
        )


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
    try:
        with open(path, "rb") as fh:
            magic = fh.read(8)
    except OSError:
        magic = b""
    if not magic:
        return "empty file (0 bytes): not NetCDF; remove it or re-copy it from its source"
    if magic[:3] != b"CDF" and magic != _HDF5_SIGNATURE:
        return (
            f"not a NetCDF or HDF5 file (starts with {magic[:4]!r}; "
            f"{_error_text(exc)}): remove it or move it out of the archive"
        )
    short = _truncation(path)
    if short:
        return short
    state = "is damaged" if short is None else "is intact but netCDF cannot read the rest"
    return (
        f"corrupt NetCDF/HDF5 file: its header {state} ({_error_text(exc)}); "
        "re-copy it from its source"
    )


# -- truncation ---------------------------------------------------------------------------
#
# A copy cut short is the most common bad file in an archive. Both formats record how long
# the file should be (HDF5 in its superblock, classic NetCDF through the offsets in its
# header), so the reason can say "truncated" and by how much instead of "corrupt".

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_HDF5_SUPERBLOCK_MAX = 64  # bytes up to the end-of-file address, offsets of 8 bytes
_MASK32 = 0xFFFFFFFF


def _truncation(path: str) -> str | None:
    """Why the file is truncated; "" if its header says it is complete; None if unknown."""
    size = 0
    what = "file"
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            magic = fh.read(8)
            fh.seek(0)
            if magic == _HDF5_SIGNATURE:
                what = "HDF5 (NetCDF-4) file"
                needed = _hdf5_needed(fh.read(_HDF5_SUPERBLOCK_MAX))
            elif magic[:3] == b"CDF":
                what = "NetCDF classic file"
                needed = _classic_needed(fh, size)
            else:
                return None
    except EOFError:
        if what.startswith("HDF5"):
            return (
                f"truncated {what}: it ends inside its superblock ({size} bytes); "
                "re-copy it from its source"
            )
        return (
            f"truncated or corrupt {what}: its header runs past the end of the file "
            f"({size} bytes); re-copy it from its source"
        )
    except (OSError, ValueError, struct.error):
        return None
    if needed is None:
        return None
    if size < needed:
        return (
            f"truncated {what}: its header says {needed} bytes but the file has only "
            f"{size}; re-copy it from its source"
        )
    return ""


def _hdf5_needed(sb: bytes) -> int | None:
    """End-of-file address recorded in an HDF5 superblock at offset 0, if it is intact.

    ``sb`` holds the file's first bytes; ``EOFError`` if the file ends inside the superblock.
    """
    if len(sb) < 16:
        raise EOFError
    version = sb[8]
    if version in (0, 1):
        if sb[9:13] != b"\0\0\0\0" or sb[15] != 0:  # sub-format versions, reserved byte
            return None
        n = sb[13]
        start = 24 if version == 0 else 28  # base address
    elif version in (2, 3):
        n = sb[9]
        if n not in (2, 4, 8):
            return None
        if len(sb) < 16 + 4 * n:
            raise EOFError
        body, (stored,) = sb[: 12 + 4 * n], struct.unpack_from("<I", sb, 12 + 4 * n)
        if _lookup3(body) != stored:
            return None  # the superblock itself is damaged
        start = 12
    else:
        return None
    if n not in (2, 4, 8):
        return None
    if len(sb) < start + 3 * n:
        raise EOFError
    fmt = {2: "<H", 4: "<I", 8: "<Q"}[n]
    base = int(struct.unpack_from(fmt, sb, start)[0])
    eof = int(struct.unpack_from(fmt, sb, start + 2 * n)[0])
    if eof == (1 << (8 * n)) - 1:
        return None  # "undefined address"
    return base + eof


_LOOKUP3_MIX = tuple(zip(((0, 2, 1), (1, 0, 2), (2, 1, 0)) * 2, (4, 6, 8, 16, 19, 4), strict=True))
_LOOKUP3_FINAL = ((2, 1, 14), (0, 2, 11), (1, 0, 25), (2, 1, 16), (0, 2, 4), (1, 0, 14), (2, 1, 24))


def _lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, the checksum of HDF5 metadata."""

    def rot(x: int, k: int) -> int:
        return ((x << k) | (x >> (32 - k))) & _MASK32

    length = len(data)
    v = [(0xDEADBEEF + length + initval) & _MASK32] * 3  # a, b, c
    if length == 0:
        return v[2]
    tail = length - ((length - 1) // 12) * 12  # the last 1..12 bytes go to the final mix
    padded = data + b"\0" * (12 - tail)
    words = struct.unpack(f"<{len(padded) // 4}I", padded)
    for i in range(0, len(words), 3):
        v = [(v[j] + words[i + j]) & _MASK32 for j in range(3)]
        if i + 3 == len(words):
            break
        for (x, z, y), k in _LOOKUP3_MIX:
            v[x] = ((v[x] - v[z]) & _MASK32) ^ rot(v[z], k)
            v[z] = (v[z] + v[y]) & _MASK32
    for x, z, k in _LOOKUP3_FINAL:
        v[x] = ((v[x] ^ v[z]) - rot(v[z], k)) & _MASK32
    return v[2]


# Classic (CDF-1, CDF-2, CDF-5) header: sizes of the external types, by nc_type.
_NC_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}
_NC_DIMENSION, _NC_VARIABLE, _NC_ATTRIBUTE = 10, 11, 12
_STREAMING = (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)


def _classic_needed(fh: BinaryIO, size: int) -> int | None:
    """Bytes a classic NetCDF file of ``size`` bytes must have, from its header's offsets.

    Raises ``EOFError`` when the header runs past the end of the file and ``ValueError``
    when it is not a classic header.
    """

    def read(n: int) -> bytes:
        data = fh.read(n)
        if len(data) < n:
            raise EOFError
        return data

    magic = read(4)
    version = magic[3]
    if magic[:3] != b"CDF" or version not in (1, 2, 5):
        raise ValueError("not a classic NetCDF header")
    big = version == 5  # CDF-5: 64-bit counts; CDF-2 and CDF-5: 64-bit offsets

    def count() -> int:
        return int(struct.unpack(">Q" if big else ">I", read(8 if big else 4))[0])

    def tag() -> int:
        return int(struct.unpack(">I", read(4))[0])

    def skip(n: int) -> None:
        n += -n % 4
        if fh.tell() + n > size:  # seek, not read: a corrupt count can be huge
            raise EOFError
        fh.seek(n, os.SEEK_CUR)

    def name() -> None:
        skip(count())

    def attributes() -> None:
        kind, n = tag(), count()
        if kind not in (0, _NC_ATTRIBUTE) or (kind == 0 and n):
            raise ValueError("bad attribute list")
        for _ in range(n):
            name()
            nc_type = tag()
            if nc_type not in _NC_TYPE_SIZE:
                raise ValueError(f"unknown type {nc_type}")
            skip(count() * _NC_TYPE_SIZE[nc_type])

    numrecs = count()
    kind, ndims = tag(), count()
    if kind not in (0, _NC_DIMENSION) or (kind == 0 and ndims):
        raise ValueError("bad dimension list")
    dims = []
    for _ in range(ndims):
        name()
        dims.append(count())
    attributes()
    kind, nvars = tag(), count()
    if kind not in (0, _NC_VARIABLE) or (kind == 0 and nvars):
        raise ValueError("bad variable list")
    fixed_end = 0
    records: list[tuple[int, int]] = []  # (begin, bytes per record) of record variables
    for _ in range(nvars):
        name()
        dimids = [count() for _ in range(count())]
        attributes()
        nc_type = tag()
        if nc_type not in _NC_TYPE_SIZE or any(d >= len(dims) for d in dimids):
            raise ValueError("bad variable")
        count() if big else read(4)  # vsize: recomputed below (it overflows in CDF-1/2)
        begin = int(
            struct.unpack(">Q" if version in (2, 5) else ">I", read(8 if version in (2, 5) else 4))[
                0
            ]
        )
        record = bool(dimids) and dims[dimids[0]] == 0
        nbytes = _NC_TYPE_SIZE[nc_type] * math.prod(dims[d] for d in dimids[record:])
        if record:
            records.append((begin, nbytes))
        else:
            fixed_end = max(fixed_end, begin + nbytes)
    if not records or numrecs in _STREAMING or numrecs == 0:
        return fixed_end
    # One record variable: records are not padded; several: each is padded to 4 bytes.
    recsize = records[0][1] if len(records) == 1 else sum(n + (-n % 4) for _, n in records)
    return max(fixed_end, *(b + (numrecs - 1) * recsize + n for b, n in records))


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
        variables.append(
            {
                "name": name,
                "dims": list(var.dimensions),
                "shape": [int(n) for n in var.shape],
                "dtype": "str" if var.dtype is str else str(var.dtype),
                "attrs": attrs,
            }
        )
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
        if (
            attrs.get("axis") == "T"
            or attrs.get("standard_name") == "time"
            or name == "time"
            or " since " in units
        ):
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
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"


def _key(t: Any) -> int:
    return time_key(t.year, t.month, t.day, t.hour, t.minute, t.second)


def _coord(
    by_name: dict[str, Any], standard: str, names: tuple[str, ...], units: tuple[str, ...]
) -> Any | None:
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
    lat = _coord(
        by_name,
        "latitude",
        _LAT_NAMES,
        ("degrees_north", "degree_north", "degrees_n", "degree_n", "degrees"),
    )
    lon = _coord(
        by_name,
        "longitude",
        _LON_NAMES,
        ("degrees_east", "degree_east", "degrees_e", "degree_e", "degrees"),
    )
    if lat is None or lon is None or lat.size > 10_000_000 or lon.size > 10_000_000:
        return None
    try:
        la, lo = _floats(lat), _floats(lon)
    except Exception:
        return None
    if not (np.isfinite(la).any() and np.isfinite(lo).any()):
        return None
    box = [float(np.nanmin(lo)), float(np.nanmin(la)), float(np.nanmax(lo)), float(np.nanmax(la))]
    return box if all(math.isfinite(v) for v in box) else None


def _floats(var: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A variable's values as float64, with fill and non-finite values as NaN.

    Read raw: netCDF4's masked arrays cost more than the whole rest of a header read.
    """
    var.set_auto_maskandscale(False)
    values = np.array(var[:], dtype="float64")
    attrs = var.ncattrs()
    for key in ("_FillValue", "missing_value"):
        if key in attrs:
            fill = np.asarray(var.getncattr(key), dtype="float64").ravel()
            values[np.isin(values, fill)] = np.nan
    if "scale_factor" in attrs:
        values *= float(np.asarray(var.getncattr("scale_factor")).ravel()[0])
    if "add_offset" in attrs:
        values += float(np.asarray(var.getncattr("add_offset")).ravel()[0])
    values[np.abs(values) > 1e30] = np.nan  # default fill values of unflagged variables
    return values

"""GRIB (editions 1 and 2), through ecCodes: a file of messages seen as a netCDF-like file.

Every message is one field on one grid. :class:`GribReader` groups a file's messages into
variables, as cfgrib does, and describes them with CF attributes, so the catalog indexes
and opens a GRIB file like any other:

* a variable per parameter and level type, named by ecCodes' ``cfVarName`` (``t2m`` for
  the 2 m temperature; ``p<paramId>`` when it has none), suffixed ``_<typeOfLevel>`` when
  one name comes with several level types;
* dimensions ``time`` (the messages' valid times, as ``seconds since 1970-01-01`` in the
  proleptic Gregorian calendar), a level dimension named by the level type when a
  variable has several levels (``isobaricInhPa``), then the grid: ``latitude`` and
  ``longitude`` for regular latitude/longitude and Gaussian grids scanned west to east,
  row by row; ``values`` with ``latitude(values)`` and ``longitude(values)`` otherwise.
  Variables on another grid get dimensions of their own (``latitude_2``, ...);
* values as float32 (as cfgrib gives them); points a bitmap marks missing, and times or
  levels a variable has no message for, hold ``_FillValue`` 1e20;
* ``long_name``, ``units``, ``standard_name`` where ecCodes knows it, and the ``GRIB_*``
  keys that say what the field is (``GRIB_paramId``, ``GRIB_shortName``,
  ``GRIB_typeOfLevel``, ``GRIB_level``...).

Two messages of one variable at the same valid time and level (forecasts from several base
times in one file) are refused with :class:`insitu.errors.DataError`: split such files.

A file is indexed once (the message offsets, the keys above) and kept while its size and
modification time are unchanged; a read decodes only the messages it needs. ecCodes is
called by one thread at a time. It comes with the ``grib`` extra (``pip install
'insitu[grib]'``: the ``eccodes`` wheel ships the library).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from insitu.errors import DataError
from insitu.formats.header import Header, HeaderVariable
from insitu.formats.netcdf.readers import records_per_slab
from insitu.formats.reader import Array, Encoded, EncodedVariable, Index, Slab

__all__ = ["GRIB_SIGNATURE", "GribReader"]

GRIB_SIGNATURE = b"GRIB"
FILL = np.float32(1e20)  # what missing points and absent messages hold
TIME_UNITS = "seconds since 1970-01-01T00:00:00"
_EPOCH = dt.datetime(1970, 1, 1)
_LOCK = threading.Lock()  # ecCodes, one thread at a time (wheels may lack thread support)
_KEEP = 64  # file indexes kept
_LEVEL_UNITS = {
    "isobaricInhPa": "hPa",
    "isobaricInPa": "Pa",
    "heightAboveGround": "m",
    "heightAboveSea": "m",
    "depthBelowSea": "m",
    "depthBelowLandLayer": "m",
}


def _eccodes() -> Any:
    try:
        import eccodes  # type: ignore[import-untyped]
    except (ImportError, RuntimeError) as exc:  # RuntimeError: the library is not found
        raise DataError(
            f"Reading GRIB needs ecCodes ({exc}); install it with pip install 'insitu[grib]'."
        ) from exc
    return eccodes


@dataclass(frozen=True, slots=True)
class _Var:
    """One variable of a GRIB file: its dimensions, attributes and values or messages."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    attrs: dict[str, Any]  # JSON-ready
    values: Array | None = None  # coordinates: held in memory
    # Data variables: the byte offset and length of the message at each (time, [level])
    # position (-1 where there is none), and the shape of the grid.
    offsets: Array | None = None
    lengths: Array | None = None
    grid: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class _File:
    identity: tuple[int, int, int]
    data_model: str
    dims: dict[str, int]
    variables: dict[str, _Var]
    attrs: dict[str, Any]


@dataclass(slots=True)
class _Message:
    offset: int
    length: int
    name: str
    param: tuple[Any, ...]  # what makes messages one variable
    time: int
    level_type: str
    level: float
    grid: tuple[Any, ...]
    attrs: dict[str, Any]


class GribReader:
    """GRIB files (editions 1 and 2) through ecCodes; see the module docstring for how
    messages become variables. Thread-safe; keeps the index of recently read files."""

    name: ClassVar[str] = "grib"

    def __init__(self) -> None:
        self._files: OrderedDict[str, _File] = OrderedDict()
        self._mutex = threading.Lock()

    # -- the interface -----------------------------------------------------------------------

    @contextmanager
    def header(self, path: str) -> Iterator[Header]:
        """The header of the file: variables as the module docstring describes them."""
        f = self._index(path)
        variables = [
            HeaderVariable(
                v.name, v.dims, v.shape, str(v.dtype), dict(v.attrs), self._reader(path, v.name)
            )
            for v in f.variables.values()
        ]
        yield Header(f.data_model, dict(f.dims), variables, dict(f.attrs))

    def encoded(self, path: str, load: Collection[str] = ()) -> Encoded:
        """Attributes typed for CF decoding (``_FillValue`` as float32), with the values of
        the variables in ``load``."""
        f = self._index(path)
        variables = {
            v.name: EncodedVariable(
                v.dtype,
                _typed(v.attrs, v.dtype),
                self.read(path, v.name) if v.name in load else None,
            )
            for v in f.variables.values()
        }
        return Encoded(dict(f.attrs), variables)

    def read(self, path: str, name: str, index: Index = ()) -> Array:
        """Values of ``name`` (or of its slab ``index``): decoded from the messages the slab
        covers, missing points as ``_FillValue``."""
        f = self._index(path)
        var = f.variables[name]
        if var.values is not None:
            return np.array(var.values[index] if index else var.values)
        assert var.offsets is not None and var.lengths is not None
        index = _full(index, var.shape)
        outer, inner = index[: var.offsets.ndim], index[var.offsets.ndim :]
        offsets, lengths = var.offsets[outer], var.lengths[outer]
        out = np.full(offsets.shape + _extent(inner), FILL, dtype=var.dtype)
        if offsets.size == 0 or not (offsets >= 0).any():
            return out
        with open(path, "rb") as fh:
            for at in np.ndindex(*offsets.shape):
                if offsets[at] < 0:
                    continue
                fh.seek(int(offsets[at]))
                message = fh.read(int(lengths[at]))
                out[at] = _decode(message, var.grid, path, name)[inner]
        return out

    def slabs(
        self, path: str, name: str, start: int, stop: int, chunk_bytes: int
    ) -> Iterator[Slab]:
        """Records ``start:stop`` in slabs of at most ``chunk_bytes`` (at least one record)."""
        var = self._index(path).variables[name]
        fills = [FILL] if var.offsets is not None else []
        step = records_per_slab(var.shape, var.dtype.itemsize, 1, chunk_bytes)
        for lo in range(start, stop, step):
            yield Slab(self.read(path, name, (slice(lo, min(lo + step, stop)),)), fills)

    # -- indexing ----------------------------------------------------------------------------

    def _reader(self, path: str, name: str) -> Callable[[], Array]:
        return lambda: self.read(path, name)

    def _index(self, path: str) -> _File:
        st = os.stat(path)
        identity = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._mutex:
            found = self._files.get(path)
            if found is not None and found.identity == identity:
                self._files.move_to_end(path)
                return found
        made = _index_file(path, identity)
        with self._mutex:
            self._files[path] = made
            while len(self._files) > _KEEP:
                self._files.popitem(last=False)
        return made


def _full(index: Index, shape: tuple[int, ...]) -> tuple[slice, ...]:
    out = list(index) + [slice(None)] * (len(shape) - len(index))
    return tuple(slice(*s.indices(n)) for s, n in zip(out, shape, strict=True))


def _extent(index: tuple[slice, ...]) -> tuple[int, ...]:
    return tuple(max(0, s.stop - s.start) for s in index)


def _typed(attrs: dict[str, Any], dtype: np.dtype[Any]) -> dict[str, Any]:
    """Attributes as a format library types them: the fill value of the variable's type."""
    if "_FillValue" in attrs:
        return {**attrs, "_FillValue": dtype.type(attrs["_FillValue"])}
    return dict(attrs)


def _decode(message: bytes, grid: tuple[int, ...], path: str, name: str) -> Array:
    ec = _eccodes()
    with _LOCK:
        h = ec.codes_new_from_message(message)
        try:
            ec.codes_set(h, "missingValue", float(FILL))
            values = np.asarray(ec.codes_get_values(h))
        finally:
            ec.codes_release(h)
    if values.size != int(np.prod(grid)):
        raise DataError(
            f"{path}: a message of {name!r} holds {values.size} values, not the "
            f"{int(np.prod(grid))} of its grid; the file changed since it was indexed."
        )
    return values.astype(np.float32).reshape(grid)


def _get(ec: Any, h: Any, key: str, default: Any = None) -> Any:
    try:
        if not ec.codes_is_defined(h, key):
            return default
        return ec.codes_get(h, key)
    except ec.CodesInternalError:
        return default


def _index_file(path: str, identity: tuple[int, int, int]) -> _File:
    """Read every message's keys (not its values) and group them into variables."""
    ec = _eccodes()
    messages: list[_Message] = []
    grids: dict[tuple[Any, ...], dict[str, tuple[tuple[str, ...], Array]]] = {}
    editions: set[int] = set()
    attrs: dict[str, Any] = {}
    with _LOCK, open(path, "rb") as fh:
        offset = 0
        while True:
            try:
                h = ec.codes_grib_new_from_file(fh)
            except ec.CodesInternalError as exc:
                raise DataError(
                    f"{path}: GRIB message {len(messages) + 1} (after byte {offset}) cannot "
                    f"be read ({exc}); the file is probably truncated: re-copy it from its "
                    "source"
                ) from exc
            if h is None:
                break
            try:
                offset = int(ec.codes_get(h, "offset"))
                messages.append(_message(ec, h, offset, grids))
                editions.add(int(ec.codes_get(h, "edition")))
                if not attrs:
                    attrs = _global_attrs(ec, h)
            finally:
                ec.codes_release(h)
    if not messages:
        raise DataError(f"{path} holds no GRIB message: remove it or re-copy it from its source")
    attrs["GRIB_edition"] = min(editions)
    model = f"GRIB{editions.pop()}" if len(editions) == 1 else "GRIB"
    return _assemble(path, identity, model, messages, grids, attrs)


def _global_attrs(ec: Any, h: Any) -> dict[str, Any]:
    centre = _get(ec, h, "centre", "")
    return {
        "GRIB_centre": str(centre),
        "institution": str(_get(ec, h, "centreDescription", centre)),
        "Conventions": "CF-1.7",
    }


def _message(
    ec: Any, h: Any, offset: int, grids: dict[tuple[Any, ...], dict[str, tuple[Any, Array]]]
) -> _Message:
    param = int(_get(ec, h, "paramId", 0))
    short = str(_get(ec, h, "shortName", "unknown"))
    name = str(_get(ec, h, "cfVarName", short))
    if name in ("", "unknown", "~"):
        name = short if short not in ("", "unknown", "~") else f"p{param}"
    level_type = str(_get(ec, h, "typeOfLevel", "unknown"))
    level = float(_get(ec, h, "level", 0))
    date, hhmm = int(_get(ec, h, "validityDate", 0)), int(_get(ec, h, "validityTime", 0))
    try:
        valid = dt.datetime(date // 10000, date // 100 % 100, date % 100, hhmm // 100, hhmm % 100)
    except ValueError as exc:
        raise DataError(f"message at byte {offset} has no valid date ({date} {hhmm})") from exc
    grid = _grid_key(ec, h)
    if grid not in grids:
        grids[grid] = _grid_coords(ec, h, grid)
    attrs: dict[str, Any] = {"long_name": str(_get(ec, h, "name", name))}
    units = _get(ec, h, "units")
    if units not in (None, "unknown", "~"):
        attrs["units"] = str(units)
    standard = _get(ec, h, "cfName")
    if standard not in (None, "", "unknown", "~"):
        attrs["standard_name"] = str(standard)
    attrs.update(
        GRIB_paramId=param,
        GRIB_shortName=short,
        GRIB_typeOfLevel=level_type,
        GRIB_gridType=str(grid[0]),
    )
    return _Message(
        offset=offset,
        length=int(ec.codes_get(h, "totalLength")),
        name=name,
        param=(param, short, level_type, grid),
        time=int((valid - _EPOCH).total_seconds()),
        level_type=level_type,
        level=level,
        grid=grid,
        attrs=attrs,
    )


def _grid_key(ec: Any, h: Any) -> tuple[Any, ...]:
    kind = str(_get(ec, h, "gridType", "unknown"))
    return (kind, *(_get(ec, h, k) for k in _GRID_KEYS))


_GRID_KEYS = (  # what makes two grids one: (gridType, *these)
    "Ni",
    "Nj",
    "numberOfPoints",
    "iScansNegatively",
    "jScansPositively",
    "jPointsAreConsecutive",
    "latitudeOfFirstGridPointInDegrees",
    "longitudeOfFirstGridPointInDegrees",
    "latitudeOfLastGridPointInDegrees",
    "longitudeOfLastGridPointInDegrees",
)


def _grid_coords(ec: Any, h: Any, grid: tuple[Any, ...]) -> dict[str, tuple[Any, Array]]:
    """The coordinates of a grid: (dims, values) of latitude and longitude; dims as if it
    were the first grid (renamed later)."""
    kind, ni, nj, _, i_neg, _, j_consecutive = grid[:7]
    regular = kind in ("regular_ll", "regular_gg") and not i_neg and not j_consecutive
    lats = np.asarray(ec.codes_get_array(h, "latitudes"), dtype="f8")
    lons = np.asarray(ec.codes_get_array(h, "longitudes"), dtype="f8")
    if regular and ni and nj and lats.size == ni * nj:
        return {
            "latitude": (("latitude",), lats.reshape(nj, ni)[:, 0].copy()),
            "longitude": (("longitude",), lons.reshape(nj, ni)[0, :].copy()),
        }
    return {"latitude": (("values",), lats), "longitude": (("values",), lons)}


def _assemble(
    path: str,
    identity: tuple[int, int, int],
    model: str,
    messages: list[_Message],
    grids: dict[tuple[Any, ...], dict[str, tuple[tuple[str, ...], Array]]],
    attrs: dict[str, Any],
) -> _File:
    times = np.array(sorted({m.time for m in messages}), dtype="i8")
    dims: dict[str, int] = {"time": int(times.size)}
    variables: dict[str, _Var] = {
        "time": _Var(
            "time",
            ("time",),
            (int(times.size),),
            np.dtype("i8"),
            {
                "standard_name": "time",
                "long_name": "valid time",
                "units": TIME_UNITS,
                "calendar": "proleptic_gregorian",
                "axis": "T",
            },
            values=times,
        )
    }
    # Grid dimensions: the first grid's are latitude, longitude (or values), then _2, ...
    grid_dims: dict[tuple[Any, ...], tuple[str, ...]] = {}
    for n, (grid, coords) in enumerate(grids.items()):
        suffix = "" if n == 0 else f"_{n + 1}"
        renamed = {d: d + suffix for dims_, _ in coords.values() for d in dims_}
        for cname, (cdims, values) in coords.items():
            vdims = tuple(renamed[d] for d in cdims)
            for d, size in zip(vdims, values.shape, strict=True):
                dims[d] = int(size)
            units = "degrees_north" if cname == "latitude" else "degrees_east"
            variables[cname + suffix] = _Var(
                cname + suffix,
                vdims,
                values.shape,
                np.dtype("f8"),
                {"units": units, "standard_name": cname, "long_name": cname},
                values=values,
            )
        lat_dims = coords["latitude"][0]
        grid_dims[grid] = tuple(renamed[d] for d in lat_dims) + (
            (renamed["longitude"],) if lat_dims == ("latitude",) else ()
        )
    # Variables: messages of one parameter, level type and grid.
    groups: dict[tuple[Any, ...], list[_Message]] = {}
    for m in messages:
        groups.setdefault(m.param, []).append(m)
    names = [ms[0].name for ms in groups.values()]
    level_dims: dict[tuple[str, tuple[float, ...]], str] = {}
    for ms in groups.values():
        first = ms[0]
        name = first.name
        if names.count(name) > 1:
            name = f"{name}_{first.level_type}"
        levels = sorted({m.level for m in ms})
        var_attrs = dict(first.attrs)
        outer: tuple[str, ...] = ("time",)
        if len(levels) > 1:
            key = (first.level_type, tuple(levels))
            if key not in level_dims:
                taken = sum(1 for t, _ in level_dims if t == first.level_type)
                level_dims[key] = first.level_type + (f"_{taken + 1}" if taken else "")
                ldim = level_dims[key]
                dims[ldim] = len(levels)
                level_attrs = {"long_name": first.level_type}
                if first.level_type in _LEVEL_UNITS:
                    level_attrs["units"] = _LEVEL_UNITS[first.level_type]
                variables[ldim] = _Var(
                    ldim, (ldim,), (len(levels),), np.dtype("f8"), level_attrs, np.array(levels)
                )
            outer = ("time", level_dims[key])
        else:
            var_attrs["GRIB_level"] = levels[0] if levels[0] % 1 else int(levels[0])
        gdims = grid_dims[first.grid]
        if gdims[0] == "values" or gdims[0].startswith("values_"):
            suffix = gdims[0][len("values") :]
            var_attrs["coordinates"] = f"latitude{suffix} longitude{suffix}"
        var_attrs["_FillValue"] = float(FILL)
        oshape = (int(times.size), len(levels)) if len(outer) == 2 else (int(times.size),)
        offsets = np.full(oshape, -1, dtype="i8")
        lengths = np.zeros(oshape, dtype="i8")
        for m in ms:
            at: tuple[int, ...] = (int(np.searchsorted(times, m.time)),)
            if len(outer) == 2:
                at += (levels.index(m.level),)
            if offsets[at] >= 0:
                when = (_EPOCH + dt.timedelta(seconds=m.time)).isoformat()
                raise DataError(
                    f"{path}: two messages of {name!r} at valid time {when}, level {m.level} "
                    f"{m.level_type} (bytes {offsets[at]} and {m.offset}): forecasts from "
                    "several base times in one file are not read; split it by base time "
                    "(grib_copy -w dataDate=...,dataTime=...)."
                )
            offsets[at], lengths[at] = m.offset, m.length
        shape = oshape + tuple(dims[d] for d in gdims)
        variables[name] = _Var(
            name,
            outer + gdims,
            shape,
            np.dtype("f4"),
            var_attrs,
            offsets=offsets,
            lengths=lengths,
            grid=tuple(dims[d] for d in gdims),
        )
    return _File(identity, model, dims, variables, attrs)

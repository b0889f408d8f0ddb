"""Where a netCDF-4 variable's values are stored: its HDF5 chunks, their filters and places.

A time or field mean is bounded by decoding (inflate and unshuffle), and netCDF-C's read
path inflates with the system zlib. Knowing where each chunk lies, a reader can fetch the
bytes itself and decode them with a faster inflate (see :mod:`.direct`). This module only
asks HDF5 for the layout, through the library netCDF4-python loaded (as :mod:`.header`
does for headers); it reads no values.

Handled: a variable stored contiguously, or chunked with no filter, deflate, or shuffle then
deflate (what netCDF-C and CMOR write), of a little-endian integer or floating-point type,
every chunk it needs allocated. Anything else raises :class:`NotDirect` and the caller reads
through netCDF-C.
"""

from __future__ import annotations

import ctypes
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from insitu.formats.cf import FILL_ATTRS
from insitu.formats.lock import HDF5_LOCK
from insitu.formats.netcdf import header as _hdf5
from insitu.formats.reader import NotDirect

__all__ = ["DEFLATE", "FILL_ATTRS", "SHUFFLE", "Chunk", "Layout", "NotDirect", "layout"]

# H5Z filter ids and H5D layouts (stable since 1.8).
DEFLATE, SHUFFLE = 1, 2
_CONTIGUOUS, _CHUNKED = 1, 2
_PIPELINES = {(), (DEFLATE,), (SHUFFLE, DEFLATE)}
_UNDEFINED = 2**64 - 1  # HADDR_UNDEF: storage not allocated


@dataclass(frozen=True, slots=True)
class Chunk:
    """One stored chunk: its first index on each axis, its byte range, filters it skipped."""

    origin: tuple[int, ...]
    address: int
    size: int
    skipped: int  # HDF5's filter mask: bit i set when filter i was not applied


@dataclass(frozen=True, slots=True)
class Layout:
    """How records ``start:stop`` of one variable are stored.

    A contiguous variable is one chunk of the variable's shape with no filters.
    """

    path: str
    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    chunk_shape: tuple[int, ...]
    filters: tuple[int, ...]  # in pipeline (writing) order
    chunks: tuple[Chunk, ...]  # every chunk holding records start:stop, by origin
    attrs: dict[str, Any]  # _FillValue and missing_value (numpy values of their own type)
    start: int = 0
    stop: int = 0
    unlimited: bool = False  # along the first axis: netCDF's length may exceed what is stored

    @property
    def contiguous(self) -> bool:
        """Stored as one block: records can be read in any number, not in whole chunks."""
        return not self.filters and self.chunk_shape == self.shape

    @property
    def time_chunk(self) -> int:
        """Records per chunk along the first axis (1 when contiguous)."""
        return 1 if self.contiguous else self.chunk_shape[0]


class _Calls:
    """The HDF5 functions beyond the header reader's, bound once."""

    def __init__(self, api: Any) -> None:
        hid, herr, i, u, u64, p = (
            ctypes.c_int64,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint64,
            ctypes.c_void_p,
        )
        fn = api.function
        self.create_plist = fn("H5Dget_create_plist", hid, hid)
        self.plist_close = fn("H5Pclose", herr, hid)
        self.get_layout = fn("H5Pget_layout", i, hid)
        self.get_chunk = fn("H5Pget_chunk", i, hid, i, p)
        self.nfilters = fn("H5Pget_nfilters", i, hid)
        self.get_filter = fn("H5Pget_filter2", i, hid, u, p, p, p, ctypes.c_size_t, p, p)
        self.offset = fn("H5Dget_offset", u64, hid)
        self.storage_size = fn("H5Dget_storage_size", u64, hid)
        self.chunk_by_coord = fn("H5Dget_chunk_info_by_coord", herr, hid, p, p, p, p)
        self.chunk_opts = fn("H5Pget_chunk_opts", herr, hid, p)


def _bind() -> _Calls | None:
    if _hdf5._API is None:
        return None
    try:
        return _Calls(_hdf5._API)
    except AttributeError:  # HDF5 older than 1.10.5: no chunk queries
        return None


_CALLS = _bind()
AVAILABLE = _CALLS is not None


def layout(path: str, name: str, start: int = 0, stop: int | None = None) -> Layout:
    """The storage of records ``start:stop`` (along the first axis; all by default) of
    variable ``name``.

    Raises :class:`NotDirect` when the file, the variable or its storage is not one the
    direct reader handles, with the reason. Takes :data:`insitu.formats.HDF5_LOCK` (HDF5
    is not thread-safe): do not call it while holding that lock.
    """
    api, calls = _hdf5._API, _CALLS
    if api is None or calls is None:
        raise NotDirect("the HDF5 library is not reachable")
    with HDF5_LOCK:
        fid = api.Fopen(path.encode(), 0, api.fapl)
        if fid < 0:
            raise NotDirect("HDF5 cannot open it")
        reader = _hdf5._Reader(api, fid)
        try:
            return _describe(reader, calls, path, name, start, stop)
        except _hdf5.NotPlain as exc:
            raise NotDirect(str(exc)) from None
        finally:
            reader.close()


def _describe(
    reader: Any, calls: _Calls, path: str, name: str, start: int, stop: int | None
) -> Layout:
    api = reader.api
    # A variable named like a dimension it is not the coordinate of is stored under
    # netCDF-C's prefix; the dataset with the plain name is then the dimension's scale.
    did = api.Dopen(reader.fid, _hdf5._NON_COORD + name.encode(), 0)
    if did < 0:
        did = api.Dopen(reader.fid, name.encode(), 0)
    did = reader._keep(did, api.Dclose)
    names = reader._attr_names(did)
    if b"NAME" in names and reader._text(did, b"NAME").startswith(_hdf5._PURE_DIM.decode()):
        raise NotDirect(f"{name!r} is a dimension without values")
    shape, maxshape = reader._extent(did)
    if stop is None:
        stop = shape[0] if shape else 0
    if not shape or not 0 <= start < stop <= shape[0]:
        raise NotDirect(f"records {start}:{stop} are not all stored (extent {shape})")
    unlimited = maxshape[0] == _hdf5._UNLIMITED
    if any(m == _hdf5._UNLIMITED for m in maxshape[1:]):
        raise NotDirect("an unlimited dimension after the first (netCDF-C pads it)")
    dtype_name, number = reader._var_type(did)
    if number is None or dtype_name != number.name:
        raise NotDirect(f"type {dtype_name} is not a little-endian number")
    plist = reader._keep(calls.create_plist(did), calls.plist_close)
    kind = calls.get_layout(plist)
    if kind == _CONTIGUOUS:
        address = calls.offset(did)
        nbytes = int(np.prod(shape, dtype=np.int64)) * number.size
        if address == _UNDEFINED or calls.storage_size(did) != nbytes:
            raise NotDirect("contiguous storage not allocated")
        whole = (Chunk((0,) * len(shape), address, nbytes, 0),)
        attrs = _attrs(reader, did, names)
        return Layout(
            path, name, number.dtype, shape, shape, (), whole, attrs, start, stop, unlimited
        )
    if kind != _CHUNKED:
        raise NotDirect("compact or virtual storage")
    rank = len(shape)
    dims = (ctypes.c_uint64 * rank)()
    if calls.get_chunk(plist, rank, dims) != rank:
        raise NotDirect("chunk shape unreadable")
    chunk_shape = tuple(dims)
    filters = _filters(calls, plist)
    opts = ctypes.c_uint()
    if filters and (calls.chunk_opts(plist, ctypes.byref(opts)) < 0 or opts.value):
        raise NotDirect("edge chunks stored unfiltered (or chunk options unreadable)")
    chunks = []
    origin = (ctypes.c_uint64 * rank)()
    mask, address, size = ctypes.c_uint(), ctypes.c_uint64(), ctypes.c_uint64()
    first = (start // chunk_shape[0]) * chunk_shape[0]
    axes = [range(first, stop, chunk_shape[0])]
    axes += [range(0, n, c) for n, c in zip(shape[1:], chunk_shape[1:], strict=True)]
    for corner in itertools.product(*axes):
        for axis, at in enumerate(corner):
            origin[axis] = at
        if (
            calls.chunk_by_coord(
                did, origin, ctypes.byref(mask), ctypes.byref(address), ctypes.byref(size)
            )
            < 0
            or address.value == _UNDEFINED
        ):
            raise NotDirect(f"chunk at {corner} is not allocated")
        chunks.append(Chunk(tuple(corner), address.value, size.value, mask.value))
    attrs = _attrs(reader, did, names)
    return Layout(
        path,
        name,
        number.dtype,
        shape,
        chunk_shape,
        filters,
        tuple(chunks),
        attrs,
        start,
        stop,
        unlimited,
    )


def _filters(calls: _Calls, plist: int) -> tuple[int, ...]:
    n = calls.nfilters(plist)
    if n < 0:
        raise NotDirect("filters unreadable")
    flags, nvalues = ctypes.c_uint(), ctypes.c_size_t(0)
    config = ctypes.c_uint()
    found = []
    for i in range(n):
        fid = calls.get_filter(
            plist, i, ctypes.byref(flags), ctypes.byref(nvalues), None, 0, None,
            ctypes.byref(config),
        )  # fmt: skip
        found.append(int(fid))
        nvalues.value = 0
    pipeline = tuple(found)
    if pipeline not in _PIPELINES:
        raise NotDirect(f"filters {pipeline} (only deflate, shuffle+deflate or none)")
    return pipeline


def _attrs(reader: Any, did: int, names: list[bytes]) -> dict[str, Any]:
    """_FillValue and missing_value as netCDF4-python gives them: numpy values of the
    attribute's own type (a scalar for one value)."""
    api = reader.api
    found: dict[str, Any] = {}
    for text in FILL_ATTRS:
        name = text.encode()
        if name not in names:
            continue
        aid = api.Aopen(did, name, 0)
        if aid < 0:
            raise NotDirect(f"attribute {name!r} cannot be opened")
        tid = api.Aget_type(aid)
        try:
            if tid < 0 or api.Tget_class(tid) not in (_hdf5._INTEGER, _hdf5._FLOAT):
                raise NotDirect(f"attribute {name!r} is not a number")
            number = reader._number(tid, api.Tget_class(tid))
            values = np.empty(api.Aget_storage_size(aid) // api.Tget_size(tid), number.dtype)
            if values.size and api.Aread(aid, number.mtype, _hdf5._address(values)) < 0:
                raise NotDirect(f"attribute {name!r} cannot be read")
            found[text] = values[0] if values.size == 1 else values
        finally:
            if tid >= 0:
                api.Tclose(tid)
            api.Aclose(aid)
    return found

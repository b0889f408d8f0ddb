"""The fast path of the header scan: a netCDF-4 file's header read straight from its HDF5
layout, through the HDF5 C library that netCDF4-python already loaded.

Why not netCDF4-python: opening a file builds every dimension, variable and attribute
object through netCDF-C, which also reads the hidden bookkeeping attributes (dimension
and reference lists); for a small CMIP file that is most of the scan. Why not h5py: its
per-call overhead (an object per id, a lock per call) makes it the slowest of the three.
Calling the dozen HDF5 functions below through :mod:`ctypes` reads the same header with
half netCDF4-python's CPU time and a sixth of h5py's (measured side by side: BENCHMARKS.md,
"Formats: home-made vs library"; ``make bench-formats``), so it stays, with netCDF4-python
behind it. Every call holds :data:`insitu.formats.HDF5_LOCK`.

The reader interprets the layout as netCDF-C does: variables in link-creation order,
dimensions numbered by their ``_Netcdf4Dimid``, a variable's dimensions from its
``_Netcdf4Coordinates``, an unlimited dimension as long as its longest variable, hidden
attributes left out, text attributes decoded as netCDF4-python decodes them. It handles
the layout netCDF-C writes. Anything else (a subgroup, a user-defined or variable-length
type, a dimension it cannot name, any HDF5 error) raises :class:`NotPlain`, and the caller
opens the file with netCDF4-python instead, which also says why a bad file cannot be read.

Every buffer handed to HDF5 is sized from what HDF5 reports for that object.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from insitu.formats.header import Header, HeaderVariable
from insitu.formats.lock import HDF5_LOCK

__all__ = ["AVAILABLE", "NotPlain", "open_header"]

# Attributes netCDF-C keeps for itself and never shows (its NC_reservedatt "hidden" list).
_HIDDEN = frozenset(
    {
        b"CLASS",
        b"DIMENSION_LIST",
        b"NAME",
        b"REFERENCE_LIST",
        b"_Netcdf4Coordinates",
        b"_Netcdf4Dimid",
        b"_NCProperties",
        b"_nc3_strict",
        b"_ARRAY_DIMENSIONS",
        b"_NCZARR_ATTR",
        b"_nczarr_attr",
    }
)
_PURE_DIM = b"This is a netCDF dimension but not a netCDF variable"
_NON_COORD = b"_nc4_non_coord_"

# HDF5 constants (stable since 1.10): H5T_class_t, H5T_sign_t, H5T_order_t, H5T_str_t,
# H5_index_t, H5_iter_order_t, H5L_type_t.
_INTEGER, _FLOAT, _STRING = 0, 1, 3
_SGN_NONE = 0
_ORDER_BE = 1
_STR_NULLTERM = 0
_INDEX_NAME, _INDEX_CRT_ORDER = 0, 1
_ITER_INC = 0
_LINK_HARD = 0
_UNLIMITED = 2**64 - 1
_MAX_RANK = 32


def _address(arr: np.ndarray[Any, Any]) -> int:
    """Where a numpy array's data starts (``arr.ctypes.data`` costs more)."""
    return int(arr.__array_interface__["data"][0])


class NotPlain(Exception):
    """The file is not a netCDF-4 layout this reader handles; read it with netCDF-C."""


class _Number:
    """A netCDF number type: its numpy dtype, its name as netCDF4-python prints it, and
    the HDF5 memory type that reads it."""

    __slots__ = ("big_endian", "dtype", "mtype", "name", "size")

    def __init__(self, dtype: np.dtype[Any], mtype: int) -> None:
        self.dtype, self.mtype, self.size = dtype, mtype, dtype.itemsize
        self.name, self.big_endian = str(dtype), str(dtype.newbyteorder(">"))


class _Api:
    """The HDF5 functions the reader calls, with their C signatures."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        hid, herr, i, u64, p = (
            ctypes.c_int64,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_uint64,
            ctypes.c_void_p,
        )
        s = ctypes.c_char_p
        self.lib = lib
        fn = self.function

        self.attr_cb = ctypes.CFUNCTYPE(herr, hid, s, p, p)
        self.link_cb = ctypes.CFUNCTYPE(herr, hid, s, p, p)
        fn("H5open", herr)()
        version = (ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint())
        fn("H5get_libversion", herr, p, p, p)(*(ctypes.byref(v) for v in version))
        if (version[0].value, version[1].value) < (1, 10):  # hid_t became 64-bit in 1.10
            raise ValueError("HDF5 older than 1.10")
        fn("H5Eset_auto2", herr, hid, p, p)(0, None, None)  # errors are ours to report
        self.Fopen = fn("H5Fopen", hid, s, ctypes.c_uint, hid)
        self.Fclose = fn("H5Fclose", herr, hid)
        self.Gopen = fn("H5Gopen2", hid, hid, s, hid)
        self.Gclose = fn("H5Gclose", herr, hid)
        self.Dopen = fn("H5Dopen2", hid, hid, s, hid)
        self.Dclose = fn("H5Dclose", herr, hid)
        self.Dget_space = fn("H5Dget_space", hid, hid)
        self.Dget_type = fn("H5Dget_type", hid, hid)
        self.Dread = fn("H5Dread", herr, hid, hid, hid, hid, hid, p)
        self.Aopen = fn("H5Aopen", hid, hid, s, hid)
        self.Aclose = fn("H5Aclose", herr, hid)
        self.Aget_type = fn("H5Aget_type", hid, hid)
        self.Aget_storage_size = fn("H5Aget_storage_size", u64, hid)
        self.Aread = fn("H5Aread", herr, hid, hid, p)
        self.Aiterate = fn("H5Aiterate2", herr, hid, i, i, ctypes.POINTER(u64), self.attr_cb, p)
        literate = "H5Literate2" if hasattr(lib, "H5Literate2") else "H5Literate"  # 1.10
        self.Literate = fn(literate, herr, hid, i, i, ctypes.POINTER(u64), self.link_cb, p)
        self.Sget_ndims = fn("H5Sget_simple_extent_ndims", i, hid)
        self.Sget_dims = fn("H5Sget_simple_extent_dims", i, hid, p, p)
        self.Sclose = fn("H5Sclose", herr, hid)
        self.Tget_class = fn("H5Tget_class", i, hid)
        self.Tget_size = fn("H5Tget_size", ctypes.c_size_t, hid)
        self.Tget_sign = fn("H5Tget_sign", i, hid)
        self.Tget_strpad = fn("H5Tget_strpad", i, hid)
        self.Tget_order = fn("H5Tget_order", i, hid)
        self.Tis_variable_str = fn("H5Tis_variable_str", i, hid)
        self.Tclose = fn("H5Tclose", herr, hid)
        self.Aget_space = fn("H5Aget_space", hid, hid)
        self.Sget_npoints = fn("H5Sget_simple_extent_npoints", ctypes.c_int64, hid)
        self.free = fn("H5free_memory", herr, p)
        # The default file access (weak close): HDF5 opens a file once per process and
        # refuses a second open whose close degree differs from the first, so anything else
        # would fail on a file netCDF-C (an xarray dataset, say) already holds open. Every id
        # the reader opens is closed by _Reader.close.
        self.fapl = 0

        def native(name: str) -> int:
            return int(hid.in_dll(lib, f"H5T_NATIVE_{name}_g").value)

        # (class, size, signed) -> the numpy dtype and HDF5 memory type of netCDF's numbers.
        self.numbers: dict[tuple[int, int, bool], _Number] = {
            (cls, np.dtype(code).itemsize, signed): _Number(np.dtype(code), native(c_name))
            for cls, code, signed, c_name in (
                (_INTEGER, "i1", True, "SCHAR"),
                (_INTEGER, "u1", False, "UCHAR"),
                (_INTEGER, "i2", True, "SHORT"),
                (_INTEGER, "u2", False, "USHORT"),
                (_INTEGER, "i4", True, "INT"),
                (_INTEGER, "u4", False, "UINT"),
                (_INTEGER, "i8", True, "LLONG"),
                (_INTEGER, "u8", False, "ULLONG"),
                (_FLOAT, "f4", True, "FLOAT"),
                (_FLOAT, "f8", True, "DOUBLE"),
            )
        }
        # Memory for attribute values, reused under HDF5_LOCK (grown when one is larger).
        self.buf = ctypes.create_string_buffer(1 << 16)

    def function(self, name: str, res: Any, *args: Any) -> Any:
        """The library's function ``name`` with its C signature (AttributeError if absent)."""
        f = getattr(self.lib, name)
        f.restype, f.argtypes = res, list(args)
        return f


def _load() -> _Api | None:
    """The HDF5 library under netCDF4-python, or None where it cannot be reached."""
    try:
        import netCDF4._netCDF4 as ext

        # dlopen of a loaded module returns its handle; its symbols include its
        # dependencies', so this is the very HDF5 netCDF-C uses (one library per process).
        # PyDLL keeps the GIL during each call: no other Python thread can call into HDF5
        # meanwhile (it is not thread-safe), and a call skips releasing and retaking it.
        return _Api(ctypes.PyDLL(ext.__file__))
    except Exception:  # any surprise here only costs the fast path, never the scan
        return None


_API = _load()
AVAILABLE = _API is not None
_names: list[bytes] = []  # filled by the iteration callbacks, under HDF5_LOCK


def _collect_attr(_loc: int, name: bytes, _info: Any, _data: Any) -> int:
    _names.append(name)
    return 0


def _collect_link(_loc: int, name: bytes, info: Any, _data: Any) -> int:
    # H5L_info_t starts with the link type in every HDF5 version.
    _names.append(name if ctypes.cast(info, ctypes.POINTER(ctypes.c_int))[0] == _LINK_HARD else b"")
    return 0


if _API is not None:
    _ATTR_CB = _API.attr_cb(_collect_attr)
    _LINK_CB = _API.link_cb(_collect_link)


@contextmanager
def open_header(path: str) -> Iterator[Header]:
    """The header of the netCDF-4 file at ``path``; :class:`NotPlain` if it is not one."""
    api = _API
    if api is None:
        raise NotPlain("the HDF5 library is not reachable")
    with HDF5_LOCK:
        fid = api.Fopen(path.encode(), 0, api.fapl)
        if fid < 0:
            raise NotPlain("HDF5 cannot open it")
        reader = _Reader(api, fid)
        try:
            yield reader.header()
        finally:
            reader.close()


class _Reader:
    """One open file; every id it opens is closed by :meth:`close`."""

    def __init__(self, api: _Api, fid: int) -> None:
        self.api = api
        self.fid = fid
        self.open: list[tuple[Callable[[int], int], int]] = []

    def close(self) -> None:
        for close, oid in reversed(self.open):
            close(oid)
        self.api.Fclose(self.fid)

    def _keep(self, oid: int, close: Callable[[int], int]) -> int:
        if oid < 0:
            raise NotPlain("an HDF5 object cannot be opened")
        self.open.append((close, oid))
        return oid

    def header(self) -> Header:
        api = self.api
        root = self._keep(api.Gopen(self.fid, b"/", 0), api.Gclose)
        names = self._attr_names(root)
        data_model = "NETCDF4_CLASSIC" if b"_nc3_strict" in names else "NETCDF4"
        global_attrs = self._attrs(root, names)

        dim_names: dict[int, str] = {}  # netCDF dimension id -> name
        dim_len: dict[str, int] = {}
        unlimited: set[str] = set()
        found: list[tuple[str, int, list[bytes], tuple[int, ...]]] = []
        for link in self._links(root):
            if not link or link.startswith(_NON_COORD):
                raise NotPlain("a link or name netCDF-C treats specially")
            did = self._keep(api.Dopen(root, link, 0), api.Dclose)  # fails for a group
            anames = self._attr_names(did)
            shape, maxshape = self._extent(did)
            name = link.decode()
            if b"CLASS" in anames:  # a dimension scale: a netCDF dimension
                if len(shape) != 1 or b"_Netcdf4Dimid" not in anames:
                    raise NotPlain(f"dimension {name!r} has no netCDF dimension id")
                (dimid,) = self._ints(did, b"_Netcdf4Dimid")
                if dimid in dim_names:
                    raise NotPlain(f"dimension id {dimid} is used twice")
                dim_names[dimid] = name
                dim_len[name] = shape[0]
                if maxshape[0] == _UNLIMITED:
                    unlimited.add(name)
                if self._text(did, b"NAME").startswith(_PURE_DIM.decode()):
                    continue  # a dimension without a variable
            found.append((name, did, anames, shape))

        placed = []
        for name, did, anames, shape in found:
            if b"_Netcdf4Coordinates" in anames:
                dims = tuple(dim_names[i] for i in self._ints(did, b"_Netcdf4Coordinates"))
            elif not shape:
                dims = ()
            elif b"CLASS" in anames and len(shape) == 1:
                dims = (name,)
            else:  # older writers: dimensions only in HDF5 references; netCDF-C reads those
                raise NotPlain(f"variable {name!r} has no _Netcdf4Coordinates")
            if len(dims) != len(shape):
                raise NotPlain(f"variable {name!r}: {len(shape)} axes, {len(dims)} dimensions")
            for d, n in zip(dims, shape, strict=True):
                if d in unlimited:
                    dim_len[d] = max(dim_len[d], n)
                elif n != dim_len[d]:
                    raise NotPlain(f"variable {name!r} does not fit dimension {d!r}")
            placed.append((name, did, anames, shape, dims))

        variables = []
        for name, did, anames, shape, dims in placed:
            full = tuple(dim_len[d] for d in dims)
            dtype, number = self._var_type(did)
            variables.append(
                HeaderVariable(
                    name,
                    dims,
                    full,
                    dtype,
                    self._attrs(did, anames),
                    self._reader(did, shape, full, number),
                )
            )
        dims_out = {dim_names[i]: dim_len[dim_names[i]] for i in sorted(dim_names)}
        return Header(data_model, dims_out, variables, global_attrs)

    # -- iteration -----------------------------------------------------------------

    def _attr_names(self, oid: int) -> list[bytes]:
        """Attribute names in the order netCDF-C lists them: creation, else name."""
        _names.clear()
        if self.api.Aiterate(oid, _INDEX_CRT_ORDER, _ITER_INC, None, _ATTR_CB, None) < 0:
            _names.clear()  # creation order not tracked
            if self.api.Aiterate(oid, _INDEX_NAME, _ITER_INC, None, _ATTR_CB, None) < 0:
                raise NotPlain("attributes cannot be listed")
        return list(_names)

    def _links(self, gid: int) -> list[bytes]:
        """Names in the group in the order netCDF-C numbers variables; b"" for soft links."""
        _names.clear()
        if self.api.Literate(gid, _INDEX_CRT_ORDER, _ITER_INC, None, _LINK_CB, None) < 0:
            _names.clear()
            if self.api.Literate(gid, _INDEX_NAME, _ITER_INC, None, _LINK_CB, None) < 0:
                raise NotPlain("the root group cannot be listed")
        return list(_names)

    # -- datasets --------------------------------------------------------------------

    def _extent(self, did: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        api = self.api
        sid = api.Dget_space(did)
        if sid < 0:
            raise NotPlain("no dataspace")
        try:
            rank = api.Sget_ndims(sid)
            if not 0 <= rank <= _MAX_RANK:
                raise NotPlain("not a simple dataspace")
            dims, maxdims = (ctypes.c_uint64 * max(rank, 1))(), (ctypes.c_uint64 * max(rank, 1))()
            if api.Sget_dims(sid, dims, maxdims) < 0:
                raise NotPlain("no extent")
            return tuple(dims[:rank]), tuple(maxdims[:rank])
        finally:
            api.Sclose(sid)

    def _var_type(self, did: int) -> tuple[str, _Number | None]:
        """``str(netCDF4.Variable.dtype)`` of the dataset, and how to read it as numbers."""
        api = self.api
        tid = api.Dget_type(did)
        if tid < 0:
            raise NotPlain("no datatype")
        try:
            cls = api.Tget_class(tid)
            if cls in (_INTEGER, _FLOAT):
                number = self._number(tid, cls)
                if number.size > 1 and api.Tget_order(tid) == _ORDER_BE:
                    return number.big_endian, number  # netCDF4-python keeps the byte order
                return number.name, number
            if cls == _STRING and not api.Tis_variable_str(tid) and api.Tget_size(tid) == 1:
                return "|S1", None  # NC_CHAR
            raise NotPlain("a variable of a type the reader leaves to netCDF-C")
        finally:
            api.Tclose(tid)

    def _number(self, tid: int, cls: int) -> _Number:
        api = self.api
        signed = cls == _FLOAT or api.Tget_sign(tid) != _SGN_NONE
        try:
            return api.numbers[cls, api.Tget_size(tid), signed]
        except KeyError:
            raise NotPlain("a number type netCDF does not have") from None

    def _reader(
        self,
        did: int,
        shape: tuple[int, ...],
        full: tuple[int, ...],
        number: _Number | None,
    ) -> Callable[[], np.ndarray[Any, Any]]:
        api = self.api

        def read() -> np.ndarray[Any, Any]:
            if number is None:
                raise NotPlain("text coordinate values")
            if shape != full:  # shorter than its unlimited dimension: netCDF-C pads it
                raise NotPlain("a variable shorter than its dimension")
            arr = np.empty(shape, number.dtype)
            if arr.size and api.Dread(did, number.mtype, 0, 0, 0, _address(arr)) < 0:
                raise NotPlain("values cannot be read")
            return arr

        return read

    # -- attributes ------------------------------------------------------------------

    def _attrs(self, oid: int, names: list[bytes]) -> dict[str, Any]:
        return {n.decode(): self._value(oid, n) for n in names if n not in _HIDDEN}

    def _value(self, oid: int, name: bytes) -> Any:
        """An attribute as netCDF4-python returns it, made JSON-ready."""
        api = self.api
        aid = api.Aopen(oid, name, 0)
        if aid < 0:
            raise NotPlain(f"attribute {name!r} cannot be opened")
        tid = api.Aget_type(aid)
        try:
            if tid < 0:
                raise NotPlain(f"attribute {name!r} has no type")
            cls = api.Tget_class(tid)
            nbytes = api.Aget_storage_size(aid)
            if cls == _STRING:
                if api.Tis_variable_str(tid):
                    return self._strings(aid, tid, name)
                size = api.Tget_size(tid)
                if (
                    api.Tget_strpad(tid) != _STR_NULLTERM
                    or nbytes not in (0, size)
                    or name == b"_FillValue"  # netCDF4-python returns bytes for that one
                ):
                    raise NotPlain(f"attribute {name!r} is not netCDF text")
                if not nbytes:
                    return ""
                buf = self._buffer(size)
                if api.Aread(aid, tid, buf) < 0:
                    raise NotPlain(f"attribute {name!r} cannot be read")
                # As netCDF4-python: decode, then drop every NUL.
                return ctypes.string_at(buf, size).decode("utf-8", "replace").replace("\x00", "")
            if cls not in (_INTEGER, _FLOAT):
                raise NotPlain(f"attribute {name!r} has a type netCDF-C maps elsewhere")
            number = self._number(tid, cls)
            count = nbytes // api.Tget_size(tid)
            if not count:
                return []
            buf = self._buffer(count * number.size)
            if api.Aread(aid, number.mtype, buf) < 0:
                raise NotPlain(f"attribute {name!r} cannot be read")
            values = np.frombuffer(buf, number.dtype, count)
            return values.item() if count == 1 else values.tolist()
        finally:
            if tid >= 0:
                api.Tclose(tid)
            api.Aclose(aid)

    def _strings(self, aid: int, tid: int, name: bytes) -> str | list[str]:
        """An NC_STRING attribute: one string, or a list of them."""
        api = self.api
        sid = api.Aget_space(aid)
        if sid < 0:
            raise NotPlain(f"attribute {name!r} has no dataspace")
        try:
            count = api.Sget_npoints(sid)
        finally:
            api.Sclose(sid)
        if count < 1:
            raise NotPlain(f"attribute {name!r} is empty")
        ptrs = (ctypes.c_void_p * count)()
        if api.Aread(aid, tid, ptrs) < 0:
            raise NotPlain(f"attribute {name!r} cannot be read")
        texts = []
        for ptr in ptrs:  # HDF5 allocated each string; give every one back
            texts.append(ctypes.string_at(ptr).decode("utf-8", "replace") if ptr else "")
            if ptr:
                api.free(ptr)
        texts = [t.replace("\x00", "") for t in texts]
        return texts[0] if count == 1 else texts

    def _buffer(self, size: int) -> Any:
        if size > len(self.api.buf):
            self.api.buf = ctypes.create_string_buffer(size)
        return self.api.buf

    def _ints(self, oid: int, name: bytes) -> list[int]:
        value = self._value(oid, name)
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, int) for v in values):
            raise NotPlain(f"{name!r} is not a list of integers")
        return values

    def _text(self, oid: int, name: bytes) -> str:
        value = self._value(oid, name)
        if not isinstance(value, str):
            raise NotPlain(f"{name!r} is not text")
        return value

"""The NetCDF readers: netCDF-4 (HDF5) files and classic (CDF-1, CDF-2, CDF-5) files.

:class:`NetCDF3Reader` reads everything through netCDF-C (netCDF4-python). Its subclass
:class:`NetCDF4Reader` reads netCDF-4 files faster where their layout allows: headers
straight from HDF5 (:mod:`.header`), values from the stored chunks (:mod:`.direct`: pread,
ISA-L's inflate, the C unshuffle), with the sum over records made while unshuffling. Where
a fast path refuses a file (another filter, a byte order, a subgroup, a bad chunk...),
netCDF-C reads it, and says what is wrong with a bad file.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, ClassVar

import numpy as np

from insitu.errors import DataError
from insitu.formats.cf import FILL_ATTRS, fill_values
from insitu.formats.header import Header, HeaderVariable, jsonable
from insitu.formats.lock import HDF5_LOCK
from insitu.formats.netcdf import direct
from insitu.formats.netcdf.header import NotPlain, open_header
from insitu.formats.netcdf.truncation import truncation
from insitu.formats.reader import (
    Array,
    DirectVariable,
    Encoded,
    EncodedVariable,
    Index,
    NotDirect,
    Slab,
)

__all__ = ["NetCDF3Reader", "NetCDF4Reader", "from_netcdf4", "records_per_slab"]


class NetCDF3Reader:
    """Classic NetCDF files (CDF-1, 64-bit offset CDF-2, CDF-5), through netCDF-C.

    It also reads any netCDF-4 file (netCDF-C reads both): :class:`NetCDF4Reader` falls
    back on it.
    """

    name: ClassVar[str] = "netcdf3"

    @contextmanager
    def header(self, path: str) -> Iterator[Header]:
        """The header, as netCDF4-python gives it. A classic file shorter than its header
        says raises :class:`insitu.errors.DataError` (netCDF-C would read zeros)."""
        import netCDF4

        with HDF5_LOCK:
            ds = netCDF4.Dataset(path, "r")
            try:
                if ds.data_model.startswith("NETCDF3"):
                    short = truncation(path)
                    if short:
                        raise DataError(f"{path}: {short}")
                yield from_netcdf4(ds)
            finally:
                ds.close()

    def encoded(self, path: str, load: Collection[str] = ()) -> Encoded:
        """Attributes as netCDF4-python types them, and the raw values of ``load``."""
        import netCDF4

        with HDF5_LOCK, netCDF4.Dataset(path, "r") as nc:
            variables = {}
            for name, var in nc.variables.items():
                values = None
                if name in load:
                    var.set_auto_maskandscale(False)
                    var.set_auto_chartostring(False)
                    values = np.asarray(var[...])
                attrs = {k: var.getncattr(k) for k in var.ncattrs()}
                variables[name] = EncodedVariable(np.dtype(var.dtype), attrs, values)
            return Encoded({k: nc.getncattr(k) for k in nc.ncattrs()}, variables)

    def read(self, path: str, name: str, index: Index = ()) -> Array:
        """Raw values of ``name`` (or its slab ``index``) through netCDF-C."""
        import netCDF4

        with HDF5_LOCK, netCDF4.Dataset(path, "r") as ds:
            var = ds.variables[name]
            var.set_auto_maskandscale(False)
            var.set_auto_chartostring(False)
            return np.asarray(var[index] if index else var[...])

    def open(self, path: str) -> Any:
        """A ``netCDF4.Dataset`` that gives raw values (the caller holds the HDF5 lock)."""
        import netCDF4

        nc = netCDF4.Dataset(path, "r")
        nc.set_auto_maskandscale(False)
        nc.set_auto_chartostring(False)
        return nc

    def read_open(self, handle: Any, name: str, index: Index = ()) -> Array:
        """Raw values from an open dataset (the caller holds the HDF5 lock)."""
        var = handle.variables[name]
        return np.asarray(var[index] if index else var[...])

    def close(self, handle: Any) -> None:
        """Close an open dataset (the caller holds the HDF5 lock)."""
        handle.close()

    def slabs(
        self, path: str, name: str, start: int, stop: int, chunk_bytes: int
    ) -> Iterator[Slab]:
        """Records ``start:stop`` in slabs, through netCDF-C (the lock held per slab)."""
        import netCDF4

        with HDF5_LOCK:
            nc = netCDF4.Dataset(path, "r")
        try:
            with HDF5_LOCK:
                var = nc.variables[name]
                var.set_auto_maskandscale(False)
                var.set_auto_chartostring(False)
                chunking = var.chunking()
                time_chunk = chunking[0] if isinstance(chunking, list) else 1
                attrs = {n: var.getncattr(n) for n in FILL_ATTRS if n in var.ncattrs()}
                shape, dtype = var.shape, var.dtype
            fills = fill_values(dtype, attrs)
            step = records_per_slab(shape, dtype.itemsize, time_chunk, chunk_bytes)
            for lo in range(start, stop, step):
                with HDF5_LOCK:
                    raw = np.asarray(var[lo : min(lo + step, stop)])
                yield Slab(raw, fills)
        finally:
            with HDF5_LOCK:
                nc.close()


class NetCDF4Reader(NetCDF3Reader):
    """NetCDF-4 (HDF5) files: fast header, direct chunk reads and fused sums where the
    layout allows, netCDF-C elsewhere.

    ``fast_header=False`` reads every header through netCDF-C (the tests compare both).
    """

    name: ClassVar[str] = "netcdf4"

    def __init__(self, *, fast_header: bool = True) -> None:
        self.fast_header = fast_header

    @contextmanager
    def header(self, path: str) -> Iterator[Header]:
        """The header, straight from HDF5 where the layout is netCDF-C's plain one."""
        if self.fast_header:
            with ExitStack() as stack:
                try:
                    raw: Header | None = stack.enter_context(open_header(path))
                except Exception:  # not a plain netCDF-4 layout, or a bad file: netCDF-C
                    raw = None
                if raw is not None:
                    yield _with_fallback(raw, path)
                    return
        with super().header(path) as raw:
            yield raw

    def open_direct(self, path: str, name: str) -> DirectVariable:
        """``name`` ready for direct reads (:class:`NotDirect` when its layout is not
        deflate, shuffle+deflate or none, little-endian numbers, all chunks allocated)."""
        return direct.open_variable(path, name)

    def sums_while_reading(self, var: DirectVariable) -> bool:
        """Whether the sum comes with the unshuffle (CMOR's layout, whole time chunks)."""
        return isinstance(var, direct.ChunkedVariable) and direct.sums_while_unshuffling(var.layout)

    def read_summed(self, var: DirectVariable, lo: int, hi: int, total: Array) -> Array:
        """Records ``lo:hi`` with ``total`` set to their float64 sum."""
        return _chunked(var).records(lo, hi, total)

    def row_sums_while_reading(self, var: DirectVariable) -> bool:
        """Whether the row sums come with the unshuffle (as the sum over records does)."""
        return self.sums_while_reading(var)

    def read_row_summed(self, var: DirectVariable, lo: int, hi: int, rows: Array) -> Array:
        """Records ``lo:hi`` with ``rows`` set to the float64 sums of their rows."""
        return _chunked(var).records(lo, hi, rows=rows)


def _chunked(var: DirectVariable) -> direct.ChunkedVariable:
    if not isinstance(var, direct.ChunkedVariable):
        raise NotDirect(f"{var!r} is not a netCDF-4 variable read from its chunks")
    return var


def _with_fallback(raw: Header, path: str) -> Header:
    """``raw`` with each variable's values read through netCDF-C where the HDF5 reader
    leaves them (text coordinates, a variable shorter than its unlimited dimension): the
    caller holds the HDF5 lock while the header is open."""
    for var in raw.variables:
        var.read = _either(var.read, path, var.name)
    return raw


def _either(fast: Callable[[], Array], path: str, name: str) -> Callable[[], Array]:
    def read() -> Array:
        try:
            return fast()
        except NotPlain:
            import netCDF4

            with netCDF4.Dataset(path, "r") as ds:  # the lock is held by open_header
                return _reader(ds.variables[name])()

    return read


def records_per_slab(
    shape: tuple[int, ...], itemsize: int, time_chunk: int, chunk_bytes: int
) -> int:
    """Records per slab: at most ``chunk_bytes``, at least one, whole time chunks if > 1."""
    per_record = max(1, int(np.prod(shape[1:], dtype=np.int64)) * itemsize)
    step = max(1, chunk_bytes // per_record)
    if time_chunk > 1:
        step = max(time_chunk, (step // time_chunk) * time_chunk)
    return step


def from_netcdf4(ds: Any) -> Header:
    """The header of an open ``netCDF4.Dataset``."""
    variables = [
        HeaderVariable(
            name,
            tuple(var.dimensions),
            tuple(int(n) for n in var.shape),
            "str" if var.dtype is str else str(var.dtype),
            _attrs(var),
            _reader(var),
        )
        for name, var in ds.variables.items()
    ]
    return Header(
        ds.data_model,
        {name: len(dim) for name, dim in ds.dimensions.items()},
        variables,
        _attrs(ds),
        tuple(ds.groups),
    )


def _attrs(obj: Any) -> dict[str, Any]:
    return {k: jsonable(obj.getncattr(k)) for k in obj.ncattrs()}


def _reader(var: Any) -> Callable[[], np.ndarray[Any, Any]]:
    def read() -> np.ndarray[Any, Any]:
        # Raw values: netCDF4's masked arrays cost more than the whole rest of a header.
        var.set_auto_maskandscale(False)
        return np.asarray(var[:])

    return read

"""Which reader reads a file, and the reads every subsystem makes through it.

:func:`reader_for` tells the format from the file's first bytes. :func:`read` and
:func:`read_slabs` take a reader's direct chunk path (and fused sums) where it has one and
the variable's layout allows, and its library path otherwise: callers never choose.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from insitu.errors import DataError
from insitu.formats.cf import fill_values
from insitu.formats.csv import CsvReader
from insitu.formats.grib import GRIB_SIGNATURE, GribReader
from insitu.formats.netcdf.readers import NetCDF3Reader, NetCDF4Reader, records_per_slab
from insitu.formats.netcdf.truncation import HDF5_SIGNATURE
from insitu.formats.reader import (
    Array,
    DirectVariable,
    FormatReader,
    Index,
    NotDirect,
    Slab,
    SupportsDirectChunks,
    SupportsFusedRowSums,
    SupportsFusedSums,
)
from insitu.formats.tdms import TDMS_SIGNATURE, TdmsReader
from insitu.formats.zarr import ZarrReader, is_zarr_store

__all__ = ["READERS", "read", "read_slabs", "reader_for"]

# One reader per format, by name; reader_for picks one from a file's first bytes.
READERS: dict[str, FormatReader] = {
    "netcdf4": NetCDF4Reader(),
    "netcdf3": NetCDF3Reader(),
    "tdms": TdmsReader(),
    "csv": CsvReader(),
    "grib": GribReader(),
    "zarr": ZarrReader(),
}
_MAGIC = (
    (HDF5_SIGNATURE, "netcdf4"),
    (b"CDF\x01", "netcdf3"),
    (b"CDF\x02", "netcdf3"),
    (b"CDF\x05", "netcdf3"),
    (TDMS_SIGNATURE, "tdms"),
    (GRIB_SIGNATURE, "grib"),
)
_SUFFIXES = {".csv": "csv"}  # formats without a signature


def reader_for(path: str) -> FormatReader:
    """The reader of the file at ``path``, from its first bytes (a Zarr store: a directory
    holding a group's metadata).

    Raises ``OSError`` when the file cannot be opened and :class:`insitu.errors.DataError`
    when it is no format insitu reads.
    """
    if os.path.isdir(path):
        if is_zarr_store(path):
            return READERS["zarr"]
        raise DataError(
            f"{path} is a directory, not a Zarr store (no zarr.json, .zgroup or .zmetadata "
            "in it); remove it or move it out of the archive."
        )
    with open(path, "rb") as fh:
        magic = fh.read(8)
    for start, name in _MAGIC:
        if magic.startswith(start):
            return READERS[name]
    if _hdf5_after_user_block(path):
        return READERS["netcdf4"]
    for suffix, name in _SUFFIXES.items():
        if path.lower().endswith(suffix):
            return READERS[name]
    what = "it is empty" if not magic else f"it starts with {magic[:4]!r}"
    raise DataError(
        f"{path} is not a file insitu reads ({what}); formats: NetCDF-4/HDF5, classic "
        "NetCDF, GRIB, TDMS, .csv and Zarr stores. Remove it or move it out of the archive."
    )


def _hdf5_after_user_block(path: str) -> bool:
    """Whether the file is HDF5 with a user block: its signature at byte 512, 1024, 2048...
    (where the HDF5 library looks for it; h5jam and some writers put text before it)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        offset = 512
        while offset + len(HDF5_SIGNATURE) <= size:
            fh.seek(offset)
            if fh.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
            offset *= 2
    return False


def read(path: str, name: str, index: Index = (), *, direct: bool = True) -> Array:
    """Raw values of variable ``name`` (or its slab ``index``) of the file at ``path``:
    from its chunks directly where the reader and the layout allow, else through the
    reader's library."""
    reader = reader_for(path)
    if direct and isinstance(reader, SupportsDirectChunks):
        with contextlib.suppress(NotDirect):
            return reader.open_direct(path, name).read(index)
    return reader.read(path, name, index)


def read_slabs(
    path: str,
    name: str,
    start: int,
    stop: int,
    chunk_bytes: int,
    *,
    sums: bool = False,
    rows: bool = False,
    direct: bool = True,
) -> Iterator[Slab]:
    """Records ``start:stop`` of ``name`` in slabs of at most ``chunk_bytes`` (at least one
    record, whole stored chunks along time), in order.

    With ``sums``, slabs whose decoding makes their sum on the way carry it as ``total``;
    with ``rows``, slabs whose decoding sums their rows on the way carry those sums as
    ``rows``. Either is in one buffer reused for the next slab (use it before asking for
    that); other slabs leave the sums to the caller, who may not need them. A chunk that
    does not decode halfway sends the rest of the records through the reader's library,
    which says what is wrong with the file.
    """
    if sums and rows:
        raise ValueError("ask for the sums over the records or of the rows, not both")
    reader = reader_for(path)
    var: DirectVariable | None = None
    if direct and isinstance(reader, SupportsDirectChunks):
        with contextlib.suppress(NotDirect):
            var = reader.open_direct(path, name)
    lo = start
    if var is not None:
        fills = fill_values(var.dtype, var.attrs)
        step = records_per_slab(var.shape, var.dtype.itemsize, var.time_chunk, chunk_bytes)
        fused = sums and isinstance(reader, SupportsFusedSums) and reader.sums_while_reading(var)
        total: Any = np.empty(var.shape[1:], np.float64) if fused else None
        by_row = (
            rows
            and len(var.shape) > 1
            and isinstance(reader, SupportsFusedRowSums)
            and reader.row_sums_while_reading(var)
        )
        row_buffer: Any = np.empty((step, *var.shape[1:-1]), np.float64) if by_row else None
        for lo in range(start, stop, step):
            hi = min(lo + step, stop)
            summed = None if row_buffer is None else row_buffer[: hi - lo]
            try:
                if total is not None:
                    assert isinstance(reader, SupportsFusedSums)
                    raw = reader.read_summed(var, lo, hi, total)
                elif summed is not None:
                    assert isinstance(reader, SupportsFusedRowSums)
                    raw = reader.read_row_summed(var, lo, hi, summed)
                else:
                    raw = var.read((slice(lo, hi),))
            except NotDirect:
                break  # the library reads from this slab on
            yield Slab(raw, fills, total, summed)
        else:
            return
    yield from reader.slabs(path, name, lo, stop, chunk_bytes)

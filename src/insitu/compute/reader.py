"""One file's records of one variable, in slabs of bounded size, as the engine reads them.

Records come from the chunks directly (:mod:`insitu.catalog.chunks`: ``pread`` and ISA-L's
inflate, about twice as fast as netCDF-C on compressed files) wherever the layout allows,
and through netCDF4-python otherwise: for other filters or byte orders, classic files,
unallocated chunks, or a chunk that does not decode (netCDF-C then reads the rest of the
file and says what is wrong). Values are raw (no mask, no scale): the engine skips the
fill values itself and scales once at the end. Asked for sums, the direct reader also adds
up each slab's records while it unshuffles them (a time mean then reads no value twice).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from insitu.catalog.chunks import open_direct, read_records, sums_while_unshuffling
from insitu.catalog.layout import FILL_ATTRS, Layout, NotDirect
from insitu.errors import DataError

__all__ = ["FilePart", "Slab", "slabs"]

Array = np.ndarray[Any, Any]


@dataclass(frozen=True, slots=True)
class FilePart:
    """Records ``start:stop`` of variable ``name`` in one file.

    ``direct``: read its chunks directly where the layout allows (else netCDF-C only).
    """

    path: str
    name: str
    start: int
    stop: int
    direct: bool = True


class Slab(NamedTuple):
    """Consecutive records of one file: raw values, the values that mean missing, and
    (when asked for, where the decoding makes it) their float64 sum over the records,
    fills included.
    """

    raw: Array
    fills: list[Any]
    total: Array | None = None


def slabs(part: FilePart, chunk_bytes: int, sums: bool = False) -> Iterator[Slab]:
    """Yield the :class:`Slab` s of ``part``'s records, in order.

    A slab holds at most ``chunk_bytes`` (at least one record), in whole time chunks. With
    ``sums``, slabs whose decoding makes their sum on the way (direct reads of CMOR's layout:
    :func:`insitu.catalog.chunks.sums_while_unshuffling`) carry their ``total``, in one
    buffer reused for the next slab (add it up before asking for that); others leave the
    sum to the caller, who may not need it.
    """
    try:
        yield from _read(part, chunk_bytes, sums)
    except (OSError, RuntimeError, KeyError, IndexError) as exc:
        raise DataError(
            f"Cannot read {part.name!r} records {part.start}:{part.stop} of {part.path}: {exc}. "
            "The file changed or became unreadable since the scan; rescan its collection."
        ) from exc


def _read(part: FilePart, chunk_bytes: int, sums: bool) -> Iterator[Slab]:
    opened: tuple[Layout, int] | None = None
    if part.direct:
        with contextlib.suppress(NotDirect):  # then netCDF-C reads it
            opened = open_direct(part.path, part.name, part.start, part.stop)
    lo = part.start
    if opened is not None:
        lay, fd = opened
        fills = fill_values(lay.dtype, lay.attrs)
        step = _step(lay.shape, lay.dtype.itemsize, lay.time_chunk, chunk_bytes)
        fused = sums and sums_while_unshuffling(lay)
        total = np.empty(lay.shape[1:], np.float64) if fused else None
        try:
            for lo in range(part.start, part.stop, step):
                hi = min(lo + step, part.stop)
                try:
                    slab = read_records(lay, fd, lo, hi, total)
                except NotDirect:
                    break  # netCDF-C reads from this slab on
                yield Slab(slab, fills, total)
            else:
                return
        finally:
            os.close(fd)
    yield from _netcdf4(part, lo, chunk_bytes)


def _netcdf4(part: FilePart, first: int, chunk_bytes: int) -> Iterator[Slab]:
    import netCDF4
    from xarray.backends.locks import HDF5_LOCK

    with HDF5_LOCK, netCDF4.Dataset(part.path, "r") as nc:
        var = nc.variables[part.name]
        var.set_auto_maskandscale(False)
        chunking = var.chunking()
        time_chunk = chunking[0] if isinstance(chunking, list) else 1
        step = _step(var.shape, var.dtype.itemsize, time_chunk, chunk_bytes)
        attrs = {n: var.getncattr(n) for n in FILL_ATTRS if n in var.ncattrs()}
        fills = fill_values(var.dtype, attrs)
        for lo in range(first, part.stop, step):
            yield Slab(np.asarray(var[lo : min(lo + step, part.stop)]), fills)


def _step(shape: tuple[int, ...], itemsize: int, time_chunk: int, chunk_bytes: int) -> int:
    """Records per slab: at most ``chunk_bytes``, at least one, whole time chunks if > 1."""
    per_record = max(1, int(np.prod(shape[1:], dtype=np.int64)) * itemsize)
    step = max(1, chunk_bytes // per_record)
    if time_chunk > 1:
        step = max(time_chunk, (step // time_chunk) * time_chunk)
    return step


def fill_values(dtype: np.dtype[Any], attrs: dict[str, Any]) -> list[Any]:
    """Values that mean 'missing': declared ones, else netCDF's default fill for floats.

    As :func:`insitu.compute.operations.mask_default_fill`, so both engines agree.
    """
    import netCDF4

    fills = []
    for name in FILL_ATTRS:
        if name in attrs:
            value = np.asarray(attrs[name]).ravel()
            if value.size:
                fills.append(value[0])
    if not fills and dtype.kind == "f":
        fills = [netCDF4.default_fillvals[dtype.str[1:]]]
    return fills

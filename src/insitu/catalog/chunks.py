"""Reading a variable's records from its chunks directly: ``pread``, inflate, unshuffle.

netCDF-C inflates with the system zlib; ISA-L's inflate (PyPI ``isal``) gives the same
bytes in about half the time, and decoding is what bounds a mean over compressed files
(BENCHMARKS.md, "Decoding faster than netCDF4"). The chunk index comes from HDF5
(:func:`insitu.catalog.layout.layout`); the bytes are read with ``os.pread`` and decoded
here, straight into the result where a chunk covers whole records. The values are those
netCDF4-python returns with auto mask and scale off (the tests compare them).

"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from isal import isal_zlib as _zlib
from numcodecs.shuffle import Shuffle as _Shuffle

from insitu.catalog.layout import DEFLATE, SHUFFLE, Layout, NotDirect, layout

__all__ = ["NotDirect", "read_direct", "read_records"]

Array = np.ndarray[Any, Any]


def read_direct(path: str, name: str, start: int, stop: int) -> Array:
    """Records ``start:stop`` of variable ``name`` in the file at ``path``, read directly.

    Raises :class:`NotDirect` when its layout is not one this module reads (the caller
    then reads through netCDF-C) and ``OSError`` when the file cannot be opened.
    """
    where, fd = open_direct(path, name, start, stop)
    try:
        return read_records(where, fd, start, stop)
    finally:
        os.close(fd)


def open_direct(path: str, name: str, start: int, stop: int) -> tuple[Layout, int]:
    """The layout of records ``start:stop`` and a descriptor of the very file it describes.

    The file is opened before HDF5 reads its layout and compared with what ``path`` names
    afterwards: a file replaced in between (a re-published copy renamed over it) raises
    :class:`NotDirect` instead of having the new file read at the old one's offsets.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        where = layout(path, name, start, stop)
        _check_same_file(fd, path, where)
    except BaseException:
        os.close(fd)
        raise
    return where, fd


def _check_same_file(fd: int, path: str, where: Layout) -> None:
    held, named = os.fstat(fd), os.stat(path)
    if (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino):
        raise NotDirect("the file was replaced while its layout was read")
    end = max((c.address + c.size for c in where.chunks), default=0)
    if end > held.st_size:
        raise NotDirect("the variable's storage lies beyond the end of the file")


def read_records(layout: Layout, fd: int, lo: int, hi: int) -> Array:
    """Records ``lo:hi`` of the variable ``layout`` describes, read from the open ``fd``.

    Raises :class:`NotDirect` when a chunk does not decode to its size (the caller then
    reads through netCDF-C, which says what is wrong with the file).
    """
    if not layout.start <= lo < hi <= layout.stop:
        raise ValueError(f"records {lo}:{hi} are outside the layout's {layout.start}:{layout.stop}")
    shape, cshape = layout.shape, layout.chunk_shape
    out = np.empty((hi - lo, *shape[1:]), dtype=layout.dtype)
    if layout.contiguous:  # one read
        per_record = out.nbytes // max(hi - lo, 1)
        _pread_into(fd, out, layout.chunks[0].address + lo * per_record)
        return out
    whole_rows = cshape[1:] == shape[1:]
    scratch: Array | None = None
    for chunk in layout.chunks:
        t0 = chunk.origin[0]
        if t0 + cshape[0] <= lo or t0 >= hi:
            continue
        if whole_rows and lo <= t0 and t0 + cshape[0] <= hi:
            _decode(layout, fd, chunk, out[t0 - lo : t0 - lo + cshape[0]])
            continue
        if scratch is None:
            scratch = np.empty(cshape, dtype=layout.dtype)
        _decode(layout, fd, chunk, scratch)
        src = [slice(max(lo - t0, 0), min(hi - t0, cshape[0]))]
        dst = [slice(max(t0 - lo, 0), min(t0 + cshape[0], hi) - lo)]
        for start, n, c in zip(chunk.origin[1:], shape[1:], cshape[1:], strict=True):
            src.append(slice(0, min(c, n - start)))
            dst.append(slice(start, min(start + c, n)))
        out[tuple(dst)] = scratch[tuple(src)]
    return out


def _decode(layout: Layout, fd: int, chunk: Any, dest: Array) -> None:
    """Chunk ``chunk`` decoded into ``dest`` (a C-contiguous array of the chunk's shape)."""
    applied = [
        f for i, f in enumerate(layout.filters) if not chunk.skipped & (1 << i)
    ]  # the filters this chunk went through, in writing order
    if not applied:
        if chunk.size != dest.nbytes:
            raise NotDirect(f"chunk at {chunk.origin} holds {chunk.size} bytes, not {dest.nbytes}")
        _pread_into(fd, dest, chunk.address)
        return
    if chunk.size > dest.nbytes + dest.nbytes // 64 + 4096:  # deflate never grows more
        raise NotDirect(f"chunk at {chunk.origin} claims {chunk.size} bytes for {dest.nbytes}")
    data: Any = os.pread(fd, chunk.size, chunk.address)
    if len(data) != chunk.size:
        raise NotDirect(f"chunk at {chunk.origin} lies beyond the end of the file")
    if applied[-1] == DEFLATE:
        try:
            inflater = _zlib.decompressobj()
            data = inflater.decompress(data, dest.nbytes)
        except Exception as exc:  # isal and zlib both raise their own error types
            raise NotDirect(f"chunk at {chunk.origin} does not inflate: {exc}") from None
        if inflater.unconsumed_tail or not inflater.eof:  # eof: its checksum was verified
            raise NotDirect(f"chunk at {chunk.origin} does not inflate to {dest.nbytes} bytes")
        applied.pop()
    if len(data) != dest.nbytes:
        raise NotDirect(f"chunk at {chunk.origin} decodes to {len(data)} bytes, not {dest.nbytes}")
    if applied == [SHUFFLE]:
        _unshuffle(data, dest)
    else:
        dest.reshape(-1).view(np.uint8)[:] = np.frombuffer(data, np.uint8)


def _unshuffle(data: bytes, dest: Array) -> None:
    """HDF5's shuffle undone: byte ``k`` of every value was stored in the ``k``-th block."""
    raw = np.frombuffer(data, np.uint8)
    _Shuffle(dest.dtype.itemsize).decode(raw, out=dest.reshape(-1).view(np.uint8))


def _pread_into(fd: int, dest: Array, offset: int) -> None:
    view = memoryview(dest.reshape(-1).view(np.uint8).data)
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n <= 0:
            raise NotDirect("the variable's storage lies beyond the end of the file")
        done += n

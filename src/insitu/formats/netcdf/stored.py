"""A netCDF-4 variable's stored chunks handed out as they lie in the file: no inflate, no
unshuffle.

A server that passes a chunk on to a client that decodes it itself (the Zarr view, whose
``zlib`` compressor and ``shuffle`` filter are HDF5's deflate and shuffle) need not decode
it at all: one ``pread`` of the chunk's bytes, which :func:`read_stored` makes from the
layout :mod:`.layout` found. The filter mask says which filters a chunk skipped (HDF5 may
store a chunk unfiltered when a filter fails on it): such a chunk is not what the others
are, and the caller decodes it instead.
"""

from __future__ import annotations

import bisect
import os

from insitu.formats.netcdf.layout import DEFLATE, SHUFFLE, Chunk, Layout, NotDirect
from insitu.formats.reader import StoredChunk

__all__ = ["FILTER_NAMES", "filter_names", "find_chunk", "read_stored"]

FILTER_NAMES = {DEFLATE: "deflate", SHUFFLE: "shuffle"}


def filter_names(layout: Layout) -> tuple[str, ...]:
    """The variable's filters in writing order, by name: ``()``, ``("deflate",)`` or
    ``("shuffle", "deflate")``."""
    return tuple(FILTER_NAMES[f] for f in layout.filters)


def find_chunk(layout: Layout, origin: tuple[int, ...]) -> Chunk:
    """The stored chunk whose first index on each axis is ``origin``; :class:`NotDirect`
    when no chunk of the layout starts there."""
    chunks = layout.chunks  # in C order of their origins (itertools.product)
    at = bisect.bisect_left(chunks, origin, key=_origin)
    if at == len(chunks) or chunks[at].origin != origin:
        raise NotDirect(f"no stored chunk of {layout.name!r} starts at {origin}")
    return chunks[at]


def read_stored(layout: Layout, fd: int, origin: tuple[int, ...]) -> StoredChunk:
    """The bytes of the chunk at ``origin`` as stored in the open ``fd``, with the filters
    they went through (in writing order).

    Raises :class:`NotDirect` when no chunk starts there, or its size is beyond what its
    filters can make of a chunk's values, or it lies beyond the end of the file.
    """
    chunk = find_chunk(layout, origin)
    nbytes = layout.dtype.itemsize
    for n in layout.chunk_shape:
        nbytes *= n
    applied = tuple(
        FILTER_NAMES[f] for i, f in enumerate(layout.filters) if not chunk.skipped & (1 << i)
    )
    limit = nbytes + nbytes // 64 + 4096 if "deflate" in applied else nbytes
    if chunk.size > limit:
        raise NotDirect(f"chunk at {origin} claims {chunk.size} bytes for {nbytes}")
    data = os.pread(fd, chunk.size, chunk.address)
    if len(data) != chunk.size:
        raise NotDirect(f"chunk at {origin} lies beyond the end of the file")
    return StoredChunk(data, applied, chunk.skipped)


def _origin(chunk: Chunk) -> tuple[int, ...]:
    return chunk.origin

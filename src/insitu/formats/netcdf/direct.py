"""Reading a variable's records from its chunks directly: ``pread``, inflate, unshuffle.

netCDF-C inflates with the system zlib; ISA-L's inflate (PyPI ``isal``) gives the same
bytes in about half the time, and decoding is what bounds a mean over compressed files
(BENCHMARKS.md, "Decoding faster than netCDF4"). The chunk index comes from HDF5
(:func:`.layout.layout`); the bytes are read with ``os.pread`` and decoded here, straight
into the result where a chunk covers whole records. The shuffle is undone in C
(:mod:`.unshuffle`, about 6x numcodecs' loop; NumPy where the C module was not built), which
can also make the float64 sum over the records (a time mean) or of every row (a field mean)
as it goes, so a mean does not read the values a second time. The values are those
netCDF4-python returns with auto mask and scale off (the tests compare them). No call here
takes the HDF5 lock: only reading a layout does.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from isal import isal_zlib as _zlib

from insitu.formats.netcdf import stored as _stored
from insitu.formats.netcdf import unshuffle as _shuffle
from insitu.formats.netcdf.layout import DEFLATE, SHUFFLE, Chunk, Layout, NotDirect, layout
from insitu.formats.reader import Index, StoredChunk

__all__ = [
    "ChunkedVariable",
    "NotDirect",
    "chunks_read",
    "open_variable",
    "read_direct",
    "read_records",
    "read_slab",
    "record_sum",
    "row_sums",
    "sums_while_unshuffling",
]

_ROWS_BUFFER = 2**15  # values row_sums copies to float64 at a time (256 KiB: in cache)

Array = np.ndarray[Any, Any]


class _Counter:
    """Stored chunks read by this module in this process (a contiguous read counts one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, n: int) -> None:
        with self._lock:  # about 0.1 us; decoding a chunk takes milliseconds
            self.value += n


_READ = _Counter()


def chunks_read() -> int:
    """How many stored chunks (or contiguous extents) the direct reader has read in this
    process so far: the difference over a call says what it read (tests, benchmarks)."""
    return _READ.value


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


def read_records(
    layout: Layout,
    fd: int,
    lo: int,
    hi: int,
    total: Array | None = None,
    rows: Array | None = None,
) -> Array:
    """Records ``lo:hi`` of the variable ``layout`` describes, read from the open ``fd``.

    With ``total`` (float64, of one record's shape; floating-point variables only), it is
    set to the sum over the records read, added in record order from the first. With
    ``rows`` (float64, of the records' shape without the last axis; floating-point too), it
    is set to the sums along the last axis (:func:`row_sums`). Where every chunk holds whole
    records and went through shuffle and deflate (CMOR's layout), the sums are made while
    the values are unshuffled, in cache-sized blocks, at hardly any cost.

    Raises :class:`NotDirect` when a chunk does not decode to its size (the caller then
    reads through netCDF-C, which says what is wrong with the file).
    """
    if not layout.start <= lo < hi <= layout.stop:
        raise ValueError(f"records {lo}:{hi} are outside the layout's {layout.start}:{layout.stop}")
    shape, cshape = layout.shape, layout.chunk_shape
    out = np.empty((hi - lo, *shape[1:]), dtype=layout.dtype)
    if total is not None and rows is not None:
        raise ValueError("ask for the sum over the records (total) or of the rows, not both")
    if rows is not None and len(shape) < 2:
        raise ValueError(f"records of shape {shape[1:]} have no rows to sum: give no rows")
    _check_sums("sum", total, out.shape[1:], layout.dtype, "one record's shape")
    _check_sums(
        "row sums", rows, out.shape[:-1], layout.dtype, "the records' shape without their last axis"
    )
    if layout.contiguous:  # one read
        per_record = out.nbytes // max(hi - lo, 1)
        _pread_into(fd, out, layout.chunks[0].address + lo * per_record)
        _READ.add(1)
    else:
        wanted = [c for c in layout.chunks if c.origin[0] < hi and c.origin[0] + cshape[0] > lo]
        if total is not None and _fusable(layout, wanted, lo, hi):
            _decode_summed(layout, fd, wanted, out, total)
            return out
        if rows is not None and _fusable(layout, wanted, lo, hi):
            _decode_rows(layout, fd, wanted, out, rows)
            return out
        _read_chunks(layout, fd, wanted, lo, hi, out)
    if total is not None:
        record_sum(out, total)
    if rows is not None:
        rows[...] = row_sums(out)
    return out


def _check_sums(
    what: str, sums: Array | None, shape: tuple[int, ...], dtype: np.dtype[Any], form: str
) -> None:
    if sums is not None and (
        sums.shape != shape
        or sums.dtype != np.float64
        or not sums.flags.c_contiguous
        or dtype.kind != "f"
    ):
        raise ValueError(
            f"the {what} of {dtype} records cannot go into a {sums.dtype} array of shape "
            f"{sums.shape}: give a C-ordered float64 array of shape {shape} ({form}), for a "
            "floating-point variable"
        )


def record_sum(values: Array, total: Array) -> None:
    """``total`` set to the float64 sum of ``values`` over its first axis, record by record
    from the first (numpy converts each record in cache-sized pieces: about twice as fast
    as a reduction with ``dtype=float64``)."""
    np.copyto(total, values[0])
    for record in values[1:]:
        np.add(total, record, out=total)


def row_sums(values: Array) -> Array:
    """float64 sums along the last axis of ``values``: NumPy's sums of a float64 copy (its
    pairwise summation), which the fused reads give too.

    Values of another type are copied to a float64 buffer of about ``_ROWS_BUFFER`` values
    at a time and summed there: about twice as fast as a reduction with ``dtype=float64``,
    whose buffered casts would also cut rows longer than its buffer into other pairs.
    """
    if values.dtype == np.float64:
        summed: Array = np.add.reduce(values, axis=-1)
        return summed
    width = values.shape[-1]
    flat = values.reshape(-1, width)
    rows = np.empty(flat.shape[0], dtype=np.float64)
    step = max(1, _ROWS_BUFFER // max(width, 1))
    buf = np.empty((min(step, len(flat)), width), dtype=np.float64)
    for i in range(0, len(flat), step):
        part = flat[i : i + step]
        np.copyto(buf[: len(part)], part)
        np.add.reduce(buf[: len(part)], axis=-1, out=rows[i : i + len(part)])
    return rows.reshape(values.shape[:-1])


def sums_while_unshuffling(layout: Layout) -> bool:
    """Whether :func:`read_records` makes a slab's sums (over its records, or of its rows)
    while it unshuffles (for slabs of whole time chunks): chunks of whole records, shuffled
    then deflated, floating point."""
    return (
        layout.filters == (SHUFFLE, DEFLATE)
        and layout.chunk_shape[1:] == layout.shape[1:]
        and layout.dtype.kind == "f"
    )


def _fusable(layout: Layout, wanted: list[Chunk], lo: int, hi: int) -> bool:
    """Whether the chunks hold exactly records lo:hi, whole, shuffled then deflated."""
    if not sums_while_unshuffling(layout):
        return False
    step = layout.chunk_shape[0]
    if (hi - lo) % step or any(c.skipped for c in wanted):
        return False
    return [c.origin[0] for c in wanted] == list(range(lo, hi, step))


def _read_chunks(
    layout: Layout, fd: int, wanted: list[Chunk], lo: int, hi: int, out: Array
) -> None:
    """Each chunk decoded into ``out`` (records lo:hi): in place where it holds whole
    records inside the range, through a scratch chunk otherwise."""
    shape, cshape = layout.shape, layout.chunk_shape
    whole_rows = cshape[1:] == shape[1:]
    scratch: Array | None = None
    for chunk in wanted:
        t0 = chunk.origin[0]
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


def _decode_summed(layout: Layout, fd: int, wanted: list[Chunk], out: Array, total: Array) -> None:
    """The chunks inflated, then unshuffled into ``out`` with their sum made on the way."""
    nbytes = out.nbytes // len(wanted)
    _READ.add(len(wanted))
    inflated = [_inflate(chunk, _read(fd, chunk, nbytes), nbytes) for chunk in wanted]
    _shuffle.unshuffle_sum(inflated, out, out.dtype.itemsize, total)


def _decode_rows(layout: Layout, fd: int, wanted: list[Chunk], out: Array, rows: Array) -> None:
    """Each chunk inflated, then unshuffled into ``out`` with the sums of its rows made on
    the way, while its inflated bytes are still in the processor's cache."""
    step = layout.chunk_shape[0]
    nbytes = out.nbytes // len(wanted)
    _READ.add(len(wanted))
    for i, chunk in enumerate(wanted):
        data = _inflate(chunk, _read(fd, chunk, nbytes), nbytes)
        at = slice(i * step, (i + 1) * step)
        _shuffle.unshuffle_rows([data], out[at], out.dtype.itemsize, rows[at])


def _decode(layout: Layout, fd: int, chunk: Chunk, dest: Array) -> None:
    """Chunk ``chunk`` decoded into ``dest`` (a C-contiguous array of the chunk's shape)."""
    _READ.add(1)
    applied = [
        f for i, f in enumerate(layout.filters) if not chunk.skipped & (1 << i)
    ]  # the filters this chunk went through, in writing order
    if not applied:
        if chunk.size != dest.nbytes:
            raise NotDirect(f"chunk at {chunk.origin} holds {chunk.size} bytes, not {dest.nbytes}")
        _pread_into(fd, dest, chunk.address)
        return
    data = _read(fd, chunk, dest.nbytes)
    if applied[-1] == DEFLATE:
        data = _inflate(chunk, data, dest.nbytes)
        applied.pop()
    if len(data) != dest.nbytes:
        raise NotDirect(f"chunk at {chunk.origin} decodes to {len(data)} bytes, not {dest.nbytes}")
    if applied == [SHUFFLE]:  # byte k of every value was stored in the k-th block
        _shuffle.unshuffle(data, dest, dest.dtype.itemsize)
    else:
        dest.reshape(-1).view(np.uint8)[:] = np.frombuffer(data, np.uint8)


def _read(fd: int, chunk: Chunk, nbytes: int) -> bytes:
    """The stored bytes of a filtered chunk that decodes to ``nbytes``."""
    if chunk.size > nbytes + nbytes // 64 + 4096:  # deflate never grows more
        raise NotDirect(f"chunk at {chunk.origin} claims {chunk.size} bytes for {nbytes}")
    data = os.pread(fd, chunk.size, chunk.address)
    if len(data) != chunk.size:
        raise NotDirect(f"chunk at {chunk.origin} lies beyond the end of the file")
    return data


def _inflate(chunk: Chunk, data: bytes, nbytes: int) -> bytes:
    """``data`` inflated, which must give exactly ``nbytes`` and end its stream."""
    try:
        inflater = _zlib.decompressobj()
        out: bytes = inflater.decompress(data, nbytes)
    except Exception as exc:  # isal and zlib both raise their own error types
        raise NotDirect(f"chunk at {chunk.origin} does not inflate: {exc}") from None
    if inflater.unconsumed_tail or not inflater.eof:  # eof: its checksum was verified
        raise NotDirect(f"chunk at {chunk.origin} does not inflate to {nbytes} bytes")
    if len(out) != nbytes:
        raise NotDirect(f"chunk at {chunk.origin} decodes to {len(out)} bytes, not {nbytes}")
    return out


def _pread_into(fd: int, dest: Array, offset: int) -> None:
    view = memoryview(dest.reshape(-1).view(np.uint8).data)
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n <= 0:
            raise NotDirect("the variable's storage lies beyond the end of the file")
        done += n


def read_slab(layout: Layout, fd: int, index: Index = ()) -> Array:
    """The slab ``index`` (slices of step 1, one per axis; fewer: the rest whole) of the
    variable ``layout`` describes, read from the open ``fd``: only the chunks it meets.

    Raises :class:`NotDirect` as :func:`read_records`, and ``IndexError`` for a slab
    outside the layout's records.
    """
    if layout.unlimited and not (index and index[0].stop is not None):
        raise NotDirect("a record variable read whole: netCDF's length may exceed the stored")
    bounds = _bounds(index, layout.shape)
    (lo, hi), rest = bounds[0], bounds[1:]
    if not layout.start <= lo <= hi <= layout.stop:
        raise NotDirect(f"records {lo}:{hi} are not all stored ({layout.start}:{layout.stop})")
    extent = tuple(b - a for a, b in bounds)
    if 0 in extent:
        return np.empty(extent, layout.dtype)
    if layout.contiguous or all(
        (a, b) == (0, n) for (a, b), n in zip(rest, layout.shape[1:], strict=True)
    ):
        records = read_records(layout, fd, lo, hi)
        return records if not rest else records[(slice(None), *(slice(a, b) for a, b in rest))]
    out = np.empty(extent, layout.dtype)
    cshape = layout.chunk_shape
    scratch = np.empty(cshape, layout.dtype)
    first = bisect.bisect_left(layout.chunks, lo - lo % cshape[0], key=_time_origin)
    for chunk in layout.chunks[first:]:
        if chunk.origin[0] >= hi:
            break
        src, dst = [], []
        for (a, b), c0, c in zip(bounds, chunk.origin, cshape, strict=True):
            start, stop = max(a, c0), min(b, c0 + c)
            if start >= stop:
                break
            src.append(slice(start - c0, stop - c0))
            dst.append(slice(start - a, stop - a))
        else:
            _decode(layout, fd, chunk, scratch)
            out[tuple(dst)] = scratch[tuple(src)]
    return out


def _time_origin(chunk: Chunk) -> int:
    return chunk.origin[0]


def _bounds(index: Index, shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """``index`` as (start, stop) per axis, checked: slices of step 1 within ``shape``."""
    if len(index) > len(shape):
        raise IndexError(f"{len(index)} slices for a variable of {len(shape)} axes")
    out = []
    for i, n in enumerate(shape):
        s = index[i] if i < len(index) else slice(None)
        if s.step not in (None, 1) or (s.start or 0) < 0 or (s.stop or 0) < 0:
            raise IndexError(f"slice {s}: the direct reader reads slices of step 1 from 0 up")
        start = s.start or 0
        stop = n if s.stop is None else s.stop
        if stop > n and i == 0:
            raise NotDirect(f"records {start}:{stop} are not all stored (extent {n})")
        out.append((min(start, n), max(min(start, n), min(stop, n))))
    return out


class ChunkedVariable:
    """A netCDF-4 variable read from its stored chunks: the layout of all its records and
    the identity of the file it describes (a :class:`insitu.formats.DirectVariable`).

    Each read opens the file, checks it is still the one the layout describes (else
    :class:`NotDirect`), reads with ``pread`` and closes it, so one instance serves any
    number of threads and can be kept for as long as the file does not change.
    """

    __slots__ = ("identity", "layout", "path")

    def __init__(self, path: str, layout: Layout, identity: tuple[int, ...]) -> None:
        self.path, self.layout, self.identity = path, layout, identity

    @property
    def name(self) -> str:
        return self.layout.name

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.layout.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self.layout.shape

    @property
    def attrs(self) -> dict[str, Any]:
        return self.layout.attrs

    @property
    def time_chunk(self) -> int:
        return self.layout.time_chunk

    def read(self, index: Index = ()) -> Array:
        """The raw values of slab ``index``."""
        with self._fd() as fd:
            return read_slab(self.layout, fd, index)

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        return self.layout.chunk_shape

    @property
    def filters(self) -> tuple[str, ...]:
        return _stored.filter_names(self.layout)

    def stored_chunk(self, origin: tuple[int, ...]) -> StoredChunk:
        """The chunk at ``origin`` as stored (:func:`.stored.read_stored`), not decoded."""
        with self._fd() as fd:
            return _stored.read_stored(self.layout, fd, origin)

    def records(
        self, lo: int, hi: int, total: Array | None = None, rows: Array | None = None
    ) -> Array:
        """Records ``lo:hi``, with their sum in ``total`` or the sums of their rows in
        ``rows`` if given (:func:`read_records`)."""
        if not 0 <= lo < hi <= self.layout.stop:
            raise NotDirect(f"records {lo}:{hi} are not all stored ({self.layout.stop})")
        with self._fd() as fd:
            return read_records(self.layout, fd, lo, hi, total, rows)

    @contextmanager
    def _fd(self) -> Iterator[int]:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if _identity(os.fstat(fd)) != self.identity:
                raise NotDirect("the file changed since its layout was read")
            yield fd
        finally:
            os.close(fd)


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def open_variable(path: str, name: str) -> ChunkedVariable:
    """Variable ``name`` of the file at ``path``, ready to be read from its chunks.

    Raises :class:`NotDirect` when its layout is not one this module reads, ``OSError``
    when the file cannot be opened. Takes the HDF5 lock (to read the layout).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        where = layout(path, name)
        _check_same_file(fd, path, where)
        return ChunkedVariable(path, where, _identity(os.fstat(fd)))
    finally:
        os.close(fd)

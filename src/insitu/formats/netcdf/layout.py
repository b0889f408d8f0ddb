"""Where a netCDF-4 variable's values are stored: its HDF5 chunks, their filters and places.

A time or field mean is bounded by decoding (inflate and unshuffle), and netCDF-C's read
path inflates with the system zlib. Knowing where each chunk lies, a reader can fetch the
bytes itself and decode them with a faster inflate (see :mod:`.direct`). This module asks
h5py for the layout (``DatasetID.chunk_iter``: every stored chunk's origin, byte offset,
size and filter mask in one call); it reads no values. A ctypes reader of the same index was
2-7x faster at this alone, but the index is about 1% of a compressed mean, so the library
does it (BENCHMARKS.md, "Formats: home-made vs library"). Without h5py (an optional
dependency) every layout is refused and netCDF-C reads the values.

Handled: a variable stored contiguously, or chunked with no filter, deflate, or shuffle then
deflate (what netCDF-C and CMOR write), of a little-endian integer or floating-point type,
every chunk it needs allocated. Anything else raises :class:`NotDirect` and the caller reads
through netCDF-C.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from insitu.formats.cf import FILL_ATTRS
from insitu.formats.lock import HDF5_LOCK
from insitu.formats.reader import NotDirect

__all__ = ["DEFLATE", "FILL_ATTRS", "SHUFFLE", "Chunk", "Layout", "NotDirect", "layout"]

log = logging.getLogger(__name__)
_warned = False  # the missing h5py is said once per process

# H5Z filter ids (stable since 1.8).
DEFLATE, SHUFFLE = 1, 2
_PIPELINES = {(), (DEFLATE,), (SHUFFLE, DEFLATE)}
# What netCDF-C writes: a dimension without a variable, a variable named like a dimension.
_PURE_DIM = b"This is a netCDF dimension but not a netCDF variable"
_NON_COORD = "_nc4_non_coord_"


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


def _h5py() -> Any:
    global _warned
    try:
        import h5py  # type: ignore[import-untyped]
    except ImportError:
        if not _warned:
            _warned = True
            log.warning(
                "direct chunk reads need h5py (pip install h5py): netCDF-C reads every "
                "variable, and means over compressed files take about twice as long"
            )
        raise NotDirect("h5py is not installed (pip install h5py for direct reads)") from None
    if not hasattr(h5py.h5d.DatasetID, "chunk_iter"):
        raise NotDirect("h5py is older than 3.8, or its HDF5 than 1.12.3 (no chunk_iter)")
    return h5py


def layout(path: str, name: str, start: int = 0, stop: int | None = None) -> Layout:
    """The storage of records ``start:stop`` (along the first axis; all by default) of
    variable ``name``.

    Raises :class:`NotDirect` when the file, the variable or its storage is not one the
    direct reader handles, with the reason. Takes :data:`insitu.formats.HDF5_LOCK` (h5py
    and netCDF-C may share one HDF5 library, which is not thread-safe): do not call it
    while holding that lock.
    """
    h5py = _h5py()
    with HDF5_LOCK:
        # HDF5's default (weak) close, as netCDF-C opens files: where both share one HDF5
        # library, a second open of a file with another close degree would be refused.
        fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        fapl.set_fclose_degree(h5py.h5f.CLOSE_WEAK)
        try:
            fid = h5py.h5f.open(path.encode(), h5py.h5f.ACC_RDONLY, fapl=fapl)
        except Exception:
            raise NotDirect("HDF5 cannot open it") from None
        f = h5py.File(fid)
        try:
            return _describe(h5py, f, path, name, start, stop)
        except NotDirect:
            raise
        except Exception as exc:  # an HDF5 error on a damaged file: netCDF-C says what
            raise NotDirect(f"HDF5: {exc}") from None
        finally:
            f.close()


def _describe(h5py: Any, f: Any, path: str, name: str, start: int, stop: int | None) -> Layout:
    # A variable named like a dimension it is not the coordinate of is stored under
    # netCDF-C's prefix; the dataset with the plain name is then the dimension's scale.
    ds = f.get(_NON_COORD + name)
    if ds is None:
        ds = f.get(name)
    if not isinstance(ds, h5py.Dataset):
        raise NotDirect(f"{name!r} is not a dataset")
    attrs = ds.attrs
    label = attrs.get("NAME") if "CLASS" in attrs else None
    if isinstance(label, bytes | np.bytes_) and label.startswith(_PURE_DIM):
        raise NotDirect(f"{name!r} is a dimension without values")
    shape, maxshape = tuple(ds.shape), tuple(ds.maxshape)
    if stop is None:
        stop = shape[0] if shape else 0
    if not shape or not 0 <= start < stop <= shape[0]:
        raise NotDirect(f"records {start}:{stop} are not all stored (extent {shape})")
    unlimited = maxshape[0] is None
    if any(m is None for m in maxshape[1:]):
        raise NotDirect("an unlimited dimension after the first (netCDF-C pads it)")
    dtype = ds.dtype
    if dtype.kind not in "iuf" or dtype.byteorder == ">" or dtype.itemsize > 8:
        raise NotDirect(f"type {dtype.str} is not a little-endian number")
    dtype = dtype.newbyteorder("=")
    plist = ds.id.get_create_plist()
    kind = plist.get_layout()
    fills = _fill_attrs(attrs)
    if kind == h5py.h5d.CONTIGUOUS:
        address = ds.id.get_offset()
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if address is None or ds.id.get_storage_size() != nbytes:
            raise NotDirect("contiguous storage not allocated")
        whole = (Chunk((0,) * len(shape), address, nbytes, 0),)
        return Layout(path, name, dtype, shape, shape, (), whole, fills, start, stop, unlimited)
    if kind != h5py.h5d.CHUNKED:
        raise NotDirect("compact or virtual storage")
    chunk_shape = tuple(ds.chunks)
    filters = tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))
    if filters not in _PIPELINES:
        raise NotDirect(f"filters {filters} (only deflate, shuffle+deflate or none)")
    first = (start // chunk_shape[0]) * chunk_shape[0]
    found: dict[tuple[int, ...], Chunk] = {}

    def keep(info: Any) -> None:
        origin = tuple(info.chunk_offset)
        if first <= origin[0] < stop and info.byte_offset is not None:
            found[origin] = Chunk(origin, info.byte_offset, info.size, info.filter_mask)

    ds.id.chunk_iter(keep)
    axes = [range(first, stop, chunk_shape[0])]
    axes += [range(0, n, c) for n, c in zip(shape[1:], chunk_shape[1:], strict=True)]
    chunks = []
    for corner in itertools.product(*axes):
        chunk = found.get(corner)
        if chunk is None:
            raise NotDirect(f"chunk at {corner} is not allocated")
        chunks.append(chunk)
    return Layout(
        path,
        name,
        dtype,
        shape,
        chunk_shape,
        filters,
        tuple(chunks),
        fills,
        start,
        stop,
        unlimited,
    )


def _fill_attrs(attrs: Any) -> dict[str, Any]:
    """_FillValue and missing_value as netCDF4-python gives them: numpy values of the
    attribute's own type (a scalar for one value)."""
    found: dict[str, Any] = {}
    for text in FILL_ATTRS:
        if text not in attrs:
            continue
        values = np.asarray(attrs[text])
        if values.dtype.kind not in "iuf":
            raise NotDirect(f"attribute {text!r} is not a number")
        values = values.reshape(-1)
        found[text] = values[0] if values.size == 1 else values
    return found

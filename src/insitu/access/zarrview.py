"""The read-only Zarr view of a dataset: metadata from the index, chunks from the files.

The view is Zarr format 2 with consolidated metadata (``.zmetadata``, plus ``.zgroup``,
``.zattrs`` and ``{var}/.zarray``, ``{var}/.zattrs`` with ``_ARRAY_DIMENSIONS``): format 2
is the one that zarr-python 2 and 3 and xarray all read, and consolidated metadata lets a
client open a dataset with one request instead of one per variable.

Values are served encoded, as they are stored in the files, with the CF attributes of the
first file (``_FillValue`` as the array's ``fill_value``, ``missing_value``,
``scale_factor``, ``units``, ``calendar``... in ``.zattrs``). xarray decodes them on the
client exactly as :meth:`insitu.catalog.Catalog.open_dataset` decodes the same encoded
dataset locally, so both give the same values. The time axis and the re-encoding of
time-like variables of files that count time from another date are the catalog's.

Metadata comes from the catalog's records (shapes, types, attributes; the time coordinate
from the values the scan stored); only the storage layout of each array's first file is read
to build a view (see below). A chunk request
reads one slab from the one file that holds it (two files only where file lengths leave
no aligned chunking; see :func:`time_chunk`), through :class:`insitu.formats.OpenFiles`:
from the stored chunks directly where the layout allows (no HDF5 lock, so requests decode
in parallel), through the format library on a handle kept open otherwise.

Where a variable's file stores it as a Zarr client can decode it (deflate, shuffle first or
not, a little-endian number) and each chunk of the view is one stored chunk of one file
(the view takes the files' chunk shape, and every file starts at a multiple of its length
along time), the view declares numcodecs' ``zlib`` compressor and ``shuffle`` filter (HDF5's
very byte transposition) and serves each chunk's stored bytes as they are: one ``pread``,
nothing decoded or compressed (:class:`StoredCodecs`). A chunk stored otherwise (a filter
skipped, a file chunked differently, time re-encoded) is encoded with the same codecs from
its values, so every chunk of the array is valid under its one ``.zarray``.
"""

from __future__ import annotations

import base64
import bisect
import json
import logging
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from insitu._util import LRU
from insitu.access.deps import strong_etag
from insitu.catalog import (
    Catalog,
    DatasetRecord,
    FileRecord,
    LocatedFile,
    group_by_variables,
    reencode_from,
    sorted_members,
    time_like_units,
    time_values,
)
from insitu.errors import ConfigError, DataError, InvalidRequest, NotFound
from insitu.formats import (
    NotDirect,
    SupportsStoredChunks,
    WouldBlock,
    reencode_time,
    stat_dataset,
    with_time_units,
)
from insitu.formats import OpenFiles as _Cache

__all__ = [
    "COMPRESSOR",
    "ArrayPlan",
    "ChunkRef",
    "OpenFiles",
    "Source",
    "StoredCodecs",
    "WouldBlock",
    "ZarrView",
    "ZarrViews",
    "chunk_shape",
    "time_chunk",
]

log = logging.getLogger(__name__)

# Enters every ETag: bump it when the layout or the encoding of the view changes, so that
# clients holding chunks of an older layout do not revalidate them as current.
VIEW_VERSION = 2  # 2: stored chunks served as they are (StoredCodecs)
# Stored chunks are served as they are when at least this share of zarr_chunk_bytes.
STORED_MIN_SHARE = 8

# No compressor. Measured on loopback (2 cores, 6.7 MiB float32 chunks of a noisy field):
# zlib level 1 (what numcodecs' "zlib" codec reads) sent 80 % of the bytes but served 8-11
# MiB/s against 47-80 MiB/s without, because compressing costs about 15 times more than
# reading the slab. Set it to {"id": "zlib", "level": 1} for slow links and sparse data.
COMPRESSOR: dict[str, Any] | None = None

# The index keeps CF attributes (_FillValue, missing_value, ...) as JSON numbers whose
# float64 value is exactly the file's value (float32 1e20 is kept as 1.0000000200408773e20),
# so xarray's masking on the client compares equal to the raw values.
_FILL = "_FillValue"


@dataclass(frozen=True, slots=True)
class Source:
    """One file's part of an array along time (the whole array for time-invariant ones)."""

    record: FileRecord
    path: str  # absolute
    start: int  # first record of this file along the time axis of the array
    length: int  # records along the time axis (0 for a time-invariant array)
    from_units: str | None = None  # re-encode time-like values from these units

    @property
    def identity(self) -> tuple[str, int, int]:
        """What an ETag of data read from this file depends on."""
        return (self.record.path, self.record.size, self.record.mtime_ns)


@dataclass(frozen=True, slots=True)
class StoredCodecs:
    """The codecs of an array served as its files store it: numcodecs' ``zlib`` (HDF5's
    deflate: a zlib stream) after ``shuffle`` (HDF5's shuffle) or alone."""

    shuffle: bool
    level: int = 1  # for chunks encoded here; a zlib stream decodes whatever its level

    @property
    def filters(self) -> tuple[str, ...]:
        """The files' filters, as :class:`insitu.formats.SupportsStoredChunks` names them."""
        return ("shuffle", "deflate") if self.shuffle else ("deflate",)

    def compressor(self) -> dict[str, Any]:
        """The ``.zarray`` compressor."""
        return {"id": "zlib", "level": self.level}

    def zfilters(self, itemsize: int) -> list[dict[str, Any]] | None:
        """The ``.zarray`` filters."""
        return [{"id": "shuffle", "elementsize": itemsize}] if self.shuffle else None

    def encode(self, values: np.ndarray[Any, Any]) -> bytes:
        """A chunk's values (C order, the array's type) encoded as the files store them."""
        raw = np.ascontiguousarray(values).reshape(-1).view(np.uint8)
        if self.shuffle:  # byte k of every value together, k = 0, 1, ...
            raw = np.ascontiguousarray(raw.reshape(-1, values.dtype.itemsize).T)
        return zlib.compress(raw.data, self.level)


@dataclass(frozen=True, slots=True, eq=False)
class ArrayPlan:
    """One array of the view: its Zarr metadata and where each chunk's values come from."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype[Any]
    fill_value: Any  # as written in .zarray
    attrs: dict[str, Any]
    sources: tuple[Source, ...]
    taxis: int | None = None  # axis along which sources follow each other
    to_units: str | None = None  # time-like: the units of the first file
    calendar: str = "standard"
    values: np.ndarray[Any, Any] | None = None  # served from memory (the time coordinate)
    starts: tuple[int, ...] = field(default=())
    stored: StoredCodecs | None = None  # chunks served as the files store them

    @property
    def grid(self) -> tuple[int, ...]:
        """Number of chunks along each axis."""
        return tuple(math.ceil(n / c) for n, c in zip(self.shape, self.chunks, strict=True))

    def zarray(self, compressor: dict[str, Any] | None) -> dict[str, Any]:
        """The ``.zarray`` document (``compressor`` unless the files' codecs are served)."""
        filters = [{"id": "vlen-utf8"}] if self.dtype.kind == "O" else None
        if self.stored is not None:
            compressor = self.stored.compressor()
            filters = self.stored.zfilters(self.dtype.itemsize)
        return {
            "zarr_format": 2,
            "shape": list(self.shape),
            "chunks": list(self.chunks),
            "dtype": self.dtype.str,
            "compressor": compressor,
            "fill_value": self.fill_value,
            "order": "C",
            # Variable-length strings: numcodecs' vlen-utf8, which every format 2 client reads.
            "filters": filters,
            "dimension_separator": ".",
        }

    def zattrs(self) -> dict[str, Any]:
        """The ``.zattrs`` document (``_FillValue`` is the array's ``fill_value`` instead)."""
        attrs = {k: v for k, v in self.attrs.items() if k != _FILL}
        return {**attrs, "_ARRAY_DIMENSIONS": list(self.dims)}


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """A chunk of an array, by its index in the chunk grid."""

    plan: ArrayPlan
    index: tuple[int, ...]
    key: str

    @property
    def nbytes(self) -> int:
        """Bytes of the chunk's values, before compression."""
        return math.prod(self.plan.chunks) * self.plan.dtype.itemsize

    @property
    def selection(self) -> tuple[slice, ...]:
        """The region of the array this chunk holds (cut at the array's edge)."""
        return tuple(
            slice(i * c, min((i + 1) * c, n))
            for i, c, n in zip(self.index, self.plan.chunks, self.plan.shape, strict=True)
        )

    def sources(self) -> list[Source]:
        """The files this chunk reads from (one unless the chunk spans a file boundary)."""
        plan = self.plan
        if plan.values is not None:
            return []
        if plan.taxis is None:
            return list(plan.sources)
        t = self.selection[plan.taxis]
        first = bisect.bisect_right(plan.starts, t.start) - 1
        out = []
        for src in plan.sources[max(first, 0) :]:
            if src.start >= t.stop:
                break
            if src.start + src.length > t.start:
                out.append(src)
        return out


def time_chunk(lengths: Sequence[int], fit: int) -> int:
    """Chunk length along time for files of ``lengths`` records, at most ``fit`` records.

    A chunk length that divides every file's length but the last one's (their gcd) puts
    each chunk in one file, so a chunk request opens one file. When that length is more
    than 4 times shorter than a whole file (or than ``fit``) allows, as for daily files of
    366 and 365 records (gcd 1), chunks that tiny would multiply the requests of a time
    series by hundreds: then the chunk is as long as the longest file (or ``fit``) and a
    few chunks read from two files.
    """
    total = sum(lengths)
    fit = max(1, fit)
    g = math.gcd(*lengths[:-1])  # 0 for one file: every length is aligned
    if g == 0:
        return max(1, min(fit, total))
    aligned = _largest_divisor(g, fit)
    ideal = max(1, min(fit, max(lengths)))
    return aligned if aligned * 4 >= ideal else ideal


def _largest_divisor(n: int, limit: int) -> int:
    best, i = 1, 1
    while i * i <= n:
        if n % i == 0:
            for d in (i, n // i):
                if best < d <= limit:
                    best = d
        i += 1
    return best


def chunk_shape(
    shape: Sequence[int],
    itemsize: int,
    target: int,
    taxis: int | None = None,
    lengths: Sequence[int] = (),
) -> tuple[int, ...]:
    """Chunks of at most ``target`` bytes (or one element), in C order.

    Outer axes are cut first, so that a chunk is a contiguous slab of the file's C-order
    variable; along ``taxis`` the length follows :func:`time_chunk` of the files'
    ``lengths``. One record bigger than ``target`` is split along the next axes.
    """
    chunks = [max(1, n) for n in shape]
    for axis in range(len(chunks)):
        inner = itemsize * math.prod(chunks[axis + 1 :])
        fit = max(1, target // inner)
        if axis == taxis:
            chunks[axis] = time_chunk(lengths, fit)
        else:
            chunks[axis] = min(chunks[axis], fit)
        if inner <= target:
            break
    return tuple(chunks)


def _fill_value(value: Any, dtype: np.dtype[Any]) -> Any:
    """``_FillValue`` as a format 2 ``.zarray`` ``fill_value`` (None: no fill value)."""
    if value is None:
        return None
    if isinstance(value, list):
        value = value[0] if value else None
        if value is None:
            return None
    try:
        if dtype.kind == "S":
            raw = value.encode() if isinstance(value, str) else bytes(value)
            return base64.standard_b64encode(raw[: dtype.itemsize]).decode()
        scalar = np.array(value).astype(dtype, casting="unsafe").item()
    except (TypeError, ValueError, OverflowError):
        log.warning("fill value %r does not fit type %s; serving none", value, dtype)
        return None
    if dtype.kind == "f":
        if math.isnan(scalar):
            return "NaN"
        if math.isinf(scalar):
            return "Infinity" if scalar > 0 else "-Infinity"
        return float(scalar)
    if dtype.kind in "iu":
        return int(scalar)
    if dtype.kind == "b":
        return bool(scalar)
    return None


def _dtype(text: str) -> np.dtype[Any] | None:
    """The native-order dtype of a variable (object for variable-length strings, served
    through the vlen-utf8 filter), or None for types the view does not serve."""
    if text == "str":  # netCDF-4's variable-length strings, as the index records them
        return np.dtype("O")
    try:
        dtype = np.dtype(text)
    except TypeError:
        return None
    if dtype.kind in "OUVMm":
        return None
    return dtype.newbyteorder("=")


class ZarrView:
    """The Zarr format 2 store of one dataset: metadata documents and chunk plans."""

    def __init__(
        self,
        record: DatasetRecord,
        arrays: dict[str, ArrayPlan],
        attrs: dict[str, Any],
        identity: tuple[Any, ...],
        compressor: dict[str, Any] | None = COMPRESSOR,
        handles: OpenFiles | None = None,
    ) -> None:
        if compressor is not None and compressor.get("id") != "zlib":
            raise ConfigError(
                f"The Zarr view serves the zlib compressor or none, not {compressor!r}."
            )
        self.record = record
        self.dataset_id = record.dataset_id
        self.arrays = arrays
        self.compressor = compressor
        self.handles = handles or OpenFiles()
        self.identity = (*identity, compressor)
        meta: dict[str, Any] = {".zgroup": {"zarr_format": 2}, ".zattrs": attrs}
        for name, plan in arrays.items():
            meta[f"{name}/.zarray"] = plan.zarray(compressor)
            meta[f"{name}/.zattrs"] = plan.zattrs()
        # Encoded once: every metadata request is then a dictionary lookup.
        self.documents = {k: json.dumps(v).encode() for k, v in meta.items()}
        self.documents[".zmetadata"] = json.dumps(
            {"zarr_consolidated_format": 1, "metadata": meta}
        ).encode()

    @classmethod
    def build(
        cls,
        record: DatasetRecord,
        located: Sequence[LocatedFile],
        chunk_bytes: int,
        compressor: dict[str, Any] | None = COMPRESSOR,
        handles: OpenFiles | None = None,
    ) -> ZarrView:
        """The view of a dataset from its catalog records and where its files are
        (``Catalog.locate``); no file is opened."""
        # Each array's storage is read from its first file with files of the view's own,
        # closed once built: a chunk request still opens a file (or waits) as before.
        probe = OpenFiles(4, direct=handles.direct if handles is not None else True)
        paths = {f.record.path: f.path for f in located}
        members = sorted_members([f.record for f in located])
        groups = group_by_variables(members)
        first = groups[0][0]
        tdim = first.time_var
        reference = time_values(groups[0], np.dtype("float64")) if tdim else None
        arrays: dict[str, ArrayPlan] = {}
        for group in groups:
            if reference is not None and group is not groups[0]:
                own = time_values(group, np.dtype("float64"))
                if own.shape != reference.shape or not np.array_equal(own, reference):
                    raise InvalidRequest(
                        f"Dataset {record.dataset_id!r} has files whose time axes differ "
                        f"({group[0].path!r} and {first.path!r} hold different variables "
                        "over different times), so it has no single Zarr view. Open it with "
                        "'insitu.open_dataset' or request a subset instead."
                    )
            for info in group[0].variables:
                if info.name in arrays:
                    continue  # as xarray.merge(compat="override"): the first group's wins
                plan = _plan(info, group, paths, tdim, chunk_bytes)
                if plan is None:
                    log.info(
                        "Zarr view of %s leaves out %s (type %s)",
                        record.dataset_id,
                        info.name,
                        info.dtype,
                    )
                else:
                    try:
                        arrays[info.name] = _as_stored(plan, probe, chunk_bytes)
                    finally:
                        probe.close()
        if tdim is not None and tdim not in arrays and first.time_units:
            # A time dimension without a coordinate, dated by an auxiliary one: its dates.
            values = time_values(groups[0], np.dtype("float64"))
            arrays[tdim] = ArrayPlan(
                name=tdim,
                dims=(tdim,),
                shape=values.shape,
                chunks=(max(1, values.size),),
                dtype=values.dtype,
                fill_value=None,
                attrs=with_time_units({}, first.time_units, first.calendar),
                sources=(),
                values=values,
            )
        attrs = {**first.global_attrs, "insitu_dataset_id": record.dataset_id}
        identity = (
            VIEW_VERSION,
            chunk_bytes,
            tuple((f.path, f.size, f.mtime_ns) for f in members),
        )
        return cls(record, arrays, attrs, identity, compressor, handles)

    # -- keys ----------------------------------------------------------------------------

    def lookup(self, key: str) -> bytes | ChunkRef:
        """A metadata document, or the chunk ``key`` names; :class:`NotFound` otherwise.

        Keys are matched against what the view holds, never turned into paths, so no key
        can reach a file of its own choosing.
        """
        doc = self.documents.get(key)
        if doc is not None:
            return doc
        name, sep, index = key.rpartition("/")
        plan = self.arrays.get(name) if sep else None
        if plan is None:
            raise NotFound(
                f"Key {_short(key)!r} is not in the Zarr view of dataset "
                f"{self.dataset_id!r}. It is Zarr format 2 with consolidated metadata: read "
                "'.zmetadata'; its arrays are "
                f"{_names(self.arrays)}."
            )
        grid = plan.grid
        parts = index.split(".")
        expected = grid or (1,)  # a 0-d array has the one chunk "0"
        # Canonical decimal integers only ("01" would name chunk 1 twice), and short: int()
        # refuses strings of more than 4,300 digits with a ValueError.
        valid = len(parts) == len(expected) and all(
            p.isascii() and p.isdigit() and len(p) < 19 and (p == "0" or p[0] != "0") for p in parts
        )
        if not valid or any(int(p) >= n for p, n in zip(parts, expected, strict=True)):
            raise NotFound(
                f"Chunk {_short(index)!r} is not a chunk of array {name!r} in the Zarr view of "
                f"dataset {self.dataset_id!r}: chunk keys are {len(expected)} integers "
                f"joined by '.', each below {'.'.join(map(str, expected))} (see "
                f"{name}/.zarray)."
            )
        return ChunkRef(plan, tuple(int(p) for p in parts) if grid else (), key)

    def etag(self, item: bytes | ChunkRef, key: str) -> str:
        """The ETag of a key: from the identity of the files its content comes from."""
        if isinstance(item, bytes):
            return strong_etag("zarr-meta", self.dataset_id, key, self.identity)
        plan = item.plan
        if plan.values is not None:  # from the index: depends on every file's time values
            return strong_etag("zarr-chunk", self.dataset_id, key, self.identity)
        return strong_etag(
            "zarr-chunk",
            VIEW_VERSION,
            self.compressor,
            self.dataset_id,
            key,
            plan.chunks,
            plan.to_units,
            plan.stored,
            [(s.identity, s.start, s.from_units) for s in item.sources()],
        )

    # -- chunks --------------------------------------------------------------------------

    def read(self, ref: ChunkRef, *, wait: bool = True) -> bytes | memoryview:
        """The encoded bytes of one chunk, as a format 2 client expects them.

        Uncompressed, the array's own buffer: a copy of megabytes saved per chunk. With
        ``wait=False``, raises :class:`WouldBlock` rather than wait for the HDF5 lock or
        open a file.
        """
        stored = ref.plan.stored
        if stored is not None:
            data = self._stored(ref, stored, wait)
            if data is not None:
                return data
            values = np.ascontiguousarray(self._values(ref, wait), dtype=ref.plan.dtype)
            return stored.encode(values)
        if ref.plan.dtype.kind == "O":
            raw: bytes | memoryview = _vlen_utf8(self._values(ref, wait))
        else:
            values = np.ascontiguousarray(self._values(ref, wait), dtype=ref.plan.dtype)
            raw = values.reshape(-1).view(np.uint8).data  # bytes, no copy
        if self.compressor is None:
            return raw
        return zlib.compress(raw, int(self.compressor.get("level", 1)))

    def _stored(self, ref: ChunkRef, codecs: StoredCodecs, wait: bool) -> bytes | None:
        """The chunk's bytes as its file stores them, if they are the chunk encoded with
        ``codecs``: one stored chunk of one file, of the view's chunk shape, with every
        filter applied, no time re-encoding. None otherwise (it is then encoded here)."""
        plan = ref.plan
        parts = ref.sources()
        if len(parts) != 1 or (parts[0].from_units is not None and plan.to_units is not None):
            return None
        src = parts[0]
        origin = [i * c for i, c in zip(ref.index, plan.chunks, strict=True)]
        if plan.taxis is not None:
            origin[plan.taxis] -= src.start
        var = self.handles.stored(plan, src, wait=wait)
        if (
            var is None
            or var.chunk_shape != plan.chunks
            or var.filters != codecs.filters
            or var.shape != _file_shape(plan, src)
        ):
            return None
        try:
            chunk = var.stored_chunk(tuple(origin))
        except NotDirect as exc:
            log.debug("%s of %s: chunk %s encoded here: %s", plan.name, src.path, ref.key, exc)
            return None
        return chunk.data if not chunk.skipped else None

    def _values(self, ref: ChunkRef, wait: bool) -> np.ndarray[Any, Any]:
        plan, sel = ref.plan, ref.selection
        extent = tuple(s.stop - s.start for s in sel)
        if plan.values is not None:
            block = plan.values[sel]
        elif plan.taxis is None:
            block = self.handles.read(plan, plan.sources[0], sel, wait=wait)
        else:
            block = self._along_time(ref, sel, extent, wait)
        if block.shape != extent:
            raise DataError(
                f"Variable {plan.name!r} of dataset {self.dataset_id!r} has another shape in "
                f"its files than when they were scanned (read {block.shape}, expected "
                f"{extent}); rescan its collection with 'insitu catalog scan'."
            )
        if extent == plan.chunks:
            return block
        # Format 2 stores edge chunks at the full chunk shape; the padding is never read.
        full = np.zeros(plan.chunks, dtype=plan.dtype)
        full[tuple(slice(0, n) for n in extent)] = block
        return full

    def _along_time(
        self, ref: ChunkRef, sel: tuple[slice, ...], extent: tuple[int, ...], wait: bool
    ) -> np.ndarray[Any, Any]:
        plan = ref.plan
        axis = plan.taxis
        assert axis is not None
        t = sel[axis]
        parts = ref.sources()
        if not parts:
            raise DataError(
                f"No file of dataset {self.dataset_id!r} holds records {t.start} to "
                f"{t.stop} of {plan.name!r}; rescan its collection with 'insitu catalog scan'."
            )
        out: np.ndarray[Any, Any] | None = None
        for src in parts:
            lo, hi = max(t.start, src.start), min(t.stop, src.start + src.length)
            local = list(sel)
            local[axis] = slice(lo - src.start, hi - src.start)
            block = self.handles.read(plan, src, tuple(local), wait=wait)
            if len(parts) == 1 and lo == t.start and hi == t.stop:
                return block
            if out is None:
                out = np.zeros(extent, dtype=plan.dtype)
            where = [slice(None)] * len(extent)
            where[axis] = slice(lo - t.start, hi - t.start)
            try:
                out[tuple(where)] = block
            except ValueError as exc:
                raise DataError(
                    f"Variable {plan.name!r} of {src.record.path} has another shape than when it "
                    f"was scanned ({exc}); rescan its collection with 'insitu catalog scan'."
                ) from exc
        assert out is not None
        return out


def _vlen_utf8(values: np.ndarray[Any, Any]) -> bytes:
    """Strings as numcodecs' vlen-utf8 encodes them: their count, then each one's length
    and UTF-8 bytes (little-endian uint32s); anything not a string (an edge chunk's
    padding) as the empty string."""
    items = [
        v.encode() if isinstance(v, str) else v if isinstance(v, bytes) else b""
        for v in values.reshape(-1).tolist()
    ]
    parts = [struct.pack("<I", len(items))]
    for item in items:
        parts += (struct.pack("<I", len(item)), item)
    return b"".join(parts)


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _names(arrays: dict[str, ArrayPlan], limit: int = 20) -> str:
    names = sorted(arrays)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _plan(
    info: Any,
    group: list[FileRecord],
    paths: dict[str, str],
    tdim: str | None,
    chunk_bytes: int,
) -> ArrayPlan | None:
    dtype = _dtype(info.dtype)
    if dtype is None:
        return None
    first = group[0]
    dims, attrs = tuple(info.dims), dict(info.attrs)
    fill = _fill_value(attrs.get(_FILL), dtype)
    calendar = first.calendar or "standard"
    common = {"name": info.name, "dims": dims, "dtype": dtype, "fill_value": fill}
    if dims == (info.name,):
        # A dimension coordinate is loaded whole by xarray to build its index: in pieces,
        # it would only cost more requests.
        chunk_bytes = max(chunk_bytes, dtype.itemsize * info.shape[0], 1)
    if tdim is None or tdim not in dims:
        shape = tuple(info.shape)
        src = Source(first, paths[first.path], 0, 0)
        return ArrayPlan(
            **common,
            shape=shape,
            chunks=chunk_shape(shape, dtype.itemsize, chunk_bytes),
            attrs=attrs,
            sources=(src,),
        )
    axis = dims.index(tdim)
    lengths = [f.n_times for f in group]
    shape = tuple(sum(lengths) if d == axis else n for d, n in enumerate(info.shape))
    if info.name == tdim:  # from the index: no file is read; one chunk, as above
        dated = with_time_units(attrs, first.time_units, first.calendar)
        if dated is not attrs:  # dated by another variable (raw NEMO output)
            attrs, dtype = dated, np.dtype("float64")
            common = {**common, "dtype": dtype, "fill_value": None}
        values = time_values(group, dtype)
        return ArrayPlan(
            **common,
            shape=shape,
            chunks=(max(1, shape[0]),),
            attrs=attrs,
            sources=(),
            values=values,
        )
    to_units = time_like_units(first, info.name, attrs, tdim)
    sources, start = [], 0
    for f, n in zip(group, lengths, strict=True):
        from_units = reencode_from(f, first, info.name, to_units)
        sources.append(Source(f, paths[f.path], start, n, from_units))
        start += n
    return ArrayPlan(
        **common,
        shape=shape,
        chunks=chunk_shape(shape, dtype.itemsize, chunk_bytes, axis, lengths),
        attrs=attrs,
        sources=tuple(sources),
        taxis=axis,
        to_units=to_units,
        calendar=calendar,
        starts=tuple(s.start for s in sources),
    )


def _file_shape(plan: ArrayPlan, src: Source) -> tuple[int, ...]:
    """The shape of ``plan``'s variable in the file of ``src``."""
    if plan.taxis is None:
        return plan.shape
    return tuple(src.length if a == plan.taxis else n for a, n in enumerate(plan.shape))


def _as_stored(plan: ArrayPlan, handles: OpenFiles, chunk_bytes: int) -> ArrayPlan:
    """``plan`` with its chunks served as its first file stores them (:class:`StoredCodecs`,
    the file's chunk shape) where that file's storage allows it, every view chunk is one
    stored chunk of one file (the files start at multiples of the time chunk length) and a
    stored chunk holds between an eighth of ``chunk_bytes`` and ``chunk_bytes``; ``plan``
    itself otherwise. Opens the first file to read its variable's layout."""
    if (
        plan.values is not None
        or not plan.sources
        or plan.dtype.kind not in "iuf"
        or plan.taxis not in (None, 0)
        or plan.dims == (plan.name,)  # a dimension coordinate: one chunk, loaded whole
    ):
        return plan
    src = plan.sources[0]
    try:
        var = handles.stored(plan, src)
    except (DataError, OSError, RuntimeError, KeyError, ValueError) as exc:
        log.info("%s of %s is encoded by the view: %s", plan.name, src.path, exc)
        return plan
    if var is None or var.filters not in (("deflate",), ("shuffle", "deflate")):
        return plan
    chunks = tuple(var.chunk_shape)
    if (
        var.dtype.newbyteorder("=") != plan.dtype
        or var.dtype.byteorder == ">"
        or var.shape != _file_shape(plan, src)
        or math.prod(chunks) * plan.dtype.itemsize > chunk_bytes
        # Small stored chunks (CMOR's one record each) would make a bulk read many small
        # GETs (a third of the data rate, bench_service.py): the view gathers those.
        or math.prod(chunks) * plan.dtype.itemsize < chunk_bytes // STORED_MIN_SHARE
        or (plan.taxis is not None and any(s.start % chunks[0] for s in plan.sources))
    ):
        return plan
    return replace(plan, chunks=chunks, stored=StoredCodecs(shuffle=var.filters[0] == "shuffle"))


class OpenFiles:
    """The files chunk requests read, kept open between requests
    (:class:`insitu.formats.OpenFiles`), each checked to be the file the catalog scanned.

    ``direct=False`` reads every chunk through the format library (as before direct reads;
    for comparisons). ``cache_bytes``: decoded slabs kept for requests that come again.
    """

    def __init__(
        self, size: int = 256, *, direct: bool = True, cache_bytes: int = 64 * 2**20
    ) -> None:
        self.size = size
        self.direct = direct
        self.cache_bytes = cache_bytes
        self._cache = _Cache(size, direct=direct, cache_bytes=cache_bytes)

    @property
    def cached_bytes(self) -> int:
        """Bytes of decoded slabs kept now for requests that come again."""
        return self._cache.cached_bytes

    def read(
        self, plan: ArrayPlan, src: Source, index: tuple[slice, ...], *, wait: bool = True
    ) -> np.ndarray[Any, Any]:
        """The slab ``index`` of ``plan``'s variable in ``src``, raw (no mask, no scale),
        re-encoded to the first file's time units if it is time-like.

        The file is checked to be the one the catalog scanned first: an ETag promises the
        content of a file identity, so a file changed since must not be read. With
        ``wait=False``, raises :class:`WouldBlock` if the read would wait (for the HDF5 lock,
        or to open a file: that takes milliseconds).
        """
        identity = self._identity(src)
        try:
            data = self._cache.read(src.path, identity, plan.name, index, wait=wait)
        except WouldBlock:
            raise
        except (OSError, RuntimeError, KeyError, IndexError, ValueError) as exc:
            log.warning("reading %s from %s failed", plan.name, src.path, exc_info=True)
            # Paths relative to the collection root: clients need not learn where it is.
            detail = str(exc).replace(src.path, src.record.path)
            raise DataError(
                f"Cannot read variable {plan.name!r} from {src.record.path}: {detail}. "
                "The file changed or became unreadable since it was scanned; rescan its "
                "collection with 'insitu catalog scan'."
            ) from exc
        if src.from_units is not None and plan.to_units is not None:
            return reencode_time(data, src.from_units, plan.to_units, plan.calendar)
        return data

    def stored(
        self, plan: ArrayPlan, src: Source, *, wait: bool = True
    ) -> SupportsStoredChunks | None:
        """``plan``'s variable in ``src`` if its stored chunks can be served as they are
        (checked to be the file scanned, as :meth:`read`), else None."""
        return self._cache.stored(src.path, self._identity(src), plan.name, wait=wait)

    @staticmethod
    def _identity(src: Source) -> tuple[int, int, int]:
        """The file of ``src`` checked to be the one the catalog scanned: its identity."""
        try:  # a Zarr store: its files' total size and newest mtime, as the scan saw them
            st = stat_dataset(src.path, cache_seconds=1.0)
        except OSError as exc:
            raise DataError(
                f"Cannot read {src.record.path}: {exc.strerror or type(exc).__name__}. The "
                "file moved or became unreadable since it was scanned; rescan its collection "
                "with 'insitu catalog scan'."
            ) from exc
        if (st.st_size, st.st_mtime_ns) != (src.record.size, src.record.mtime_ns):
            raise DataError(
                f"File {src.record.path} changed since it was scanned (size {st.st_size}, was "
                f"{src.record.size}); rescan its collection with 'insitu catalog scan'."
            )
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def close(self) -> None:
        """Close every file."""
        self._cache.close()


class ZarrViews:
    """Views built once per (dataset id, catalog generation), the most recent kept."""

    def __init__(
        self,
        chunk_bytes: int,
        *,
        compressor: dict[str, Any] | None = COMPRESSOR,
        size: int = 256,
        direct: bool = True,
        cache_bytes: int = 64 * 2**20,
    ) -> None:
        self.chunk_bytes = chunk_bytes
        self.compressor = compressor
        self.handles = OpenFiles(direct=direct, cache_bytes=cache_bytes)
        self.size = size
        self._views: LRU[tuple[str, int], ZarrView] = LRU(size)

    def cached(self, dataset_id: str, generation: int) -> ZarrView | None:
        """The view of a dataset if it is built for ``generation`` (no query), else None."""
        return self._views.get((dataset_id, generation))

    def get(
        self, catalog: Catalog, record: DatasetRecord, generation: int | None = None
    ) -> ZarrView:
        """The view of ``record``, rebuilt when the catalog changed since it was built.

        ``generation`` is the store's, if the caller has just read it.
        """
        gen = catalog.store.generation() if generation is None else generation
        key = (record.dataset_id, gen)
        view = self._views.get(key)
        if view is None:
            # Two threads may build the same view once, which is cheaper than making every
            # other dataset's requests wait for one lock.
            view = ZarrView.build(
                record,
                catalog.locate(record.dataset_id),
                self.chunk_bytes,
                self.compressor,
                self.handles,
            )
            self._views.put(key, view)
        return view

    def close(self) -> None:
        """Forget every view and close the files they keep open."""
        self._views.clear()
        self.handles.close()

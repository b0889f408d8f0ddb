"""Zarr stores: a directory read and written as one netCDF-like file.

A store is a directory (``*.zarr``) holding a group's metadata (``zarr.json``, or
``.zgroup``/``.zmetadata`` for format 2) and one folder per array with its chunk files.
:class:`ZarrReader` reads stores of format 3 and 2 through zarr-python; the root group's
arrays are the variables, its attributes the global ones. Dimension names are the arrays'
``dimension_names`` (format 3) or their ``_ARRAY_DIMENSIONS`` attribute (format 2, as
xarray writes it). Values are raw, as everywhere in :mod:`insitu.formats`: a store's
``fill_value`` is not a mask (xarray's rule for format 3 too); ``_FillValue`` is an
attribute like any other.

Stores insitu writes (:class:`ZarrWriter`) keep what JSON attributes lose, as channel
files do (:mod:`insitu.formats.channels`): the variables' order in the group attribute
``insitu_variables`` and an array's ``insitu_types`` (``{"scale_factor": "float32"}``);
fill attributes take the array's type. These are never reported as attributes.

:class:`ZarrWriter` writes a format 3 store chunk by chunk: metadata through zarr-python,
chunks encoded (shuffle + zstd in Blosc, one block per MiB) and written by a pool of threads
(Blosc and file writes release the GIL, so the chunks of a 2-core machine compress on both
cores), then consolidated metadata in the root ``zarr.json``. :func:`stat_dataset` gives a
store's size (its files added up) and modification time (its newest file's), which the
catalog's change detection and the data service's file checks use like a file's.
"""

from __future__ import annotations

import ctypes
import json
import os
import stat as stat_module
import sys
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np

from insitu._util import LRU
from insitu.errors import DataError
from insitu.formats.cf import fill_values
from insitu.formats.header import Header, HeaderVariable, jsonable
from insitu.formats.netcdf.readers import records_per_slab
from insitu.formats.reader import Array, Encoded, EncodedVariable, Index, NotDirect, Slab

__all__ = [
    "ZARR_SUFFIX",
    "DatasetStat",
    "ZarrArrayWriter",
    "ZarrReader",
    "ZarrWriter",
    "is_zarr_store",
    "stat_dataset",
]

ZARR_SUFFIX = ".zarr"
_METADATA = ("zarr.json", ".zmetadata", ".zgroup")  # root metadata, format 3 then 2
_ORDER = "insitu_variables"  # group attribute: the variables' order
_TYPES = "insitu_types"  # array attribute: numpy types of attributes JSON does not keep
_DIMS = "_ARRAY_DIMENSIONS"  # format 2 dimension names (xarray's convention)
_HIDDEN = (_TYPES, _DIMS)
_TYPED_LIKE_DATA = ("_FillValue", "missing_value", "valid_min", "valid_max", "valid_range")
_INSTALL = "Reading Zarr needs zarr-python 3; install insitu's 'ingest' extra."

# Chunks are encoded as Blosc frames of zstd level 1 after a byte shuffle, one Blosc block
# per MiB. Measured on the 2-core machine (calibrated float64 noise, 1 MiB chunks, CPU time
# of one thread, BENCHMARKS.md "Ingest"): 1.1-1.2 GB/s at ratio 1.13, against 0.8 GB/s for
# numcodecs' Shuffle then Zstd(1) at the same ratio, 0.5 GB/s and ratio 1.04 for Blosc's
# default (smaller) blocks, and 0.02-0.03 GB/s for HDF5's shuffle + deflate level 1.
CNAME: Literal["zstd"] = "zstd"
CLEVEL = 1
_BLOCK_BYTES = 1 << 20


def is_zarr_store(path: str) -> bool:
    """Whether ``path`` is a directory holding a Zarr group's metadata."""
    return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, m)) for m in _METADATA)


class DatasetStat(NamedTuple):
    """What a change check needs of a file or store (the names of ``os.stat_result``)."""

    st_dev: int
    st_ino: int
    st_size: int
    st_mtime_ns: int


_STATS: LRU[tuple[Any, ...], tuple[float, DatasetStat]] = LRU(256)


def stat_dataset(path: str, *, cache_seconds: float = 0.0) -> DatasetStat:
    """The identity, size and modification time of a file, or of a Zarr store (a
    directory named ``*.zarr``): its directory's device and inode, the bytes of all its
    files, the newest of their modification times. Follows links; ``OSError`` as
    ``os.stat``.

    A store's figures cost a walk of its files (about a thousand a GB of 1 MB chunks);
    ``cache_seconds`` reuses them that long while the root metadata file is unchanged (a
    data service checking a store on every request). A rewritten store (a new product
    renamed into place) has a new root metadata file, so it is never taken for the old.
    """
    st = os.stat(path)
    if not stat_module.S_ISDIR(st.st_mode):
        return DatasetStat(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    key: tuple[Any, ...] | None = None
    if cache_seconds > 0:
        meta = _root_metadata_stat(path)
        key = (path, st.st_ino, meta)
        hit = _STATS.get(key)
        if hit is not None and time.monotonic() - hit[0] < cache_seconds:
            return hit[1]
    size, newest = 0, st.st_mtime_ns if not is_zarr_store(path) else 0
    for entry_stat in _files(path):
        size += entry_stat.st_size
        newest = max(newest, entry_stat.st_mtime_ns)
    found = DatasetStat(st.st_dev, st.st_ino, size, newest)
    if key is not None:
        _STATS.put(key, (time.monotonic(), found))
    return found


def _root_metadata_stat(path: str) -> tuple[int, int, int] | None:
    for name in _METADATA:
        try:
            st = os.stat(os.path.join(path, name))
        except OSError:
            continue
        return (st.st_ino, st.st_mtime_ns, st.st_size)
    return None


def _files(root: str) -> Iterator[os.stat_result]:
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    yield entry.stat(follow_symlinks=False)


# -- reading ---------------------------------------------------------------------------------


def _zarr() -> Any:
    try:
        import zarr
    except ImportError as exc:  # pragma: no cover - zarr is a dependency of the extra
        raise DataError(_INSTALL) from exc
    return zarr


def _open_group(path: str) -> Any:
    """The root group of the store at ``path`` (``FileNotFoundError`` if there is none,
    :class:`DataError` if the directory is no Zarr store)."""
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file or directory", path)
    if not is_zarr_store(path):
        raise DataError(
            f"{path} is not a Zarr store (no zarr.json, .zgroup or .zmetadata in it); "
            "remove it or move it out of the archive."
        )
    zarr = _zarr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "consolidated metadata is not in the spec"
        try:
            return zarr.open_group(path, mode="r")
        except (FileNotFoundError, PermissionError):
            raise
        except Exception as exc:
            raise DataError(
                f"{path} is a Zarr store that cannot be read ({exc}); re-copy it from its source."
            ) from exc


def _arrays(group: Any) -> list[tuple[str, Any]]:
    """The group's arrays, in the order insitu wrote them, else by name."""
    found = dict(group.arrays())
    order = group.attrs.get(_ORDER)
    names = [n for n in order if n in found] if isinstance(order, list) else []
    return [(n, found[n]) for n in [*names, *sorted(set(found) - set(names))]]


def _array(group: Any, name: str) -> Any:
    try:
        arr = group[name]
    except KeyError:
        raise KeyError(
            f"no variable {name!r}; variables: {', '.join(group.array_keys())}"
        ) from None
    if not hasattr(arr, "dtype"):
        raise KeyError(f"{name!r} is a group, not a variable")
    return arr


def _dims(name: str, arr: Any) -> tuple[str, ...]:
    names = getattr(arr.metadata, "dimension_names", None)
    if not names:
        names = arr.attrs.get(_DIMS)
    if names and len(names) == arr.ndim and all(isinstance(n, str) for n in names):
        return tuple(names)
    return tuple(f"{name}_dim{i}" for i in range(arr.ndim))


def _dtype(arr: Any) -> np.dtype[Any]:
    dtype: np.dtype[Any] = np.dtype(arr.dtype)
    return dtype


def _attrs(arr: Any) -> dict[str, Any]:
    return {k: jsonable(v) for k, v in arr.attrs.asdict().items() if k not in _HIDDEN}


def _typed_attrs(arr: Any) -> dict[str, Any]:
    raw = arr.attrs.asdict()
    declared = raw.get(_TYPES)
    declared = json.loads(declared) if isinstance(declared, str) else (declared or {})
    dtype = _dtype(arr)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _HIDDEN:
            continue
        if key in declared:
            value = np.asarray(value, dtype=declared[key])[()]
        elif key in _TYPED_LIKE_DATA and not isinstance(value, str) and dtype.kind in "iuf":
            value = np.asarray(value, dtype=dtype)[()]
        out[key] = value
    return out


def _values(arr: Any, index: Index) -> Array:
    if arr.ndim == 0:
        if any(s != slice(None) for s in index):
            raise IndexError("a scalar is read with index ()")
        return np.asarray(arr[()])
    return np.ascontiguousarray(arr[tuple(index) if index else ...])


def _whole(arr: Any) -> Callable[[], Array]:
    return lambda: _values(arr, ())


def _global_attrs(group: Any) -> dict[str, Any]:
    return {k: jsonable(v) for k, v in group.attrs.asdict().items() if k != _ORDER}


class _Variable:
    """An array of a store kept open (:class:`~insitu.formats.DirectVariable`): reads
    through zarr-python with no lock, refused (:class:`NotDirect`) once the store's root
    metadata changed."""

    def __init__(self, path: str, name: str, arr: Any) -> None:
        self.path = path
        self._name = name
        self._arr = arr
        self._meta = _root_metadata_stat(path)
        self._dtype = _dtype(arr)
        self._attrs = {
            k: v for k, v in _typed_attrs(arr).items() if k in ("_FillValue", "missing_value")
        }

    @property
    def name(self) -> str:
        return self._name

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self._arr.shape)

    @property
    def attrs(self) -> dict[str, Any]:
        return self._attrs

    @property
    def time_chunk(self) -> int:
        chunks = self._arr.chunks
        return int(chunks[0]) if chunks else 1

    def read(self, index: Index = ()) -> Array:
        if _root_metadata_stat(self.path) != self._meta:
            raise NotDirect(f"{self.path} changed since it was opened")
        return _values(self._arr, index)


class ZarrReader:
    """Reads Zarr stores (format 3 and 2) through zarr-python."""

    name: ClassVar[str] = "zarr"

    @contextmanager
    def header(self, path: str) -> Iterator[Header]:
        """The store's header (from its consolidated metadata where it has some)."""
        group = _open_group(path)
        dims: dict[str, int] = {}
        variables = []
        for name, arr in _arrays(group):
            names = _dims(name, arr)
            shape = tuple(int(n) for n in arr.shape)
            for d, n in zip(names, shape, strict=True):
                dims.setdefault(d, n)
            dtype = _dtype(arr)
            variables.append(
                HeaderVariable(
                    name,
                    names,
                    shape,
                    "str" if dtype.kind in "OTU" else str(dtype),
                    _attrs(arr),
                    _whole(arr),
                )
            )
        groups = tuple(sorted(group.group_keys()))
        yield Header(self.name, dims, variables, _global_attrs(group), groups)

    def encoded(self, path: str, load: Collection[str] = ()) -> Encoded:
        """Typed attributes of the store and its arrays, values of those in ``load``."""
        group = _open_group(path)
        variables = {
            name: EncodedVariable(
                _dtype(arr), _typed_attrs(arr), _values(arr, ()) if name in load else None
            )
            for name, arr in _arrays(group)
        }
        return Encoded(_global_attrs(group), variables)

    def read(self, path: str, name: str, index: Index = ()) -> Array:
        """Raw values of ``name`` (or slab ``index``)."""
        return _values(_array(_open_group(path), name), index)

    def slabs(
        self, path: str, name: str, start: int, stop: int, chunk_bytes: int
    ) -> Iterator[Slab]:
        """Records ``start:stop`` of ``name`` in slabs of at most ``chunk_bytes`` (whole
        chunks along the first axis when they hold several records)."""
        arr = _array(_open_group(path), name)
        dtype = _dtype(arr)
        shape = tuple(int(n) for n in arr.shape)
        step = records_per_slab(shape, dtype.itemsize, int(arr.chunks[0]), chunk_bytes)
        fills = fill_values(dtype, _typed_attrs(arr))
        for lo in range(start, stop, step):
            yield Slab(_values(arr, (slice(lo, min(lo + step, stop)),)), fills)

    def open_direct(self, path: str, name: str) -> _Variable:
        """Array ``name`` of the store, kept open for reads."""
        group = _open_group(path)
        arr = _array(group, name)
        if arr.ndim == 0:
            raise NotDirect("a scalar")
        return _Variable(path, name, arr)


# -- writing ---------------------------------------------------------------------------------

_RETAINED = False


def retain_freed_memory() -> None:
    """Have glibc keep freed blocks of up to 64 MiB for reuse (no ``munmap``, heap trimmed
    above 256 MiB only), once per process.

    A writer's threads allocate and free a few MiB per chunk while the reading thread
    allocates blocks of 32 MiB: with glibc's defaults those are fresh ``mmap`` s, and each
    ``munmap`` of one thread stalls the page faults of the others. Measured on 512 MB of
    TDMS on 2 cores: system CPU time 1.1-2.3 s instead of 3.6-4.6 s, 25-35% less wall
    time. Memory stays bounded by the largest working set (peak RSS unchanged, see
    BENCHMARKS.md "Ingest"). Nothing happens off glibc.
    """
    global _RETAINED
    if _RETAINED or not sys.platform.startswith("linux"):
        return
    _RETAINED = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # another C library
        pass


class ZarrArrayWriter:
    """One array being written: chunks along its first axis, filled by :meth:`submit`."""

    def __init__(
        self,
        writer: ZarrWriter,
        name: str,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        chunk: int,
    ) -> None:
        self.writer = writer
        self.name = name
        self.shape = shape
        self.dtype = dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype
        self.chunk = chunk
        self._folder = os.path.join(writer.path, name, "c")
        self._tail = "/0" * (len(shape) - 1)
        codec = writer._codec(dtype, chunk * int(np.prod(shape[1:], dtype=np.int64)))
        self._codec = codec

    def set(self, values: Array) -> None:
        """Write the whole array at once, through zarr-python (small arrays: a time axis,
        a scalar)."""
        self.writer._group[self.name][...] = np.asarray(values, dtype=self.dtype)

    def submit(self, start: int, make: Callable[[], Array]) -> None:
        """Records from ``start`` (a multiple of the chunk length): ``make()`` runs on a
        worker thread and gives them (whole chunks, or up to the array's end); they are
        encoded and written there. Waits while enough work is queued (memory stays flat)."""
        if start % self.chunk:
            raise ValueError(f"{self.name}: start {start} is not a multiple of {self.chunk}")
        self.writer._submit(self._task, start, make)

    def _task(self, start: int, make: Callable[[], Array]) -> None:
        values = np.asarray(make())
        if values.dtype != self.dtype:
            values = values.astype(self.dtype)
        os.makedirs(self._folder, exist_ok=True)
        per = self.chunk
        for lo in range(0, len(values), per):
            part = values[lo : lo + per]
            if len(part) < per:  # an edge chunk is stored at the full chunk shape
                full = np.zeros((per, *self.shape[1:]), self.dtype)
                full[: len(part)] = part
                part = full
            index = (start + lo) // per
            key = os.path.join(self._folder, f"{index}{self._tail}")
            if self._tail:
                os.makedirs(os.path.dirname(key), exist_ok=True)
            data = self._codec.encode(np.ascontiguousarray(part))
            with open(key, "wb") as fh:
                fh.write(data)


class ZarrWriter:
    """Writes a new Zarr (format 3) store at ``path``, which must not exist.

    Arrays are made by :meth:`create`, their chunks computed, encoded and written by
    ``threads`` worker threads (default: one per core, at most 4), at most ``queued``
    tasks waiting; :meth:`close` waits for them, sets the group's last attributes and
    consolidates the metadata. Use it as a context manager: on an error the workers stop
    and the caller removes the half-written store.
    """

    def __init__(
        self,
        path: str,
        attrs: dict[str, Any],
        *,
        threads: int | None = None,
        queued: int | None = None,
    ) -> None:
        zarr = _zarr()
        retain_freed_memory()
        self.path = path
        self.threads = threads or max(1, min(4, os.cpu_count() or 1))
        self._group = zarr.open_group(path, mode="w-", zarr_format=3, attributes=_json_attrs(attrs))
        self._order: list[str] = []
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="zarr-write")
        self._slots = threading.BoundedSemaphore(queued or 2 * self.threads + 2)
        self._futures: list[Future[None]] = []
        self._failed: BaseException | None = None

    def __enter__(self) -> ZarrWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self._stop()

    def _codec(self, dtype: np.dtype[Any], chunk_values: int) -> Any:
        from numcodecs import Blosc

        block = min(_BLOCK_BYTES, max(dtype.itemsize, chunk_values * dtype.itemsize))
        return Blosc(cname=CNAME, clevel=CLEVEL, shuffle=Blosc.SHUFFLE, blocksize=block)

    def chunk_length(self, sample: Array, records: int, target: int = 1_000_000) -> int:
        """Records per chunk so that a chunk is about ``target`` bytes compressed, judged
        by compressing ``sample`` (the first values, as they will be stored): a power of
        two between 1 and 8 MiB of values before compression, at most ``records``."""
        sample = np.ascontiguousarray(sample)
        per_record = max(1, sample[:1].nbytes if sample.ndim else sample.itemsize)
        if sample.size and sample.ndim:
            encoded = len(self._codec(sample.dtype, sample.size).encode(sample))
            ratio = max(1.0, sample.nbytes / max(1, encoded))
        else:
            ratio = 1.0
        want = min(8 << 20, max(1 << 20, int(target * ratio)))
        length = 1 << max(0, (want // per_record).bit_length() - 1)
        return max(1, min(records, length))

    def create(
        self,
        name: str,
        dims: tuple[str, ...],
        shape: tuple[int, ...],
        dtype: np.dtype[Any] | str,
        attrs: dict[str, Any],
        chunk: int,
    ) -> ZarrArrayWriter:
        """A new array ``name`` chunked by ``chunk`` records along its first axis."""
        from zarr.codecs import BloscCodec

        dtype = np.dtype(dtype)
        if dtype.byteorder == ">":
            dtype = dtype.newbyteorder("<")
        chunk = max(1, chunk)
        chunks = (chunk, *shape[1:]) if shape else ()
        per_chunk = chunk * int(np.prod(shape[1:], dtype=np.int64))
        block = min(_BLOCK_BYTES, max(dtype.itemsize, per_chunk * dtype.itemsize))
        fill: Any = np.nan if dtype.kind == "f" else 0
        typed = {
            k: np.asarray(v).dtype.name
            for k, v in attrs.items()
            if k in ("scale_factor", "add_offset") and isinstance(v, np.floating)
        }
        attrs = _json_attrs(attrs)
        if typed:
            attrs[_TYPES] = json.dumps(typed)
        self._group.create_array(
            name,
            shape=shape,
            chunks=chunks if shape else "auto",
            dtype=dtype,
            compressors=[
                BloscCodec(
                    cname=CNAME,
                    clevel=CLEVEL,
                    shuffle="shuffle",
                    typesize=dtype.itemsize,
                    blocksize=block,
                )
            ],
            fill_value=fill,
            attributes=attrs,
            dimension_names=list(dims) if dims else None,
        )
        self._order.append(name)
        return ZarrArrayWriter(self, name, shape, dtype, chunk)

    def _submit(self, task: Callable[..., None], *args: Any) -> None:
        if self._failed is not None:
            raise self._failed
        self._slots.acquire()
        try:
            future = self._pool.submit(task, *args)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(self._done)
        self._futures.append(future)

    def _done(self, future: Future[None]) -> None:
        self._slots.release()
        exc = future.exception() if not future.cancelled() else None
        if exc is not None and self._failed is None:
            self._failed = exc

    def update_attrs(self, attrs: dict[str, Any]) -> None:
        """Set more global attributes (written with the group's metadata)."""
        self._group.attrs.update(_json_attrs(attrs))

    def close(self) -> None:
        """Wait for every chunk, then write the variables' order and the consolidated
        metadata. Raises the first error a worker met."""
        try:
            for future in self._futures:
                future.result()
        except BaseException:
            self._stop()
            raise
        self._pool.shutdown()
        if self._failed is not None:
            raise self._failed
        zarr = _zarr()
        self._group.attrs.update({_ORDER: list(self._order)})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "consolidated metadata is not in the spec"
            zarr.consolidate_metadata(self.path)

    def _stop(self) -> None:
        for future in self._futures:
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _json_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: jsonable(v) for k, v in attrs.items()}

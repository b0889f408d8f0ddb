"""Files kept open between reads: the data service's chunk requests read the same few files
over and over.

For a reader with direct chunk access, what is kept is each variable's layout (where its
chunks lie): a read then opens the file with ``os.open``, checks it is the same file,
decodes the chunks it needs and closes it, without the HDF5 lock, so reads run in
parallel; the slabs decoded last are kept, up to ``cache_bytes`` (netCDF-C keeps the chunks
it decoded in HDF5's chunk cache of each open file too: without this, data read over and
over would be decoded each time). Where the layout is not one the reader decodes, the
reader's library reads, on a handle kept open (opening a netCDF file costs about 5 ms,
more than a small read) and under the HDF5 lock. The least recently used go first.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from insitu.formats.files import reader_for
from insitu.formats.lock import HDF5_LOCK
from insitu.formats.reader import (
    Array,
    DirectVariable,
    FormatReader,
    Index,
    NotDirect,
    SupportsDirectChunks,
    SupportsKeepOpen,
    SupportsStoredChunks,
)

__all__ = ["OpenFiles", "WouldBlock"]

log = logging.getLogger(__name__)


class WouldBlock(Exception):
    """A read asked not to wait could not finish at once: another thread holds the HDF5
    lock, or a file it needs is not open yet. Read it again where waiting is fine."""


@dataclass(eq=False)
class _File:
    identity: tuple[Any, ...]
    reader: FormatReader
    direct: dict[str, DirectVariable | None] = field(default_factory=dict)
    handle: Any = None  # the library's, used and closed under HDF5_LOCK


class OpenFiles:
    """Up to ``size`` files known between reads, by path (thread-safe). ``direct=False``
    reads every value through the reader's library.

    256 files cost little memory (layouts; headers of the handles kept open) and a few
    hundred of the 20,000 descriptors a service may hold.
    """

    def __init__(
        self, size: int = 256, *, direct: bool = True, cache_bytes: int = 64 * 2**20
    ) -> None:
        self.size = size
        self.direct = direct  # False: every read through the library (for comparisons)
        self.cache_bytes = cache_bytes
        self._files: OrderedDict[str, _File] = OrderedDict()
        self._slabs: OrderedDict[tuple[Any, ...], Array] = OrderedDict()
        self._cached = 0  # bytes in _slabs
        self._mutex = threading.Lock()  # guards _files and _slabs (never held while reading)

    def read(
        self,
        path: str,
        identity: tuple[Any, ...],
        name: str,
        index: Index = (),
        *,
        wait: bool = True,
    ) -> Array:
        """Raw values of ``name`` (or its slab ``index``) in the file at ``path``.

        ``identity`` (inode, size, mtime, say) is what the caller checked the file to be: a
        file known under another identity is opened again. With ``wait=False``, raises
        :class:`WouldBlock` rather than wait for the HDF5 lock or open a file. Errors of
        the file (``OSError``, ``KeyError``...) propagate, and the file is forgotten.
        Values decoded from chunks may be shared with other callers: they are read-only.
        """
        key = (path, identity, name, tuple((s.start, s.stop, s.step) for s in index))
        with self._mutex:
            hit = self._slabs.get(key)
            if hit is not None:
                self._slabs.move_to_end(key)
                return hit
        entry = self._entry(path, identity, wait)
        try:
            var = self._direct(entry, path, name, wait)
            if var is not None:
                try:
                    return self._keep(key, var.read(index))
                except NotDirect:
                    pass  # a chunk does not decode, or the file changed: the library says
            return self._library(entry, path, name, index, wait)
        except WouldBlock:
            raise
        except Exception:
            self.forget(path)
            raise

    def stored(
        self, path: str, identity: tuple[Any, ...], name: str, *, wait: bool = True
    ) -> SupportsStoredChunks | None:
        """Variable ``name`` of the file at ``path`` if its stored chunks can be handed out
        as they are (:class:`SupportsStoredChunks`), else None. ``identity`` and ``wait``
        as in :meth:`read`; errors of the file propagate and the file is forgotten."""
        entry = self._entry(path, identity, wait)
        try:
            var = self._direct(entry, path, name, wait)
        except WouldBlock:
            raise
        except Exception:
            self.forget(path)
            raise
        return var if isinstance(var, SupportsStoredChunks) else None

    @property
    def cached_bytes(self) -> int:
        """Bytes of decoded slabs kept now (at most ``cache_bytes``)."""
        return self._cached

    def _keep(self, key: tuple[Any, ...], values: Array) -> Array:
        if values.nbytes > self.cache_bytes // 8:
            return values  # a slab that big would push out most others
        values.flags.writeable = False
        with self._mutex:
            if key not in self._slabs:
                self._slabs[key] = values
                self._cached += values.nbytes
            while self._cached > self.cache_bytes:
                self._cached -= self._slabs.popitem(last=False)[1].nbytes
        return values

    def _entry(self, path: str, identity: tuple[Any, ...], wait: bool) -> _File:
        with self._mutex:
            entry = self._files.get(path)
            if entry is not None and entry.identity == identity:
                self._files.move_to_end(path)
                return entry
        if not wait:
            raise WouldBlock(path)
        entry = _File(identity, reader_for(path))
        with self._mutex:
            old = self._files.pop(path, None)
            self._files[path] = entry
            evicted = [old] if old is not None else []
            while len(self._files) > self.size:
                evicted.append(self._files.popitem(last=False)[1])
        for gone in evicted:
            self._close(gone)
        return entry

    def _direct(self, entry: _File, path: str, name: str, wait: bool) -> DirectVariable | None:
        if name in entry.direct:
            return entry.direct[name]
        reader = entry.reader
        var = None
        if self.direct and isinstance(reader, SupportsDirectChunks):
            if not wait:
                raise WouldBlock(path)  # reading a layout takes the lock and milliseconds
            try:
                var = reader.open_direct(path, name)
            except NotDirect as exc:
                log.debug("%s of %s is read through the library: %s", name, path, exc)
        entry.direct[name] = var
        return var

    def _library(self, entry: _File, path: str, name: str, index: Index, wait: bool) -> Array:
        reader = entry.reader
        if not isinstance(reader, SupportsKeepOpen):
            if not wait:
                raise WouldBlock(path)
            return reader.read(path, name, index)
        if not HDF5_LOCK.acquire(blocking=wait):
            raise WouldBlock(path)
        try:
            if entry.handle is None:
                if not wait:
                    raise WouldBlock(path)
                entry.handle = reader.open(path)
            return reader.read_open(entry.handle, name, index)
        finally:
            HDF5_LOCK.release()

    def forget(self, path: str) -> None:
        """Forget a file (closing its handle), as after an error reading it."""
        with self._mutex:
            entry = self._files.pop(path, None)
            for key in [k for k in self._slabs if k[0] == path]:
                self._cached -= self._slabs.pop(key).nbytes
        if entry is not None:
            self._close(entry)

    def _close(self, entry: _File) -> None:
        if entry.handle is None or not isinstance(entry.reader, SupportsKeepOpen):
            return
        with HDF5_LOCK:
            handle, entry.handle = entry.handle, None
            if handle is not None:
                try:
                    entry.reader.close(handle)
                except (OSError, RuntimeError):
                    log.warning("closing a file failed", exc_info=True)

    def close(self) -> None:
        """Forget every file, closing their handles."""
        with self._mutex:
            entries = list(self._files.values())
            self._files.clear()
            self._slabs.clear()
            self._cached = 0
        for entry in entries:
            self._close(entry)

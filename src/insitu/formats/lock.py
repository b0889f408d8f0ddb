"""The one lock around the HDF5 library, which is not thread-safe.

Every call into HDF5 in this process (netCDF-C's, and the header and layout readers' direct
calls) holds :data:`HDF5_LOCK`. Once xarray is loaded it also takes xarray's own
``HDF5_LOCK``, which xarray's netCDF4 and h5netcdf backends hold: then insitu's reads and a
notebook's ``xarray.open_dataset`` (or a subset written with ``to_netcdf``) never overlap.
Before xarray is loaded no one else calls HDF5, and importing xarray only to get its lock
would cost every scan worker half a second.
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import Any

__all__ = ["HDF5_LOCK", "Hdf5Lock"]


class Hdf5Lock:
    """insitu's HDF5 lock, joined with xarray's once xarray is loaded (not reentrant)."""

    def __init__(self) -> None:
        self._own = threading.Lock()
        self._held = threading.local()

    @staticmethod
    def _xarray() -> Any:
        locks = sys.modules.get("xarray.backends.locks")
        return None if locks is None else locks.HDF5_LOCK

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False``, return False at once if it is taken."""
        outer = self._xarray()  # always taken first: no two orders, no deadlock
        if outer is not None and not outer.acquire(blocking=blocking):
            return False
        if not self._own.acquire(blocking=blocking):
            if outer is not None:
                outer.release()
            return False
        self._held.outer = outer
        return True

    def release(self) -> None:
        """Give the lock back (from the thread that took it)."""
        outer = self._held.outer
        self._held.outer = None
        self._own.release()
        if outer is not None:
            outer.release()

    def locked(self) -> bool:
        """Whether some thread holds it."""
        return self._own.locked()

    def __enter__(self) -> Hdf5Lock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


HDF5_LOCK = Hdf5Lock()

"""A worker plugin that imports what insitu's tasks unpickle, as each worker starts.

A fresh worker that unpickles an xarray object before anything imported xarray imports
``xarray.core.dataset`` first, which fails with a circular import; the error is raised
while the worker reads its scheduler's stream, so the worker stays up but never runs a
task again (a job on it then waits forever). Importing xarray first avoids it; the first
task also no longer pays for the imports (about a second). The tasks of a time mean also
need Dask's array module (to unpickle their graph, about 0.4 s) and h5py (to read where the
chunks of a file lie): a cold ``insitu compute`` run otherwise paid for them in the first
task of one worker while the other waited.
"""

from __future__ import annotations

from typing import Any

from distributed import WorkerPlugin

__all__ = ["ImportLibraries"]


class ImportLibraries(WorkerPlugin):
    """Imports xarray, Dask's arrays, netCDF4, h5py and insitu's compute code in every
    worker, new ones too."""

    name = "insitu-imports"

    def setup(self, worker: Any) -> None:
        import dask.array  # noqa: F401
        import h5py  # type: ignore[import-untyped]  # noqa: F401
        import netCDF4  # noqa: F401
        import xarray  # noqa: F401

        import insitu.compute  # noqa: F401

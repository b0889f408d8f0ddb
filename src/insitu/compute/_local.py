"""Dask ``LocalCluster`` on this machine: one single-threaded worker process per core."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from insitu.compute.backend import ClusterSpec, DaskClusterBackend

__all__ = ["LocalBackend"]


class LocalBackend(DaskClusterBackend):
    """Worker processes on this machine (no threaded HDF5 access), bound to loopback."""

    name: ClassVar[str] = "local"

    def _make(self, spec: ClusterSpec) -> Any:
        from distributed import LocalCluster

        from insitu.compute._nanny import WorkerNanny

        return LocalCluster(
            n_workers=spec.workers or os.cpu_count() or 1,
            threads_per_worker=spec.threads_per_worker,
            processes=True,
            memory_limit=spec.memory_limit,
            host="127.0.0.1",
            dashboard_address=spec.dashboard_address,
            # Its workers (also those of a later scale-up) start with WORKER_ENV.
            worker_class=WorkerNanny,
        )

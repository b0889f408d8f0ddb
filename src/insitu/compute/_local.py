"""Dask ``LocalCluster`` on this machine: one single-threaded worker process per core."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from insitu.compute.backend import WORKER_CONFIG, ClusterSpec, DaskClusterBackend

__all__ = ["LocalBackend"]


class LocalBackend(DaskClusterBackend):
    """Worker processes on this machine (no threaded HDF5 access), bound to loopback."""

    name: ClassVar[str] = "local"

    def _make(self, spec: ClusterSpec) -> Any:
        import dask.config
        from distributed import LocalCluster

        from insitu.compute._nanny import WorkerNanny

        # The scheduler and the nannies run in this process, beside the workers on the
        # same cores: they take WORKER_CONFIG's quieter housekeeping too (read as they start).
        with dask.config.set(WORKER_CONFIG):
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

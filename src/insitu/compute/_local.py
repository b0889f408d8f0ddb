"""Dask ``LocalCluster`` on this machine: one single-threaded worker process per core."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from insitu.compute.backend import WORKER_ENV, ClusterSpec, DaskClusterBackend

__all__ = ["LocalBackend"]


class LocalBackend(DaskClusterBackend):
    """Worker processes on this machine (no threaded HDF5 access), bound to loopback."""

    name: ClassVar[str] = "local"

    def _make(self, spec: ClusterSpec) -> Any:
        import dask

        # glibc reads its malloc settings at process start: they must be in the nanny's
        # pre-spawn environment (read when each nanny is made, and kept for restarts);
        # ``env=`` is applied too late.
        spawn_env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_ENV}
        with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env}):
            return self._cluster(spec)

    def _cluster(self, spec: ClusterSpec) -> Any:
        from distributed import LocalCluster

        return LocalCluster(
            n_workers=spec.workers or os.cpu_count() or 1,
            threads_per_worker=spec.threads_per_worker,
            processes=True,
            memory_limit=spec.memory_limit,
            host="127.0.0.1",
            dashboard_address=spec.dashboard_address,
        )

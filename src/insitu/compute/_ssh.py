"""Dask over several hosts reached by SSH: the first host runs the scheduler."""

from __future__ import annotations

import sys
from typing import Any, ClassVar

from insitu.compute.backend import WORKER_NANNY, ClusterSpec, DaskClusterBackend
from insitu.errors import ConfigError

__all__ = ["SSHBackend"]


class SSHBackend(DaskClusterBackend):
    """``distributed.SSHCluster`` over ``compute.ssh_hosts``."""

    name: ClassVar[str] = "ssh"

    def _make(self, spec: ClusterSpec) -> Any:
        from distributed import SSHCluster

        hosts = list(spec.options.get("hosts", []))
        if len(hosts) < 2:
            raise ConfigError(
                "The ssh backend needs compute.ssh_hosts with the scheduler host first and at "
                f"least one worker host; got {hosts!r}."
            )
        return SSHCluster(
            hosts,
            connect_options=dict(spec.options.get("connect_options") or {}),
            worker_options={
                "nthreads": spec.threads_per_worker,
                "memory_limit": spec.memory_limit,
            },
            # Imported on each worker host (insitu must be installed there anyway, since
            # the tasks are insitu's): the nanny that starts workers with WORKER_ENV.
            worker_class=WORKER_NANNY,
            # Bind the scheduler and its dashboard to the address the other hosts reach it
            # by; left alone, it advertises the address of its default route or, without
            # one, its hostname's (often 127.0.0.1), which workers elsewhere cannot reach.
            scheduler_options={"host": hosts[0], "dashboard_address": f"{hosts[0]}:0"},
            remote_python=spec.options.get("python") or sys.executable,
        )

    def scale(self, handle: Any, workers: int) -> None:
        """SSH clusters have one worker per listed host; scaling is not possible."""
        raise ConfigError(
            "An ssh cluster has one worker per host in compute.ssh_hosts; change that list "
            "and restart the cluster to change its size."
        )

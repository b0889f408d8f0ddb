"""Where work runs: the cluster backend interface and its registry.

A backend starts a Dask cluster somewhere (local processes, batch jobs, other hosts, a
gateway, Kubernetes) and returns a handle whose ``cluster`` is a regular Dask cluster
object, so the rest of insitu talks to every backend through ``distributed.Client``.
Built-in backends are imported lazily; a missing package gives an install hint.
Third-party backends register under the entry-point group ``insitu.compute_backends``.
"""

from __future__ import annotations

import importlib
import shlex
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol, runtime_checkable

from insitu.errors import BackendUnavailable, ConfigError

__all__ = [
    "BACKENDS",
    "PRE_SPAWN_VARIABLE",
    "WORKER_CONFIG",
    "WORKER_ENV",
    "WORKER_NANNY",
    "ClusterBackend",
    "ClusterHandle",
    "ClusterSpec",
    "DaskClusterBackend",
    "get_backend",
    "pre_spawn_environ",
    "worker_config",
    "worker_config_env",
    "worker_env_exports",
]


# Dask's nanny gives workers MALLOC_TRIM_THRESHOLD_=65536, so every large array freed goes
# back to the kernel and the next one faults its pages in again: reading NetCDF in a worker
# then runs about 1.6 times slower than in a plain process (measured on 12 MB slabs).
# Streaming slabs are bounded, so letting glibc keep a few hundred MB is the better trade.
# glibc reads these once, at process start: every backend must put them in the nanny's
# pre-spawn environment (WORKER_NANNY, or worker_env_exports() for batch jobs).
WORKER_ENV: dict[str, str] = {
    "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20),
    "MALLOC_MMAP_THRESHOLD_": str(256 * 2**20),
    "MALLOC_TOP_PAD_": str(64 * 2**20),
}

# Dask's own housekeeping in each worker samples the task thread's stack every 10 ms (the
# dashboard's profile), ticks the event loop every 20 ms and polls the process's resources
# every 0.5 s and its memory every 0.1 s: about 0.045 cores on an idle cluster of two
# workers here, taken from the decoding and unevenly (one worker's tasks end later), and a
# time mean over 5 GB 3-8% slower (BENCHMARKS.md, "Quiet workers"). These settings bring
# it to about 0.015 cores; memory limits are still checked twice a second.
WORKER_CONFIG: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "500ms",
}


def worker_config() -> dict[str, Any]:
    """:data:`WORKER_CONFIG` as a nested Dask configuration (what a nanny hands its worker)."""
    import dask.config

    nested: dict[str, Any] = {}
    for key, value in WORKER_CONFIG.items():
        dask.config.set({key: value}, config=nested)
    return nested


def worker_config_env() -> dict[str, str]:
    """:data:`WORKER_CONFIG` as the ``DASK_...`` variables Dask reads at start."""
    return {
        "DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(value)
        for key, value in WORKER_CONFIG.items()
    }


# The nanny class that does so, for backends that name their worker class.
WORKER_NANNY = "insitu.compute._nanny.WorkerNanny"


def worker_env_exports() -> list[str]:
    """Shell lines that give the nanny of a batch job :data:`WORKER_ENV` before it spawns,
    and its worker :data:`WORKER_CONFIG` (as ``DASK_...`` variables).

    Exporting the variables themselves is not enough: the nanny's pre-spawn environment
    (``MALLOC_TRIM_THRESHOLD_=65536`` by default) overwrites them. Dask reads
    ``DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON`` as a Python literal and merges the dict
    key by key into its defaults (one variable per key would not do: Dask lower-cases
    the key names it finds in variable names).
    """
    quiet = [f"export {k}={shlex.quote(v)}" for k, v in worker_config_env().items()]
    return [f"export {PRE_SPAWN_VARIABLE}={shlex.quote(pre_spawn_environ())}", *quiet]


# The variable through which a nanny started outside insitu's code gets WORKER_ENV.
PRE_SPAWN_VARIABLE = "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON"


def pre_spawn_environ() -> str:
    """The value of :data:`PRE_SPAWN_VARIABLE`: :data:`WORKER_ENV` as a Python literal."""
    return repr(dict(WORKER_ENV))


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """What to start: worker count and size, plus the backend's own options."""

    workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    dashboard_address: str = "127.0.0.1:0"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ClusterHandle:
    """A started cluster. ``cluster`` is the Dask cluster object (``Client(cluster)``)."""

    backend: str
    cluster: Any

    @property
    def scheduler_address(self) -> str:
        """The scheduler's address, e.g. ``tcp://127.0.0.1:34567``."""
        return str(self.cluster.scheduler_address)

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's URL, if the cluster has one."""
        link = getattr(self.cluster, "dashboard_link", None)
        return str(link) if link else None


@runtime_checkable
class ClusterBackend(Protocol):
    """Starts, scales and stops Dask clusters of one kind. One instance per process."""

    name: ClassVar[str]

    def start(self, spec: ClusterSpec) -> ClusterHandle:
        """Start a cluster (workers may still be arriving when this returns).

        Raises :class:`BackendUnavailable` with the reason when it cannot start.
        """

    def scale(self, handle: ClusterHandle, workers: int) -> None:
        """Ask for ``workers`` workers (jobs are submitted or cancelled as needed)."""

    def stop(self, handle: ClusterHandle) -> None:
        """Stop the cluster and release every worker and job."""


class DaskClusterBackend:
    """Shared machinery for backends that wrap a ``distributed`` cluster class."""

    name: ClassVar[str] = "?"

    def _make(self, spec: ClusterSpec) -> Any:
        raise NotImplementedError

    def start(self, spec: ClusterSpec) -> ClusterHandle:
        try:
            cluster = self._make(spec)
        except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
            raise BackendUnavailable(
                f"The {self.name} cluster did not start: {exc.__class__.__name__}: {exc}. "
                f"Check the compute settings ('insitu config show') and that the {self.name} "
                "system is reachable from this machine."
            ) from exc
        return ClusterHandle(self.name, cluster)

    def scale(self, handle: ClusterHandle, workers: int) -> None:
        handle.cluster.scale(workers)

    def stop(self, handle: ClusterHandle) -> None:
        handle.cluster.close()


# name -> (import path, package it needs, pip extra)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "local": ("insitu.compute._local:LocalBackend", "distributed", "insitu"),
    "slurm": ("insitu.compute._jobqueue:SlurmBackend", "dask_jobqueue", "insitu[jobqueue]"),
    "pbs": ("insitu.compute._jobqueue:PBSBackend", "dask_jobqueue", "insitu[jobqueue]"),
    "lsf": ("insitu.compute._jobqueue:LSFBackend", "dask_jobqueue", "insitu[jobqueue]"),
    "sge": ("insitu.compute._jobqueue:SGEBackend", "dask_jobqueue", "insitu[jobqueue]"),
    "ssh": ("insitu.compute._ssh:SSHBackend", "asyncssh", "insitu[ssh]"),
    "gateway": ("insitu.compute._gateway:GatewayBackend", "dask_gateway", "insitu[gateway]"),
    "kubernetes": (
        "insitu.compute._kubernetes:KubernetesBackend",
        "dask_kubernetes",
        "insitu[kubernetes]",
    ),
}


def get_backend(name: str) -> ClusterBackend:
    """The backend called ``name``: built-in, or registered by another package."""
    if name in BACKENDS:
        target, package, extra = BACKENDS[name]
        try:
            importlib.import_module(package)
        except ImportError as exc:
            raise BackendUnavailable(
                f"The {name!r} compute backend needs the {package!r} package, which is not "
                f"installed. Install it with: pip install '{extra}'"
            ) from exc
        module, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        backend: ClusterBackend = cls()
        return backend
    for ep in entry_points(group="insitu.compute_backends"):
        if ep.name == name:
            plugin: ClusterBackend = ep.load()()
            return plugin
    known = sorted({*BACKENDS, *(ep.name for ep in entry_points(group="insitu.compute_backends"))})
    raise ConfigError(
        f"Unknown compute backend {name!r}. Known backends: {', '.join(known)}. "
        "Set compute.backend (INSITU_COMPUTE__BACKEND) to one of them."
    )

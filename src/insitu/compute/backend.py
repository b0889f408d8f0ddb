"""Where work runs: the cluster backend interface and its registry.

A backend starts a Dask cluster somewhere (local processes, batch jobs, other hosts, a
gateway, Kubernetes) and returns a handle whose ``cluster`` is a regular Dask cluster
object, so the rest of insitu talks to every backend through ``distributed.Client``.
Built-in backends are imported lazily; a missing package gives an install hint.
Third-party backends register under the entry-point group ``insitu.compute_backends``.
Each backend reads its own options from the settings (``options_from_settings``) and
declares what it can do (``supports_scale``); ``insitu.testing.ClusterBackendTests`` is
the contract every backend passes.

Clusters whose scheduler or workers other machines reach (ssh, the batch schedulers) speak
TLS only, with credentials made for that cluster (:func:`cluster_security`): a client,
worker or scheduler without them is refused. Their dashboards listen on loopback only
(:func:`check_loopback_dashboard`), since Dask's dashboard has no login.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import shlex
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from insitu._util import write_atomic
from insitu.errors import BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from distributed.security import Security

    from insitu.settings import Settings

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
    "check_loopback_dashboard",
    "cluster_security",
    "get_backend",
    "owner_directory",
    "pre_spawn_environ",
    "read_client_credentials",
    "worker_config",
    "worker_config_env",
    "worker_env_exports",
    "write_client_credentials",
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


def cluster_security() -> Security:
    """New TLS credentials for one cluster, held in memory by its owner's process.

    Dask's ``Security.temporary()``: a fresh key and a self-signed certificate that is at
    once the cluster's certificate authority and the certificate of its scheduler, workers
    and clients. Connections need TLS (``require_encryption``) and both ends must show a
    certificate signed by it, so a client, worker or scheduler without the key is refused.

    Raises :class:`BackendUnavailable` when the ``cryptography`` package is missing.
    """
    from distributed.security import Security

    try:
        security: Security = Security.temporary()
    except ImportError as exc:
        raise BackendUnavailable(
            "Clusters that listen beyond this machine's loopback use TLS with certificates "
            "made for each cluster, which needs the 'cryptography' package. Install it with: "
            "pip install cryptography"
        ) from exc
    return security


def owner_directory(path: str | os.PathLike[str]) -> Path:
    """``path`` as a directory only its owner can enter (created, or tightened, to 0700).

    Raises :class:`ConfigError` when it exists but belongs to another user, or cannot be
    made.
    """
    directory = Path(path).expanduser()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if directory.stat().st_uid != os.getuid():
            raise ConfigError(
                f"The directory for cluster credentials {str(directory)!r} belongs to another "
                "user; choose a directory of your own for them."
            )
        directory.chmod(0o700)
    except OSError as exc:
        raise ConfigError(
            f"Cannot make the directory for cluster credentials {str(directory)!r}: {exc}. "
            "Choose a directory you can write to."
        ) from exc
    return directory


def _pem(value: str) -> str:
    """A PEM held in memory (Dask's temporary credentials) or read from its file."""
    return value if "\n" in value else Path(value).read_text()


def write_client_credentials(security: Security, directory: Path) -> dict[str, str]:
    """Write the client part of ``security`` (CA, certificate, key) into ``directory``.

    The directory is made 0700 and each file 0600, for the owner only. Returns the paths,
    as :func:`read_client_credentials` takes them.
    """
    tls = security.get_tls_config_for_role("client")
    directory = owner_directory(directory)
    paths = {}
    for name in ("ca_file", "cert", "key"):
        value = tls.get(name)
        if not value:
            raise ConfigError(f"The cluster's TLS settings have no client {name}.")
        path = directory / f"{name.removesuffix('_file')}.pem"
        write_atomic(path, _pem(str(value)))  # owner only from the first byte on
        paths[name] = str(path)
    return paths


def read_client_credentials(paths: dict[str, str]) -> Security:
    """The client :class:`~distributed.security.Security` of files written by
    :func:`write_client_credentials`."""
    from distributed.security import Security

    return Security(
        require_encryption=True,
        tls_ca_file=paths["ca_file"],
        tls_client_cert=paths["cert"],
        tls_client_key=paths["key"],
    )


_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def check_loopback_dashboard(address: str, backend: str) -> None:
    """Refuse a dashboard address beyond loopback for a cluster that other machines reach.

    Dask's dashboard has no login and is served without the cluster's TLS, so it listens
    on the scheduler host's loopback; users reach it through an SSH tunnel.
    """
    host = address.rsplit(":", 1)[0] if ":" in address else address
    host = host.strip("[]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host.lower() in _LOOPBACK_NAMES
    if not loopback:
        raise ConfigError(
            f"compute.dashboard_address {address!r} is not a loopback address: the {backend} "
            "backend's dashboard has no login, so it listens on the scheduler host's "
            "loopback only. Set compute.dashboard_address to '127.0.0.1:0' (or "
            "'127.0.0.1:PORT') and reach it with 'ssh -L PORT:127.0.0.1:PORT SCHEDULER_HOST'."
        )


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
    """A started cluster. ``cluster`` is the Dask cluster object (``Client(cluster)``).

    ``security`` holds the cluster's TLS credentials (:func:`cluster_security`) when it
    has its own; ``Client(cluster)`` uses them, a client by address needs them.
    """

    backend: str
    cluster: Any
    security: Security | None = None

    @property
    def scheduler_address(self) -> str:
        """The scheduler's address, e.g. ``tcp://127.0.0.1:34567``."""
        return str(self.cluster.scheduler_address)

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's URL, if the cluster has one.

        A cluster with its own credentials serves its dashboard on the scheduler host's
        loopback (:func:`check_loopback_dashboard`): the URL says 127.0.0.1.
        """
        link = getattr(self.cluster, "dashboard_link", None)
        if not link:
            return None
        if self.security is None:
            return str(link)
        parts = urlsplit(str(link))
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit(parts._replace(netloc=f"127.0.0.1{port}"))


@runtime_checkable
class ClusterBackend(Protocol):
    """Starts, scales and stops Dask clusters of one kind. One instance per process.

    ``supports_scale`` says whether :meth:`scale` can change a running cluster's size;
    where it cannot, :meth:`scale` raises :class:`ConfigError` saying what to do instead.
    """

    name: ClassVar[str]
    supports_scale: ClassVar[bool]

    @classmethod
    def options_from_settings(cls, settings: Settings) -> dict[str, Any]:
        """This backend's :attr:`ClusterSpec.options`, as the settings give them."""

    def start(self, spec: ClusterSpec) -> ClusterHandle:
        """Start a cluster (workers may still be arriving when this returns).

        Raises :class:`BackendUnavailable` with the reason when it cannot start, and
        :class:`ConfigError` for options it cannot use.
        """

    def scale(self, handle: ClusterHandle, workers: int) -> None:
        """Ask for ``workers`` workers (jobs are submitted or cancelled as needed)."""

    def stop(self, handle: ClusterHandle) -> None:
        """Stop the cluster and release every worker and job; stopping again is harmless."""


class DaskClusterBackend:
    """Shared machinery for backends that wrap a ``distributed`` cluster class.

    A backend whose clusters have credentials of their own (``cluster.security``, made
    with :func:`cluster_security`) sets ``own_credentials``; the handle then carries them.
    ``option_names`` are the keys of :attr:`ClusterSpec.options` it knows (others are
    refused); ``options_from_settings`` fills them from the settings.
    """

    name: ClassVar[str] = "?"
    own_credentials: ClassVar[bool] = False
    supports_scale: ClassVar[bool] = True
    option_names: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def options_from_settings(cls, settings: Settings) -> dict[str, Any]:
        """No options of its own: worker count and size are the spec's."""
        return {}

    def check_options(self, spec: ClusterSpec) -> None:
        """Refuse options this backend does not know, naming the ones it does."""
        unknown = sorted(set(spec.options) - self.option_names)
        if unknown:
            known = ", ".join(sorted(self.option_names)) or "none"
            raise ConfigError(
                f"The {self.name} backend has no option {', '.join(map(repr, unknown))}; "
                f"its options are: {known}. They come from the compute settings "
                "('insitu config show')."
            )

    def _make(self, spec: ClusterSpec) -> Any:
        raise NotImplementedError

    def start(self, spec: ClusterSpec) -> ClusterHandle:
        self.check_options(spec)
        try:
            cluster = self._make(spec)
        except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
            raise BackendUnavailable(
                f"The {self.name} cluster did not start: {exc.__class__.__name__}: {exc}. "
                f"Check the compute settings ('insitu config show') and that the {self.name} "
                "system is reachable from this machine."
            ) from exc
        return ClusterHandle(self.name, cluster, cluster.security if self.own_credentials else None)

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

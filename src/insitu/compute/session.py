"""Getting a Dask client: a cluster for the length of a ``with`` block, or the long-running
cluster started by ``insitu cluster up`` (recorded in ``<data_dir>/cluster.json``).

A cluster with credentials of its own (TLS: the ssh and batch backends) is joined with
them: the client of a cluster started here takes them from the cluster object, and the
running cluster's daemon writes its client credentials into ``<data_dir>/cluster-tls/``
(0700, files 0600, for the owner only) and names them in the record.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from insitu.compute.backend import (
    ClusterBackend,
    ClusterSpec,
    get_backend,
    read_client_credentials,
)
from insitu.errors import BackendUnavailable
from insitu.settings import Settings

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "ClusterState",
    "cluster",
    "connect",
    "credentials_directory",
    "running_cluster",
    "scale_file",
    "spec_from_settings",
    "state_file",
]

log = logging.getLogger(__name__)


def spec_from_settings(
    settings: Settings, backend: str | ClusterBackend, workers: int | None
) -> ClusterSpec:
    """The cluster spec the settings describe for ``backend`` (a name, or the backend).

    Worker count and size are the same for every backend; the backend reads its own
    options (``options_from_settings``). An unknown name raises :class:`ConfigError`.
    """
    impl = get_backend(backend) if isinstance(backend, str) else backend
    # A backend of another package written before options_from_settings takes none.
    from_settings = getattr(impl, "options_from_settings", None)
    c = settings.compute
    return ClusterSpec(
        workers=workers or c.workers,
        threads_per_worker=c.threads_per_worker,
        memory_limit=c.memory_limit,
        dashboard_address=c.dashboard_address,
        options=dict(from_settings(settings)) if from_settings is not None else {},
    )


def state_file(settings: Settings) -> Path:
    """Where ``insitu cluster up`` records its running cluster."""
    return settings.data_dir / "cluster.json"


def scale_file(settings: Settings) -> Path:
    """Where ``insitu cluster scale`` leaves its request for the running cluster."""
    return settings.data_dir / "cluster-scale.json"


def credentials_directory(settings: Settings) -> Path:
    """Where ``insitu cluster up`` keeps its cluster's client credentials (owner only)."""
    return settings.data_dir / "cluster-tls"


@dataclass(frozen=True, slots=True)
class ClusterState:
    """The long-running cluster of ``insitu cluster up``.

    ``tls`` names the files of its client credentials (``ca_file``, ``cert``, ``key``)
    when it has credentials of its own.
    """

    pid: int
    backend: str
    scheduler_address: str
    dashboard_link: str | None
    tls: dict[str, str] | None = None

    @classmethod
    def read(cls, settings: Settings) -> ClusterState | None:
        """The recorded cluster, if its process is still alive."""
        path = state_file(settings)
        try:
            data = json.loads(path.read_text())
            os.kill(int(data["pid"]), 0)
        except (OSError, ValueError, KeyError):
            return None
        return cls(
            int(data["pid"]),
            data["backend"],
            data["scheduler_address"],
            data.get("dashboard_link"),
            data.get("tls"),
        )


def running_cluster(settings: Settings) -> ClusterState | None:
    """The cluster started by ``insitu cluster up``, if one is running."""
    return ClusterState.read(settings)


def connect(settings: Settings, state: ClusterState, *, set_as_default: bool = True) -> Client:
    """A client of the running cluster ``state`` of ``insitu cluster up``.

    A backend whose schedulers need credentials to connect (the gateway's TLS) has a
    ``connect(spec, scheduler_address)`` method that gets them; a cluster with credentials
    of its own is joined with the files its daemon wrote; others take the address.
    """
    from distributed import Client

    impl = get_backend(state.backend)
    backend_connect = getattr(impl, "connect", None)
    if backend_connect is not None:
        spec = spec_from_settings(settings, impl, None)
        client: Client = backend_connect(
            spec, state.scheduler_address, set_as_default=set_as_default
        )
        return client
    if state.tls is not None:
        try:
            security = read_client_credentials(state.tls)
            return Client(
                state.scheduler_address,
                security=security,
                timeout="10s",
                set_as_default=set_as_default,
            )
        except FileNotFoundError as exc:
            raise BackendUnavailable(
                f"The credentials of the running {state.backend} cluster are missing "
                f"({exc.filename}); only the user who ran 'insitu cluster up' can join it. "
                "Restart it with 'insitu cluster down' and 'insitu cluster up'."
            ) from exc
    return Client(state.scheduler_address, timeout="10s", set_as_default=set_as_default)


@contextmanager
def cluster(
    settings: Settings | None = None,
    *,
    backend: str | None = None,
    workers: int | None = None,
    reuse: bool = True,
    set_as_default: bool = True,
) -> Iterator[Client]:
    """A Dask client for the duration of the block.

    Connects to the cluster of ``insitu cluster up`` when one runs (and ``reuse``), else
    starts one with ``backend`` (default: ``compute.backend``) and stops it on exit.
    The dashboard address is logged and available as ``client.dashboard_link``.
    ``set_as_default=False`` keeps Dask's default scheduler as it was, so that only work
    given to this client explicitly runs on the cluster (what a server that also computes
    small answers in its own process needs).
    """
    from distributed import Client

    settings = settings or Settings.load()
    state = running_cluster(settings) if reuse and backend is None else None
    if state is not None:
        client = connect(settings, state, set_as_default=set_as_default)
        try:
            _prepare_workers(client)
            log.info(
                "using the running %s cluster, dashboard %s", state.backend, state.dashboard_link
            )
            yield client
        finally:
            client.close()
        return
    name = backend or settings.compute.backend
    impl = get_backend(name)
    handle = impl.start(spec_from_settings(settings, impl, workers))
    try:
        client = Client(handle.cluster, set_as_default=set_as_default)
        _prepare_workers(client)
    except (OSError, TimeoutError) as exc:
        impl.stop(handle)
        raise BackendUnavailable(f"Cannot connect to the new {name} cluster: {exc}") from exc
    log.info("started a %s cluster, dashboard %s", name, handle.dashboard_link)
    try:
        yield client
    finally:
        client.close()
        impl.stop(handle)


def _prepare_workers(client: Client) -> None:
    """Every worker of ``client``'s cluster, present and future, imports insitu's libraries
    before its first task (:class:`~insitu.compute._imports.ImportLibraries`)."""
    from insitu.compute._imports import ImportLibraries

    client.register_plugin(ImportLibraries())

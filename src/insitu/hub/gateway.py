"""The Dask-Gateway server of the platform, run by the hub as its service 'dask-gateway'.

Users authenticate with their hub token (the gateway asks the hub who it is and checks
``access:services!service=dask-gateway``), see and reach only their own clusters, and each
cluster is held to the limits of the hub settings. In 'users' isolation the scheduler and
workers run as the user's own unix account (Dask-Gateway's ``LocalBackend``); in 'single'
isolation as the platform's account (``UnsafeLocalBackend``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from insitu.hub.config import PLATFORM_MARK, user_environment
from insitu.hub.paths import HubPaths, Ports, isolation
from insitu.settings import Settings

__all__ = ["PREFIX", "configure_gateway"]

PREFIX = "/services/dask-gateway"


def _user_backend() -> type:
    from dask_gateway_server.backends.local import LocalBackend

    class UserLocalBackend(LocalBackend):  # type: ignore[misc]
        """Dask-Gateway's ``LocalBackend`` (clusters run as their user's unix account).

        Its ``setup_working_directory`` (2026.3.0) adds the TLS files' paths letter by
        letter to the files it hands over to the user (``list.extend`` of a string), so
        every cluster fails to start; this one hands over the folders and both files.
        """

        def setup_working_directory(self, cluster: Any) -> str:
            import tempfile

            if self.clusters_directory:
                workdir = os.path.join(self.clusters_directory, cluster.name)
            else:
                workdir = tempfile.mkdtemp(prefix="dask", suffix=cluster.name)
            paths = [workdir, self.get_certs_directory(workdir), self.get_logs_directory(workdir)]
            for path in paths:
                os.makedirs(path, 0o700, exist_ok=True)
            cert_path, key_path = self._get_tls_paths(workdir)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            for path, data in ((cert_path, cluster.tls_cert), (key_path, cluster.tls_key)):
                with os.fdopen(os.open(path, flags, 0o600), "wb") as f:
                    f.write(data)
                paths.append(path)
            self.set_file_permissions(paths, cluster.username)
            return str(workdir)

    return UserLocalBackend


def _options(max_cores: float, max_memory_gb: float) -> Any:
    from dask_gateway_server.options import Float, Integer, Mapping, Options

    cores = max(1, int(max_cores))

    def handler(options: Any, user: Any) -> dict[str, Any]:
        return {
            "worker_cores": options.worker_cores,
            "worker_memory": int(options.worker_memory * 2**30),
            "environment": dict(options.environment),
        }

    return Options(
        Integer("worker_cores", default=1, min=1, max=cores, label="Cores per worker"),
        Float(
            "worker_memory", default=1, min=0.25, max=max_memory_gb, label="Memory per worker (GiB)"
        ),
        Mapping("environment", default={}, label="Environment variables"),
        handler=handler,
    )


def configure_gateway(c: Any, settings: Settings) -> None:
    """Fill Dask-Gateway's config object ``c`` from ``settings``."""
    hub = settings.hub
    ports = Ports.of(settings)
    paths = HubPaths.of(settings)
    c.DaskGateway.address = f"127.0.0.1:{ports.gateway_api}"
    c.Proxy.address = f"127.0.0.1:{ports.gateway_http}"
    c.Proxy.tcp_address = f"127.0.0.1:{ports.gateway_tcp}"
    c.Proxy.prefix = PREFIX
    c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
    if isolation(settings) == "users":
        c.DaskGateway.backend_class = _user_backend()
    else:
        c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
        c.UnsafeLocalBackend.clusters_directory = str(paths.gateway / "clusters")
        (paths.gateway / "clusters").mkdir(parents=True, exist_ok=True)
    # Clusters do not outlive the gateway (it stops them on shutdown): an in-memory database.
    c.DBBackendBase.db_url = "sqlite://"
    dask = str(Path(sys.prefix) / "bin" / "dask")
    # Dask-Gateway's defaults ('dask-scheduler', 'dask-worker') no longer exist in distributed.
    c.ClusterConfig.scheduler_cmd = [dask, "scheduler"]
    c.ClusterConfig.worker_cmd = [dask, "worker"]
    c.ClusterConfig.cluster_max_cores = hub.cluster_max_cores
    c.ClusterConfig.cluster_max_memory = int(hub.cluster_max_memory_gb * 2**30)
    c.ClusterConfig.scheduler_memory = "1 G"
    c.ClusterConfig.idle_timeout = hub.cluster_idle_timeout
    env = user_environment(settings, ports)
    c.ClusterConfig.environment = {
        "INSITU_CATALOG__URI": env["INSITU_CATALOG__URI"],
        PLATFORM_MARK: os.environ.get(PLATFORM_MARK, ""),
    }
    c.Backend.cluster_options = _options(hub.cluster_max_cores, hub.cluster_max_memory_gb)

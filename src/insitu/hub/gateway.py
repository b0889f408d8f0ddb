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

from insitu.hub.config import PLATFORM_MARK, notebook_catalog_uri
from insitu.hub.dashboard_socket import SOCKET_ENV
from insitu.hub.dashboards import SOCKET
from insitu.hub.paths import HubPaths, Ports, isolation
from insitu.settings import Settings

__all__ = ["PREFIX", "clusters_directory", "configure_gateway"]

PREFIX = "/services/dask-gateway"
CATALOG_URI = "INSITU_CATALOG__URI"


def _usage(backend: Any, username: str) -> tuple[float, int]:
    """Cores and bytes of memory held by all of a user's active clusters."""
    cores, memory = 0.0, 0
    for cluster in backend.db.list_clusters(username=username):
        config = cluster.config
        cores += config.get("scheduler_cores", 1)
        memory += config.get("scheduler_memory", 0)
        workers = len(cluster.active_workers())
        cores += workers * config.get("worker_cores", 1)
        memory += workers * config.get("worker_memory", 0)
    return cores, memory


def _with_user_limits(base: type) -> type:
    """``base`` held to limits across ALL of a user's clusters, which Dask-Gateway only
    has per cluster: a scale-up stops at the user's cores and memory (it says so in the
    gateway's log), and a new cluster is refused when its scheduler would not fit."""
    from traitlets import Float, Integer, Unicode

    class UserLimited(base):  # type: ignore[misc]
        user_max_cores = Float(0.0, config=True, help="Cores per user, all clusters (0: none).")
        user_max_memory = Integer(0, config=True, help="Bytes per user, all clusters (0: none).")
        usage_file = Unicode("", config=True, help="The platform's usage log (accounting).")

        @property
        def usage(self) -> Any:
            from insitu.access import UsageLog

            return UsageLog(Path(self.usage_file)) if self.usage_file else None

        def _record(self, start: bool, kind: str, key: str, user: str, cores: float) -> None:
            try:
                if self.usage is None:
                    return
                if start:
                    self.usage.start(kind, key, user, cores)
                else:
                    self.usage.stop(key)
            except Exception:  # accounting never stops a cluster
                self.log.exception("Could not record usage of %s", key)

        def get_scheduler_env(self, cluster: Any) -> dict[str, str]:
            env: dict[str, str] = super().get_scheduler_env(cluster)
            # The dashboard on a socket in the cluster's folder (dashboard_socket.py).
            env[SOCKET_ENV] = os.path.join(cluster.state["workdir"], SOCKET)
            return env

        async def _check_cluster_proxied(self, cluster: Any) -> None:
            """Upstream's (2026.3.0) less the dashboard's route: the dashboard listens on
            no port (see :mod:`insitu.hub.dashboard_socket`), its owner's server proxies
            it. The scheduler's route (TLS, by cluster name) is upstream's."""
            if not cluster.added_to_proxies:
                self.log.info("Adding cluster %s's scheduler route to the proxy", cluster.name)
                await self.proxy.add_route(
                    kind="SNI", sni=cluster.name, target=cluster.scheduler_address
                )
                cluster.added_to_proxies = True

        async def do_start_cluster(self, cluster: Any) -> Any:
            cores = cluster.config.get("scheduler_cores", 1)
            self._record(True, "scheduler", f"scheduler:{cluster.name}", cluster.username, cores)
            async for state in super().do_start_cluster(cluster):
                yield state

        async def do_stop_cluster(self, cluster: Any) -> None:
            await super().do_stop_cluster(cluster)
            self._record(False, "scheduler", f"scheduler:{cluster.name}", cluster.username, 0)

        async def do_start_worker(self, worker: Any) -> Any:
            cores = worker.cluster.config.get("worker_cores", 1)
            key = f"worker:{worker.cluster.name}/{worker.name}"
            self._record(True, "worker", key, worker.cluster.username, cores)
            async for state in super().do_start_worker(worker):
                yield state

        async def do_stop_worker(self, worker: Any) -> None:
            await super().do_stop_worker(worker)
            key = f"worker:{worker.cluster.name}/{worker.name}"
            self._record(False, "worker", key, worker.cluster.username, 0)

        def _fits(self, username: str, cores: float, memory: int) -> bool:
            used_cores, used_memory = _usage(self, username)
            return (not self.user_max_cores or used_cores + cores <= self.user_max_cores) and (
                not self.user_max_memory or used_memory + memory <= self.user_max_memory
            )

        async def start_cluster(self, user: Any, cluster_options: Any) -> Any:
            _, config = await self.process_cluster_options(user, cluster_options)
            conf = config.to_dict()
            if not self._fits(user.name, conf["scheduler_cores"], conf["scheduler_memory"]):
                from dask_gateway_server.backends.base import PublicException

                raise PublicException(
                    f"User {user.name} is at their limit of {self.user_max_cores:g} cores / "
                    f"{self.user_max_memory / 2**30:.1f} GiB across all their clusters: "
                    "stop or scale down another cluster first."
                )
            return await super().start_cluster(user, cluster_options)

        async def _check_cluster_scale(self, cluster: Any) -> None:
            wanted = cluster.count - len(cluster.active_workers())
            config = cluster.config
            allowed = 0
            for _ in range(max(wanted, 0)):
                extra_cores = (allowed + 1) * config.get("worker_cores", 1)
                extra_memory = (allowed + 1) * config.get("worker_memory", 0)
                if not self._fits(cluster.username, extra_cores, extra_memory):
                    self.log.warning(
                        "Cluster %s of %s: %d of %d more workers started; the user's "
                        "limit across clusters is %g cores / %.1f GiB",
                        cluster.name,
                        cluster.username,
                        allowed,
                        wanted,
                        self.user_max_cores,
                        self.user_max_memory / 2**30,
                    )
                    break
                allowed += 1
            if allowed < wanted:
                cluster.count = len(cluster.active_workers()) + allowed
            await super()._check_cluster_scale(cluster)

    UserLimited.__name__ = f"UserLimited{base.__name__}"
    return UserLimited


def _unsafe_backend() -> type:
    from dask_gateway_server.backends.local import UnsafeLocalBackend

    return _with_user_limits(UnsafeLocalBackend)


def _user_backend() -> type:
    from dask_gateway_server.backends.local import LocalBackend, getpwnam

    class UserLocalBackend(LocalBackend):  # type: ignore[misc]
        """Dask-Gateway's ``LocalBackend`` (clusters run as their user's unix account).

        Its ``setup_working_directory`` (2026.3.0) adds the TLS files' paths letter by
        letter to the files it hands over to the user (``list.extend`` of a string): it
        chowns ``/`` to the user, then fails on ``t``, so no cluster starts. This one hands
        over the cluster's folders and its two files, nothing else, the workdir last (once
        the user owns it they could swap what is inside for symlinks). And root never
        opens a file in the user's folder: each process opens its own log once it is the
        user (upstream's ``start_process`` opens it as root, after any symlink the user
        put in place of ``logs``).
        """

        def setup_working_directory(self, cluster: Any) -> str:
            import tempfile

            if self.clusters_directory:
                workdir = os.path.join(self.clusters_directory, cluster.name)
            else:
                workdir = tempfile.mkdtemp(prefix="dask", suffix=cluster.name)
            certs = self.get_certs_directory(workdir)
            logs = self.get_logs_directory(workdir)
            for path in (workdir, certs, logs):
                os.makedirs(path, 0o700, exist_ok=True)
            cert_path, key_path = self._get_tls_paths(workdir)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            for path, data in ((cert_path, cluster.tls_cert), (key_path, cluster.tls_key)):
                with os.fdopen(os.open(path, flags, 0o600), "wb") as f:
                    f.write(data)
            self._hand_over(workdir, [cert_path, key_path, certs, logs], cluster.username)
            return str(workdir)

        def _hand_over(self, workdir: str, inside: list[str], username: str) -> None:
            """Give ``workdir`` and the paths ``inside`` it to ``username``: the paths
            inside first (relative to a descriptor of the workdir, never following a
            symlink), the workdir last, so the user owns nothing here until root is done."""
            pw = getpwnam(username)
            dir_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
            fd = os.open(workdir, dir_flags)
            try:
                for path in inside:
                    rel = os.path.relpath(path, workdir)
                    os.chown(rel, pw.pw_uid, pw.pw_gid, dir_fd=fd, follow_symlinks=False)
                os.fchown(fd, pw.pw_uid, pw.pw_gid)
            finally:
                os.close(fd)

        async def start_process(self, cluster: Any, cmd: Any, env: Any, name: str) -> int:
            """Upstream's ``start_process``, but the log file is opened by the new process
            once it is the user (never by root in the folder the user owns)."""
            import asyncio

            workdir = cluster.state["workdir"]
            log_path = os.path.join(self.get_logs_directory(workdir), name + ".log")
            become_user = self.make_preexec_fn(cluster)

            def preexec() -> None:  # pragma: no cover - runs in the child
                become_user()
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                fd = os.open(log_path, flags, 0o600)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                if fd > 2:
                    os.close(fd)

            proc = await asyncio.create_subprocess_exec(
                *cmd,
                preexec_fn=preexec,
                start_new_session=True,
                env=env,
            )
            pid: int = proc.pid
            return pid

    return _with_user_limits(UserLocalBackend)


def _options(max_cores: float, max_memory_gb: float, platform_env: dict[str, str]) -> Any:
    from dask_gateway_server.options import Float, Integer, Mapping, Options

    cores = max(1, int(max_cores))

    # The user's variables add to the platform's, and never replace these.
    fixed = {k: platform_env[k] for k in (PLATFORM_MARK, CATALOG_URI) if k in platform_env}

    def handler(options: Any, user: Any) -> dict[str, Any]:
        user_env = {str(k): str(v) for k, v in dict(options.environment).items()}
        return {
            "worker_cores": options.worker_cores,
            "worker_memory": int(options.worker_memory * 2**30),
            "environment": {**platform_env, **user_env, **fixed},
        }

    return Options(
        Integer("worker_cores", default=1, min=1, max=cores, label="Cores per worker"),
        Float(
            "worker_memory", default=1, min=0.25, max=max_memory_gb, label="Memory per worker (GiB)"
        ),
        Mapping("environment", default={}, label="Environment variables"),
        handler=handler,
    )


def clusters_directory(settings: Settings) -> Path:
    """The clusters' folders (``HubPaths.clusters``), made when missing."""
    path = HubPaths.of(settings).clusters
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o711)
    return path


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
    backend = _user_backend() if isolation(settings) == "users" else _unsafe_backend()
    clusters_directory(settings)
    c.DaskGateway.backend_class = backend
    section = getattr(c, backend.__name__)
    section.user_max_cores = hub.user_max_cores
    section.user_max_memory = int(hub.user_max_memory_gb * 2**30)
    section.usage_file = str(paths.usage)
    section.clusters_directory = str(clusters_directory(settings))
    # Clusters do not outlive the gateway (it stops them on shutdown): an in-memory database.
    c.DBBackendBase.db_url = "sqlite://"
    dask = str(Path(sys.prefix) / "bin" / "dask")
    # Dask-Gateway's defaults ('dask-scheduler', 'dask-worker') no longer exist in distributed.
    c.ClusterConfig.scheduler_cmd = [dask, "scheduler", "--preload", "insitu.hub.dashboard_socket"]
    c.ClusterConfig.worker_cmd = [dask, "worker"]
    c.ClusterConfig.cluster_max_cores = hub.cluster_max_cores
    c.ClusterConfig.cluster_max_memory = int(hub.cluster_max_memory_gb * 2**30)
    c.ClusterConfig.scheduler_memory = "1 G"
    c.ClusterConfig.idle_timeout = hub.cluster_idle_timeout
    platform_env = {
        CATALOG_URI: notebook_catalog_uri(settings),
        PLATFORM_MARK: os.environ.get(PLATFORM_MARK, ""),
    }
    c.ClusterConfig.environment = platform_env
    # The cluster options' environment replaces ClusterConfig.environment: the handler
    # starts from the platform's.
    c.Backend.cluster_options = _options(
        hub.cluster_max_cores, hub.cluster_max_memory_gb, dict(platform_env)
    )

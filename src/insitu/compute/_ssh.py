"""Dask over several hosts reached by SSH: the first host runs the scheduler.

The scheduler and workers listen on the hosts' network, so they speak TLS only, with
credentials made for the cluster (:func:`~insitu.compute.backend.cluster_security`).
Before anything starts, the certificate and key are written over SSH into a new 0700
directory on each host (``~/.insitu/tls/cluster.XXXXXXXX``, files 0600), and removed when
the cluster closes; the processes read them from there (their command lines name the
files only). The dashboard listens on the first host's loopback.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import sys
from typing import Any, ClassVar

from distributed.deploy.spec import SpecCluster

from insitu.compute.backend import (
    WORKER_NANNY,
    ClusterSpec,
    DaskClusterBackend,
    check_loopback_dashboard,
    cluster_security,
)
from insitu.errors import ConfigError
from insitu.settings import Settings

__all__ = ["SSHBackend", "SSHTLSCluster"]

log = logging.getLogger(__name__)

# Run by the login shell of the remote user: a new directory only that user can enter.
_MAKE_DIRECTORY = (
    'umask 077 && mkdir -p "$HOME/.insitu/tls" && mktemp -d "$HOME/.insitu/tls/cluster.XXXXXXXX"'
)


class SSHTLSCluster(SpecCluster):
    """distributed's SSH scheduler and workers (as ``SSHCluster`` makes them), over TLS.

    ``security`` is the cluster's in-memory credentials (the owner's client uses them);
    each host gets them as files before its processes start.
    """

    def __init__(
        self,
        hosts: list[str],
        *,
        security: Any,
        connect_options: dict[str, Any],
        scheduler_options: dict[str, Any],
        worker_options: dict[str, Any],
        worker_class: str,
        remote_python: str,
    ) -> None:
        from distributed.deploy.ssh import Scheduler, Worker

        self._connect_options = connect_options
        # host -> its credentials directory, once written
        self.credential_directories: dict[str, str] = {}
        scheduler = {
            "cls": Scheduler,
            "options": {
                "address": hosts[0],
                "connect_options": connect_options,
                "kwargs": {**scheduler_options, "protocol": "tls"},
                "remote_python": remote_python,
            },
        }
        workers = {
            i: {
                "cls": Worker,
                "options": {
                    "address": host,
                    "connect_options": connect_options,
                    "kwargs": {**worker_options, "protocol": "tls"},
                    "worker_class": worker_class,
                    "remote_python": remote_python,
                },
            }
            for i, host in enumerate(hosts[1:])
        }
        super().__init__(workers, scheduler, security=security, name="SSHCluster")

    @property
    def dashboard_link(self) -> str:
        """The dashboard's URL on the scheduler host's loopback (reach it by a tunnel)."""
        link = str(super().dashboard_link)
        host = self.scheduler_spec["options"]["address"]
        return link.replace(f"://{host}:", "://127.0.0.1:", 1) if link else link

    async def _start(self) -> None:
        if not self.credential_directories:
            await self._write_credentials()
        await super()._start()

    async def _close(self) -> None:
        try:
            await super()._close()
        finally:
            await self._remove_credentials()

    def _host_security(self, directory: str) -> dict[str, Any]:
        """What the processes of one host take as ``security=``: paths under ``directory``."""
        cert, key = f"{directory}/cert.pem", f"{directory}/key.pem"
        paths: dict[str, Any] = {"require_encryption": True, "tls_ca_file": cert}
        for role in ("scheduler", "worker", "client"):
            paths[f"tls_{role}_cert"] = cert
            paths[f"tls_{role}_key"] = key
        return paths

    async def _write_credentials(self) -> None:
        tls = self.security.get_tls_config_for_role("scheduler")
        hosts = [self.scheduler_spec["options"]["address"]]
        hosts += [w["options"]["address"] for w in self.worker_spec.values()]
        unique = list(dict.fromkeys(hosts))
        results = await asyncio.gather(
            *(self._write_to(host, tls["cert"], tls["key"]) for host in unique),
            return_exceptions=True,
        )
        failed = [
            (h, r) for h, r in zip(unique, results, strict=True) if isinstance(r, BaseException)
        ]
        if failed:
            await self._remove_credentials()
            host, exc = failed[0]
            raise RuntimeError(
                f"Cannot write the cluster's TLS credentials to ssh host {host!r}: "
                f"{exc.__class__.__name__}: {exc}. Check that you can log in there with "
                "compute.ssh_connect_options and write to your home directory."
            ) from exc
        options = self.scheduler_spec["options"]
        options["kwargs"]["security"] = self._host_security(
            self.credential_directories[options["address"]]
        )
        for worker in self.worker_spec.values():
            options = worker["options"]
            options["kwargs"] = {
                **options["kwargs"],
                "security": self._host_security(self.credential_directories[options["address"]]),
            }

    async def _write_to(self, host: str, cert: str, key: str) -> None:
        import asyncssh

        async with asyncssh.connect(host, **self._connect_options) as conn:
            made = await conn.run(_MAKE_DIRECTORY, check=True)
            directory = str(made.stdout).strip()
            if not directory.startswith("/"):
                raise RuntimeError(f"'mktemp -d' printed {directory!r}, not a directory")
            self.credential_directories[host] = directory
            for name, text in (("cert.pem", cert), ("key.pem", key)):
                target = shlex.quote(f"{directory}/{name}")
                await conn.run(f"umask 077 && cat > {target}", input=text, check=True)

    async def _remove_credentials(self) -> None:
        import asyncssh

        async def remove(host: str, directory: str) -> None:
            async with asyncssh.connect(host, **self._connect_options) as conn:
                await conn.run(f"rm -rf -- {shlex.quote(directory)}", check=True)

        written = dict(self.credential_directories)
        self.credential_directories.clear()
        results = await asyncio.gather(
            *(remove(h, d) for h, d in written.items()), return_exceptions=True
        )
        for (host, directory), result in zip(written.items(), results, strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "could not remove the cluster's credentials %s on %s: %s; remove them by hand",
                    directory,
                    host,
                    result,
                )


class SSHBackend(DaskClusterBackend):
    """TLS clusters over ``compute.ssh_hosts`` (:class:`SSHTLSCluster`)."""

    name: ClassVar[str] = "ssh"
    own_credentials: ClassVar[bool] = True
    supports_scale: ClassVar[bool] = False  # one worker per host of compute.ssh_hosts
    option_names: ClassVar[frozenset[str]] = frozenset({"hosts", "connect_options", "python"})

    @classmethod
    def options_from_settings(cls, settings: Settings) -> dict[str, Any]:
        """The hosts, how to log in to them and their Python (``compute.ssh_*``)."""
        c = settings.compute
        return {
            "hosts": c.ssh_hosts,
            "connect_options": c.ssh_connect_options,
            "python": c.ssh_python,
        }

    def _make(self, spec: ClusterSpec) -> Any:
        hosts = list(spec.options.get("hosts", []))
        if len(hosts) < 2:
            raise ConfigError(
                "The ssh backend needs compute.ssh_hosts with the scheduler host first and at "
                f"least one worker host; got {hosts!r}."
            )
        check_loopback_dashboard(spec.dashboard_address, self.name)
        cluster = SSHTLSCluster(
            hosts,
            security=cluster_security(),
            connect_options=dict(spec.options.get("connect_options") or {}),
            worker_options={
                "nthreads": spec.threads_per_worker,
                "memory_limit": spec.memory_limit,
                # The workers' own HTTP servers (metrics, health) stay on loopback too.
                "dashboard_address": "127.0.0.1:0",
            },
            # Imported on each worker host (insitu must be installed there anyway, since
            # the tasks are insitu's): the nanny that starts workers with WORKER_ENV.
            worker_class=WORKER_NANNY,
            # Bind the scheduler to the address the other hosts reach it by; left alone,
            # it advertises the address of its default route or, without one, its
            # hostname's (often 127.0.0.1), which workers elsewhere cannot reach.
            scheduler_options={"host": hosts[0], "dashboard_address": spec.dashboard_address},
            remote_python=spec.options.get("python") or sys.executable,
        )
        port = cluster.scheduler_info.get("services", {}).get("dashboard")
        if port:
            log.info(
                "dashboard on %s's loopback; reach it with: ssh -L %s:127.0.0.1:%s %s",
                hosts[0],
                port,
                port,
                hosts[0],
            )
        return cluster

    def scale(self, handle: Any, workers: int) -> None:
        """SSH clusters have one worker per listed host; scaling is not possible."""
        raise ConfigError(
            "An ssh cluster has one worker per host in compute.ssh_hosts; change that list "
            "and restart the cluster to change its size."
        )

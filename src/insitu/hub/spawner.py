"""The spawners users' servers start with: JupyterHub's local ones, told sooner that a server
is up, and DockerSpawner with each server in a container on the host's network."""

from __future__ import annotations

import asyncio
import os
import pwd
from pathlib import Path
from typing import Any

from docker.errors import ImageNotFound  # type: ignore[import-untyped]
from dockerspawner import DockerSpawner  # type: ignore[import-untyped]
from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner
from jupyterhub.utils import can_connect, random_port
from traitlets import default

from insitu.errors import ConfigError
from insitu.settings import Settings

__all__ = [
    "HostNetworkDockerSpawner",
    "PromptLocalProcessSpawner",
    "PromptSimpleLocalProcessSpawner",
    "container_mounts",
]

USER_LABEL = "org.insitu.user"  # on each container: whose server it runs
READY_CHECK_INTERVAL = 0.05  # seconds between checks that a starting server listens


async def wait_listening(spawner: Any, ip: str, port: int) -> None:
    """Return once the server ``spawner`` started listens on ``ip:port``.

    After ``Spawner.start()`` JupyterHub waits for the server with a jittered exponential
    backoff (checks up to 0.2 s apart at first, doubling up to 5 s): a server that takes
    2.6 s to start was seen 1.3 s later on median, up to 4.6 s (BENCHMARKS.md, Hub). Waiting
    here first, a refused connection on loopback every 50 ms, the hub's first check succeeds.
    A server that exits while starting fails the spawn at once, with its exit status, instead
    of after ``http_timeout``; one that never listens is left to the hub's own timeout.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + spawner.http_timeout
    while loop.time() < deadline:
        if spawner.proc.poll() is not None:
            raise RuntimeError(
                f"The server of {spawner.user.name} exited with status "
                f"{spawner.proc.returncode} while starting; the hub's log has its output."
            )
        if can_connect(ip, port):
            return
        await asyncio.sleep(READY_CHECK_INTERVAL)


class PromptLocalProcessSpawner(LocalProcessSpawner):  # type: ignore[misc]
    """LocalProcessSpawner (each user's server as their unix account), ready when listening."""

    async def start(self) -> tuple[str, int]:
        ip, port = await super().start()
        await wait_listening(self, ip, port)
        return ip, port


class PromptSimpleLocalProcessSpawner(SimpleLocalProcessSpawner):  # type: ignore[misc]
    """SimpleLocalProcessSpawner (every server as the hub's account), ready when listening."""

    async def start(self) -> tuple[str, int]:
        ip, port = await super().start()
        await wait_listening(self, ip, port)
        return ip, port


def container_mounts(settings: Settings, home: Path) -> dict[str, dict[str, str]]:
    """What a user's container mounts, each at the same path as on the host (DockerSpawner's
    ``{host path: {"bind": path, "mode": "ro" | "rw"}}``).

    Paths stay the same so that what the platform hands a notebook (the catalog's SQLite URL,
    collection roots recorded in the catalog, ``~/gallery`` and ``~/projects/NAME`` links)
    means the same inside. Read-only: the data folder (the catalog, the gallery) and every
    collection's archive root; read-write: the home and the projects folder. The container
    runs as the user's unix account, so unix permissions decide what it reads, as for a
    local server.
    """
    from insitu.catalog import Catalog

    mounts: dict[str, dict[str, str]] = {str(home): {"bind": str(home), "mode": "rw"}}
    readonly = [settings.data_dir]
    uri = settings.catalog_uri
    if uri.startswith("sqlite:///"):
        readonly.append(Path(uri.removeprefix("sqlite:///")).parent)
    with Catalog(settings) as catalog:
        readonly += [Path(c.root) for c in catalog.collections()]
    kept: list[Path] = []
    for path in sorted({p.resolve() for p in readonly}):
        # A bind of a missing folder fails the container's start; one inside a folder
        # already mounted is there already.
        if path.is_dir() and not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
            mounts[str(path)] = {"bind": str(path), "mode": "ro"}
    projects = Path(settings.hub.projects_dir or settings.data_dir / "projects")
    if projects.is_dir():
        mounts[str(projects)] = {"bind": str(projects), "mode": "rw"}
    return mounts


class HostNetworkDockerSpawner(DockerSpawner):  # type: ignore[misc]
    """DockerSpawner (podman's Docker-compatible API too), each user's server in a container
    on the host's network, listening on 127.0.0.1, as the user's unix account.

    The hub's API, the data service and the Dask-Gateway listen on 127.0.0.1 only, so a
    container on a bridge network would not reach them: on the host's network it does, with
    no address to open. Each server gets a free port of its own (JupyterHub's
    ``random_port``) instead of DockerSpawner's fixed 8888.

    Before it starts, the platform's pre-spawn hook calls :meth:`prepare_container` with the
    user's account and home: the container runs as that account (uid, gid and its groups:
    never root), in its home, with :func:`container_mounts`. ``mem_limit``, ``cpu_limit``
    and the image come from ``hub.spawner_config``; the image is built by
    ``scripts/podman.sh`` (insitu and JupyterLab in a venv first on its ``PATH``).
    """

    @default("network_name")
    def _default_network_name(self) -> str:
        return "host"

    @default("use_internal_ip")
    def _default_use_internal_ip(self) -> bool:
        return True  # no port bindings: the host's network has none

    @default("ip")
    def _default_ip(self) -> str:
        return "127.0.0.1"

    @default("remove")
    def _default_remove(self) -> bool:
        return True

    @default("pull_policy")
    def _default_pull_policy(self) -> str:
        # Images are built on the machine (scripts/podman.sh); there may be no registry.
        return "never"

    @default("prefix")
    def _default_prefix(self) -> str:
        return "insitu"

    def prepare_container(self, settings: Settings, account: pwd.struct_passwd) -> None:
        """Run the next container as ``account``, in its home, with the platform mounted."""
        home = Path(account.pw_dir)
        groups = [g for g in os.getgrouplist(account.pw_name, account.pw_gid) if g != 0]
        self.insitu_account = account
        self.insitu_mounts = container_mounts(settings, home)
        # Ours last: a configured 'user' cannot make the server run as root.
        create = {
            **self.extra_create_kwargs,
            "user": f"{account.pw_uid}:{account.pw_gid}",
            "working_dir": str(home),
            # 'podman ps --filter label=org.insitu.user=NAME' finds a user's container.
            "labels": {**self.extra_create_kwargs.get("labels", {}), USER_LABEL: self.user.name},
        }
        self.set_trait("extra_create_kwargs", create)
        host = {**self.extra_host_config, "group_add": [str(g) for g in groups]}
        self.set_trait("extra_host_config", host)

    @property
    def volume_binds(self) -> dict[str, dict[str, str]]:
        binds: dict[str, dict[str, str]] = super().volume_binds
        return {**getattr(self, "insitu_mounts", {}), **binds}

    def get_env(self) -> dict[str, str]:
        env: dict[str, str] = super().get_env()
        account = getattr(self, "insitu_account", None)
        if account is not None:
            env |= {"HOME": account.pw_dir, "USER": account.pw_name, "LOGNAME": account.pw_name}
        return env

    async def start(self) -> tuple[str, int]:
        if getattr(self, "insitu_account", None) is None:
            raise ConfigError(
                f"The container of {self.user.name} has no account to run as: "
                "HostNetworkDockerSpawner runs each container as the user's unix account, "
                "set by insitu's pre-spawn hook with hub.isolation = 'users' (as root)."
            )
        self.port = random_port()
        try:
            return await super().start()  # type: ignore[no-any-return]
        except ImageNotFound as exc:
            raise ConfigError(
                f"The container engine at {self.client.base_url} has no image {self.image!r}. "
                "Build it with 'scripts/podman.sh start' (it prints the image's name last), "
                "or set hub.spawner_config.image to an image it has."
            ) from exc

    async def get_ip_and_port(self) -> tuple[str, int]:
        return "127.0.0.1", int(self.port)

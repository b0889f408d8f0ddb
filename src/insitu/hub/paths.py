"""Where the platform keeps its state, which ports its parts use, and its secrets."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from insitu.errors import ConfigError
from insitu.settings import Settings

__all__ = ["HubPaths", "Ports", "isolation", "proxy_command"]


@dataclass(frozen=True)
class Ports:
    """The loopback ports of the platform's parts (see ``hub.internal_ports``)."""

    hub_api: int
    proxy_api: int
    gateway_http: int
    gateway_tcp: int
    gateway_api: int
    service: int

    @classmethod
    def of(cls, settings: Settings) -> Ports:
        first = settings.hub.internal_ports
        return cls(first, first + 1, first + 2, first + 3, first + 4, settings.access.port)


@dataclass(frozen=True)
class HubPaths:
    """Files of the platform under ``DATA_DIR/hub``."""

    root: Path

    @classmethod
    def of(cls, settings: Settings) -> HubPaths:
        return cls(settings.data_dir / "hub")

    @property
    def accounts(self) -> Path:
        return self.root / "users.json"

    @property
    def state(self) -> Path:
        return self.root / "platform.json"

    @property
    def usage(self) -> Path:
        """The usage log (core-hours accounting)."""
        return self.root / "usage.db"

    @property
    def log(self) -> Path:
        return self.root / "jupyterhub.log"

    @property
    def homes(self) -> Path:
        """Homes of users in 'single' isolation."""
        return self.root / "home"

    @property
    def gateway(self) -> Path:
        return self.root / "gateway"

    @property
    def clusters(self) -> Path:
        """The gateway clusters' folders, one per cluster, each its owner's (0700).

        Beside ``DATA_DIR/hub`` (0700), not in it: each owner's server must reach its
        clusters' dashboard sockets. The folder itself is 0711 (made by the gateway):
        reached by name, never listed.
        """
        return self.root.parent / "dask-clusters"

    def ensure(self) -> None:
        """Make the folder: readable by the platform's account only."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def secret(self, name: str, nbytes: int = 32) -> str:
        """A secret kept in a 0600 file of its own, made on first use."""
        path = self.root / f"{name}.secret"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        self.ensure()
        value = secrets.token_hex(nbytes)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value)
        return value


def isolation(settings: Settings) -> str:
    """'users' or 'single', with 'auto' resolved (users when running as root)."""
    mode = settings.hub.isolation
    if mode == "auto":
        return "users" if os.geteuid() == 0 else "single"
    if mode == "single" and os.geteuid() == 0 and not settings.hub.single_as_root:
        raise ConfigError(
            "hub.isolation = 'single' as root would run every user's notebooks and Dask "
            "workers as root. Use 'users' isolation (each user their own unix account: the "
            "default as root), or start the platform as an ordinary account."
        )
    if mode == "users" and os.geteuid() != 0:
        raise ConfigError(
            "hub.isolation = 'users' runs each user's processes as their own unix account, "
            "which needs root. Start the platform as root, or set hub.isolation = 'single' "
            "(no isolation between users)."
        )
    return mode


def proxy_command(settings: Settings) -> str:
    """configurable-http-proxy: the setting, else the set-up's npm install, else the PATH's."""
    if settings.hub.proxy_command:
        return settings.hub.proxy_command
    beside = Path(sys.prefix) / "share" / "insitu-proxy" / "node_modules" / ".bin"
    found = beside / "configurable-http-proxy"
    if found.exists():
        return str(found)
    on_path = shutil.which("configurable-http-proxy")
    if on_path:
        return on_path
    raise ConfigError(
        "configurable-http-proxy is not installed. Run 'scripts/proxy.sh' (it installs it "
        f"with npm into {beside.parent.parent}) or set hub.proxy_command."
    )

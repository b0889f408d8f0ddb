"""Start, watch and stop the platform: JupyterHub, which runs its proxy and services.

Every process the platform starts carries a mark in its environment (``INSITU_PLATFORM_ID``,
a fresh id per start): the hub, its proxy, the data service, the gateway and its clusters,
the culler and users' servers. Stopping asks the hub to stop (it stops users' servers, its
services and proxy), then ends whatever still carries the mark, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from insitu.errors import BackendUnavailable, ConfigError
from insitu.hub.config import PLATFORM_MARK, notebook_catalog_uri
from insitu.hub.paths import HubPaths, Ports, isolation, proxy_command
from insitu.settings import Settings

__all__ = [
    "PlatformState",
    "marked_processes",
    "process_alive",
    "running",
    "start",
    "stop",
    "wait_ready",
]


@dataclass(frozen=True)
class PlatformState:
    """What ``platform.json`` records of a started platform."""

    pid: int
    mark: str
    url: str
    log: str
    isolation: str


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a child of ours that exited and is a zombie does not)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == 0


def _carries_mark(pid: int, mark: str) -> bool:
    """True when process ``pid`` is one the platform started (a pid left in the state
    file after a reboot may belong to anything by now)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{PLATFORM_MARK}={mark}".encode() in environ.split(b"\0")


def running(settings: Settings) -> PlatformState | None:
    """The record of a platform whose hub process still runs, else None."""
    try:
        state = PlatformState(**json.loads(HubPaths.of(settings).state.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return state if process_alive(state.pid) and _carries_mark(state.pid, state.mark) else None


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _check_ports(settings: Settings) -> None:
    ports = Ports.of(settings)
    named = {
        f"hub.port ({settings.hub.port})": settings.hub.port,
        f"the hub's API (hub.internal_ports = {ports.hub_api})": ports.hub_api,
        f"the proxy's API ({ports.proxy_api}, hub.internal_ports + 1)": ports.proxy_api,
        f"the data service (access.port = {ports.service})": ports.service,
    }
    if settings.hub.gateway:
        named |= {
            f"the gateway ({ports.gateway_http}-{ports.gateway_api}, hub.internal_ports + 2..4)": p
            for p in (ports.gateway_http, ports.gateway_tcp, ports.gateway_api)
        }
    taken = [what for what, port in named.items() if _port_taken(port)]
    if taken:
        raise BackendUnavailable(
            "Ports needed by the platform are taken: "
            + "; ".join(taken)
            + ". Stop what listens there (an 'insitu serve --detach' is stopped by "
            "'insitu serve --stop'), or move the platform with INSITU_HUB__PORT, "
            "INSITU_HUB__INTERNAL_PORTS or INSITU_ACCESS__PORT."
        )


def start(settings: Settings, config_file: Path | None = None) -> PlatformState:
    """Start JupyterHub in its own session, in the background; returns at once."""
    if running(settings) is not None:
        raise BackendUnavailable(
            "The platform already runs (see 'insitu up --status'); 'insitu down' stops it."
        )
    mode = isolation(settings)
    proxy_command(settings)  # fails early, with what to do, when the proxy is missing
    notebook_catalog_uri(settings)  # and when notebooks would get the platform's credentials
    _check_ports(settings)
    paths = HubPaths.of(settings)
    paths.ensure()
    mark = uuid.uuid4().hex
    env = dict(os.environ)
    env[PLATFORM_MARK] = mark
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    if config_file is not None:
        env["INSITU_CONFIG"] = str(Path(config_file).resolve())
    hub_config = str(resources.files("insitu.hub") / "jupyterhub_config.py")
    jupyterhub = str(Path(sys.prefix) / "bin" / "jupyterhub")
    with open(paths.log, "ab") as log:
        proc = subprocess.Popen(
            [jupyterhub, "-f", hub_config],
            cwd=paths.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state = PlatformState(proc.pid, mark, settings.hub_url, str(paths.log), mode)
    paths.state.write_text(json.dumps(asdict(state)))
    return state


def _answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _local_url(settings: Settings) -> str:
    scheme = "https" if settings.hub.ssl_cert else "http"
    return f"{scheme}://127.0.0.1:{settings.hub.port}"


def wait_ready(
    settings: Settings,
    state: PlatformState,
    timeout: float = 180,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Wait until the hub and its services answer through the proxy; raise if it fails."""
    base = _local_url(settings)
    checks = {
        "hub": f"{base}/hub/health",
        "data service": f"{base}/services/insitu/api/v1/health",
    }
    if settings.hub.gateway:
        checks["gateway"] = f"{base}/services/dask-gateway/api/health"
    pending = dict(checks)
    deadline = time.monotonic() + timeout
    while pending:
        for name, url in list(pending.items()):
            if _answers(url):
                del pending[name]
                if progress:
                    progress(name)
        if not pending:
            return
        if not process_alive(state.pid):
            raise BackendUnavailable(
                f"JupyterHub exited while starting. The end of its log ({state.log}):\n"
                + _tail(Path(state.log))
            )
        if time.monotonic() > deadline:
            raise BackendUnavailable(
                f"The platform did not answer within {timeout:.0f} s ({', '.join(pending)} "
                f"still silent). See {state.log}:\n" + _tail(Path(state.log))
            )
        time.sleep(0.25)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def marked_processes(mark: str) -> list[int]:
    """Pids of processes whose environment carries ``INSITU_PLATFORM_ID=mark``."""
    if not mark:
        return []
    needle = f"{PLATFORM_MARK}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def stop(settings: Settings, timeout: float = 60) -> PlatformState | None:
    """Stop the platform and everything it started; the state it had, or None."""
    paths = HubPaths.of(settings)
    try:
        state = PlatformState(**json.loads(paths.state.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if process_alive(state.pid) and _carries_mark(state.pid, state.mark):
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process_alive(state.pid):
            time.sleep(0.1)
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        left = marked_processes(state.mark)
        if not left:
            break
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(process_alive(p) for p in left):
            time.sleep(0.1)
    paths.state.unlink(missing_ok=True)
    from insitu.access import UsageLog

    UsageLog(paths.usage).close_open()  # whatever was still running ends now
    if marked_processes(state.mark):
        raise ConfigError(
            f"Processes of the platform survived SIGKILL: {marked_processes(state.mark)}."
        )
    return state

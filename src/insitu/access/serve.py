"""Several server processes for ``insitu serve --workers N``.

uvicorn's supervisor starts, watches and restarts the processes; each builds the app from
the settings of its environment and TOML file (:func:`app_from_env`). Where the system
has ``SO_REUSEPORT`` each process listens on a socket of its own bound to the same
address, and the kernel spreads new connections over them. With one shared listening
socket, whichever process wakes first accepts every connection waiting: a burst of
clients (a notebook's many requests, a load test) lands mostly on one process, whose
core is then the limit while the other's idles.
"""

from __future__ import annotations

import socket
from typing import Any, cast

from fastapi import FastAPI

from insitu.access.app import build_app
from insitu.settings import Settings

__all__ = ["app_from_env", "run_processes"]

APP = "insitu.access.serve:app_from_env"


def app_from_env() -> FastAPI:
    """The app over the settings of this process's environment and TOML file."""
    return build_app(Settings.load(), server_process=True)


def _listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` that shares the port with its siblings."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class _OwnSocket:
    """Stands in uvicorn's list of sockets for one that each server process binds for
    itself: the list is pickled into every process, and unpickling this makes the socket
    there."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return _listening_socket, (self.host, self.port)


def own_sockets() -> bool:
    """Whether each process can have a socket of its own (``SO_REUSEPORT``, Linux/BSD)."""
    return hasattr(socket, "SO_REUSEPORT")


def run_processes(host: str, port: int, workers: int) -> None:
    """Serve with ``workers`` processes until stopped (the port must be free)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        APP, factory=True, host=host, port=port, workers=workers, log_level="warning"
    )
    if not own_sockets():
        uvicorn.run(APP, factory=True, host=host, port=port, workers=workers, log_level="warning")
        return
    sockets = cast(list[socket.socket], [_OwnSocket(host, port)])
    Multiprocess(config, sockets=sockets).run()

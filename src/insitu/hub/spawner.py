"""The local spawners users' servers start with: JupyterHub's, told sooner that one is up."""

from __future__ import annotations

import asyncio
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner
from jupyterhub.utils import can_connect

__all__ = ["PromptLocalProcessSpawner", "PromptSimpleLocalProcessSpawner"]

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

"""Drive a running platform as its users do: hub REST API, servers, kernels over websocket."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import websockets


@dataclass
class Execution:
    """What running one cell gave."""

    stdout: str
    error: str | None
    outputs: list[dict[str, Any]]


class Hub:
    """The hub's REST API as the platform's admin service (``insitu-admin``)."""

    def __init__(self, base: str, admin_token: str) -> None:
        self.base = base.rstrip("/")
        self.http = httpx.Client(
            base_url=f"{self.base}/hub/api",
            headers={"Authorization": f"token {admin_token}"},
            timeout=60,
        )

    def user(self, name: str) -> dict[str, Any]:
        r = self.http.get(f"/users/{name}")
        r.raise_for_status()
        model: dict[str, Any] = r.json()
        return model

    def token_for(self, name: str) -> str:
        """A fresh API token of user ``name`` (with that user's permissions)."""
        r = self.http.post(f"/users/{name}/tokens", json={"expires_in": 3600, "note": "test"})
        r.raise_for_status()
        token: str = r.json()["token"]
        return token

    def start(self, name: str, timeout: float = 120) -> float:
        """Start the server of ``name``; seconds until the hub says it is ready."""
        t0 = time.monotonic()
        r = self.http.post(f"/users/{name}/server")
        if r.status_code not in (201, 202, 400):  # 400: already running
            r.raise_for_status()
        while time.monotonic() - t0 < timeout:
            server = self.user(name).get("servers", {}).get("")
            if server and server.get("ready"):
                return time.monotonic() - t0
            if server is None and time.monotonic() - t0 > 5:
                raise AssertionError(f"the server of {name} stopped while starting")
            time.sleep(0.1)
        raise AssertionError(f"the server of {name} was not ready within {timeout} s")

    def stop(self, name: str, timeout: float = 60) -> None:
        self.http.delete(f"/users/{name}/server")
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if not self.user(name).get("servers"):
                return
            time.sleep(0.2)
        raise AssertionError(f"the server of {name} did not stop within {timeout} s")


async def _execute(base: str, user: str, token: str, code: str, timeout: float) -> Execution:
    headers = {"Authorization": f"token {token}"}
    prefix = f"{base}/user/{user}/api/kernels"
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        r = await http.post(prefix, json={"name": "python3"})
        r.raise_for_status()
        kernel = r.json()["id"]
        try:
            ws_url = prefix.replace("http", "ws", 1) + f"/{kernel}/channels"
            async with websockets.connect(ws_url, additional_headers=headers, max_size=2**26) as ws:
                msg_id = uuid.uuid4().hex
                await ws.send(
                    json.dumps(
                        {
                            "header": {
                                "msg_id": msg_id,
                                "username": user,
                                "session": uuid.uuid4().hex,
                                "msg_type": "execute_request",
                                "version": "5.3",
                            },
                            "parent_header": {},
                            "metadata": {},
                            "content": {"code": code, "silent": False, "store_history": False},
                            "channel": "shell",
                            "buffers": [],
                        }
                    )
                )
                stdout, error, outputs = [], None, []
                async with asyncio.timeout(timeout):
                    while True:
                        msg = json.loads(await ws.recv())
                        if msg.get("parent_header", {}).get("msg_id") != msg_id:
                            continue
                        kind, content = msg["msg_type"], msg["content"]
                        if kind == "stream" and content["name"] == "stdout":
                            stdout.append(content["text"])
                        elif kind == "error":
                            error = f"{content['ename']}: {content['evalue']}\n" + "\n".join(
                                content.get("traceback", [])
                            )
                        elif kind in ("execute_result", "display_data"):
                            outputs.append(content)
                        elif kind == "status" and content["execution_state"] == "idle":
                            break
                return Execution("".join(stdout), error, outputs)
        finally:
            await http.delete(f"{prefix}/{kernel}")


def execute(base: str, user: str, token: str, code: str, timeout: float = 300) -> Execution:
    """Run ``code`` in a new kernel of ``user``'s server (deleted afterwards).

    In a thread of its own: the browser tests' Playwright keeps an event loop running in
    the test's thread, where ``asyncio.run`` refuses to start another."""
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(asyncio.run, _execute(base.rstrip("/"), user, token, code, timeout))
        return job.result()


def stop_cluster(base: str, token: str, name: str) -> None:
    """Stop a Dask-Gateway cluster through the gateway's API, as its owner (``token``)."""
    r = httpx.delete(
        f"{base}/services/dask-gateway/api/v1/clusters/{name}",
        headers={"Authorization": f"jupyterhub {token}"},
        timeout=60,
    )
    assert r.status_code == 204, r.text

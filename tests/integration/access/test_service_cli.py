"""``insitu serve`` and ``insitu token`` as a user runs them: real processes, real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.integration.access.conftest import free_port


def _insitu(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "insitu.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _service_env(tmp_path: Path) -> tuple[dict[str, str], int]:
    """The environment of a service with its own data directory, no TOML file, a free port."""
    port = free_port()
    env = dict(
        os.environ,
        INSITU_DATA_DIR=str(tmp_path),
        INSITU_CONFIG=str(tmp_path / "none.toml"),
        INSITU_ACCESS__PORT=str(port),
    )
    env.pop("INSITU_CATALOG__URI", None)
    (tmp_path / "none.toml").write_text("")
    return env, port


def test_tokens_and_a_detached_service(tmp_path: Path, demo_root: Path) -> None:
    env, port = _service_env(tmp_path)
    assert _insitu(env, "catalog", "add", "priv", str(demo_root)).returncode == 0
    assert _insitu(env, "catalog", "scan", "priv").returncode == 0

    created = _insitu(env, "token", "create", "alice", "--collection", "priv")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("ins_") and "alice" in created.stderr
    listed = json.loads(_insitu(env, "token", "list", "--json").stdout)
    assert [t["name"] for t in listed] == ["alice"]
    assert secret not in json.dumps(listed)  # secrets are never shown again

    started = _insitu(env, "serve", "--detach")
    assert started.returncode == 0, started.stderr
    url = f"http://127.0.0.1:{port}"
    assert url in started.stdout
    try:
        assert httpx.get(f"{url}/api/v1/health").json()["status"] == "ok"
        anonymous = httpx.get(f"{url}/api/v1/search").json()
        assert anonymous["total"] == 0  # 'priv' is not public
        auth = {"Authorization": f"Bearer {secret}"}
        assert httpx.get(f"{url}/api/v1/search", headers=auth).json()["total"] > 0

        revoked = _insitu(env, "token", "revoke", "alice")
        assert revoked.returncode == 0 and "Revoked" in revoked.stdout
        # Revocation is seen by the running service at once.
        assert httpx.get(f"{url}/api/v1/search", headers=auth).status_code == 401
        again = _insitu(env, "token", "revoke", "alice")
        assert again.returncode == 1 and "insitu token list" in again.stderr
    finally:
        stopped = _insitu(env, "serve", "--stop")
    assert "Stopped" in stopped.stdout
    assert "No detached" in _insitu(env, "serve", "--status").stdout


def test_serve_refuses_a_taken_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = dict(os.environ, INSITU_DATA_DIR=str(tmp_path), INSITU_ACCESS__PORT=str(port))
        out = _insitu(env, "serve")
    assert out.returncode == 1
    assert f"Port {port}" in out.stderr and "--port" in out.stderr


def _listening_inodes(pid: int, port: int) -> set[int]:
    """Inodes of the sockets process ``pid`` listens on at ``port``."""
    import psutil

    inodes = set()
    listening = {
        c.fd
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }
    for fd in listening:
        link = os.readlink(f"/proc/{pid}/fd/{fd}")  # socket:[INODE]
        inodes.add(int(link[link.index("[") + 1 : -1]))
    return inodes


def test_server_processes_each_listen_and_share_the_connections(tmp_path: Path) -> None:
    """With --workers 2 each process listens on a socket of its own (SO_REUSEPORT): a burst
    of connections is spread over both, not accepted by whichever wakes first; a second
    service on the same port is refused."""
    import socket
    import time

    import psutil

    env, port = _service_env(tmp_path)
    server = subprocess.Popen(
        [sys.executable, "-m", "insitu.cli", "serve", "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    conns: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        children: list[psutil.Process] = []
        while time.monotonic() < deadline:
            # The server processes (multiprocessing's helper process listens on nothing).
            children = [
                c for c in psutil.Process(server.pid).children() if _listening_inodes(c.pid, port)
            ]
            if len(children) == 2:
                break
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            time.sleep(0.2)
        inodes = [_listening_inodes(c.pid, port) for c in children]
        assert len(inodes) == 2 and all(len(i) == 1 for i in inodes), inodes
        assert inodes[0] != inodes[1]  # one socket each, not one socket shared
        assert httpx.get(f"{url}/api/v1/health").json()["status"] == "ok"

        for _ in range(40):  # a burst of clients, as a load test opens them
            conns.append(socket.create_connection(("127.0.0.1", port)))
        time.sleep(1.0)
        local_ports = {c.getsockname()[1] for c in conns}
        per_process = [
            sum(
                1
                for k in child.net_connections(kind="tcp")
                if k.status == psutil.CONN_ESTABLISHED and k.raddr and k.raddr.port in local_ports
            )
            for child in children
        ]
        assert sum(per_process) == 40 and min(per_process) >= 8, per_process

        second = _insitu(env, "serve")
        assert second.returncode == 1 and f"Port {port}" in second.stderr
    finally:
        for c in conns:
            c.close()
        server.terminate()
        server.wait(timeout=30)


def test_a_server_process_freezes_its_start_up_objects(tmp_path: Path) -> None:
    """An app that is the process's whole life moves the objects of its start-up out of
    the cyclic collector once its warm-up imports are done; one built inside another
    program (this test) does not unless asked."""
    import gc
    import threading
    import time

    from starlette.testclient import TestClient

    from insitu.access import build_app
    from insitu.settings import Settings

    def warmed_up() -> None:
        deadline = time.monotonic() + 120
        while any(t.name == "insitu-warm-up" for t in threading.enumerate()):
            assert time.monotonic() < deadline
            time.sleep(0.1)

    settings = Settings.load(data_dir=tmp_path, catalog={"uri": f"sqlite:///{tmp_path}/c.db"})
    gc.unfreeze()
    try:
        with TestClient(build_app(settings)):
            warmed_up()
            assert gc.get_freeze_count() == 0
        with TestClient(build_app(settings, server_process=True)):
            warmed_up()
            assert gc.get_freeze_count() > 10_000  # modules, classes, the app
    finally:
        gc.unfreeze()

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


def test_tokens_and_a_detached_service(tmp_path: Path, demo_root: Path) -> None:
    port = free_port()
    env = dict(
        os.environ,
        INSITU_DATA_DIR=str(tmp_path),
        INSITU_CONFIG=str(tmp_path / "none.toml"),
        INSITU_ACCESS__PORT=str(port),
    )
    env.pop("INSITU_CATALOG__URI", None)
    (tmp_path / "none.toml").write_text("")
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

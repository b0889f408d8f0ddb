"""Idle culling: an idle user's server is stopped by the hub's culler, an idle Dask cluster
by the gateway, each after its own timeout."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.hub.client import Hub
from tests.integration.hub.conftest import INSITU, second_platform

pytestmark = pytest.mark.slow


def test_idle_servers_and_clusters_are_stopped(platform_dir: Path) -> None:
    data, env, first = second_platform(platform_dir, "culling")
    env |= {
        "INSITU_HUB__ISOLATION": "single",
        "INSITU_HUB__SINGLE_AS_ROOT": "true",  # a throw-away platform of the tests
        "INSITU_HUB__IDLE_TIMEOUT": "20",
        "INSITU_HUB__CLUSTER_IDLE_TIMEOUT": "10",
    }
    up = subprocess.run([*INSITU, "up", "--detach"], env=env, capture_output=True, text=True)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        base = f"http://127.0.0.1:{first}"
        hub = Hub(base, (data / "hub" / "admin_token.secret").read_text().strip())
        hub.start("admin")
        token = hub.token_for("admin")
        gateway = httpx.Client(
            base_url=f"{base}/services/dask-gateway/api/v1",
            headers={"Authorization": f"jupyterhub {token}"},
            timeout=30,
        )
        created = gateway.post("/clusters/", json={"cluster_options": {}})
        assert created.status_code == 201, created.text
        name = created.json()["name"]
        t0 = time.monotonic()
        cluster_gone = server_gone = None
        while time.monotonic() - t0 < 150 and (cluster_gone is None or server_gone is None):
            if cluster_gone is None:
                r = gateway.get(f"/clusters/{name}")
                if r.status_code == 404 or r.json().get("status") in ("STOPPED", "FAILED"):
                    cluster_gone = time.monotonic() - t0
            if server_gone is None and not hub.user("admin").get("servers"):
                server_gone = time.monotonic() - t0
            time.sleep(1)
        # The cluster goes after its 10 s, the server after its 20 s (the culler looks
        # every 15 s): neither before its time, both well within the wait.
        assert cluster_gone is not None and cluster_gone >= 8, cluster_gone
        assert server_gone is not None and server_gone >= 18, server_gone
        log = (data / "hub" / "jupyterhub.log").read_text()
        assert "Culling server admin" in log
    finally:
        subprocess.run([*INSITU, "down"], env=env, capture_output=True)

"""``insitu up`` / ``insitu down``: the whole platform, started and stopped as a user does."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from insitu.hub import marked_processes
from tests.integration.hub.client import execute
from tests.integration.hub.conftest import (
    INSITU,
    Platform,
    second_platform,
)

pytestmark = pytest.mark.slow


def test_up_prints_where_and_how_to_log_in_and_everything_answers(platform: Platform) -> None:
    assert f"insitu is up at {platform.base}/" in platform.up_output
    assert f"Log in as {platform.admin!r} with password" in platform.up_output
    for path in (
        "/hub/health",
        "/services/insitu/api/v1/health",
        "/services/dask-gateway/api/health",
    ):
        assert httpx.get(platform.base + path, timeout=10).status_code == 200, path
    status = platform.cli("up", "--status")
    assert "The platform runs at" in status.stdout
    # Everything listens on loopback only.
    ss = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True, check=True).stdout
    state = json.loads((platform.data_dir / "hub" / "platform.json").read_text())
    pids = set(map(str, marked_processes(state["mark"])))
    ours = [line for line in ss.splitlines() if any(f"pid={p}," in line for p in pids)]
    assert ours, ss
    for line in ours:
        local = line.split()[3]
        assert local.startswith(("127.0.0.1:", "[::1]:")), line


def test_passwords_are_stored_hashed_and_private(platform: Platform) -> None:
    accounts = platform.data_dir / "hub" / "users.json"
    assert accounts.stat().st_mode & 0o777 == 0o600
    text = accounts.read_text()
    for password in platform.passwords.values():
        assert password not in text
    assert "scrypt$" in text
    listing = platform.cli("user", "list").stdout
    for name in platform.passwords:
        assert name in listing


def test_wrong_password_is_refused_and_right_one_logs_in(platform: Platform, alice: str) -> None:
    with httpx.Client(base_url=platform.base, follow_redirects=True, timeout=60) as web:
        web.get("/hub/login")
        xsrf = web.cookies.get("_xsrf")
        bad = web.post(
            "/hub/login", data={"username": alice, "password": "wrong-one!", "_xsrf": xsrf}
        )
        assert bad.status_code == 403
        good = web.post(
            "/hub/login?next=/hub/home",
            data={"username": alice, "password": platform.passwords[alice], "_xsrf": xsrf},
        )
        assert good.status_code == 200 and good.url.path == "/hub/home"
        # The catalog pages through the hub: no second login, the hub's OAuth does it.
        page = web.get("/services/insitu/")
        assert page.status_code == 200 and page.url.path == "/services/insitu/"
        assert "demo" in page.text
        api = web.get("/services/insitu/api/v1/search", params={"limit": 1})
        assert api.status_code == 200 and api.json()["total"] > 0


def test_a_users_notebook_finds_catalog_service_and_own_cluster(
    platform: Platform, alice: str
) -> None:
    hub = platform.hub
    hub.start(alice)
    token = hub.token_for(alice)
    code = """
import getpass, os, insitu
print("user", getpass.getuser())
print("home", os.path.expanduser("~"))
cat = insitu.Catalog()
print("datasets", cat.search(table_id="Amon").total)
print("service", insitu.Settings.load().service_url)
import httpx
r = httpx.get(insitu.Settings.load().service_url + "/api/v1/search",
              headers={"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]})
print("api", r.status_code, r.json()["total"])
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with insitu.cluster() as client:
        print("worker", client.submit(getpass.getuser).result())
        versions = client.get_versions(check=True)  # raises on a mismatch of packages
        from insitu.compute import run
        ids = cat.search(table_id="Amon", source_id="MIROC6").dataset_ids[:1]
        result = run(cat, "time_mean", ids, client=client, cache=False)  # a progress bar
        print("computed", sorted(result.open().data_vars))
print("mismatch", [str(w.message)[:80] for w in caught if "ismatch" in str(w.message)])
"""
    result = execute(platform.base, alice, token, code)
    assert result.error is None, result.error
    out = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    assert out["user"] == alice
    assert int(out["datasets"]) > 0
    assert out["service"] == f"{platform.base}/services/insitu"
    assert out["api"].startswith("200 ")
    # The user's Dask cluster comes from the hub's gateway and runs as the user too.
    assert out["worker"] == alice
    # The workers run the same environment as the kernel: no version-mismatch warnings.
    assert out["mismatch"] == "[]"
    # Dask-Gateway 2026.3.0's LocalBackend handed "/" (the first letter of its TLS file's
    # path) over to the cluster's user; insitu's backend hands over the cluster's files only.
    assert os.stat("/").st_uid == 0
    assert "ta" in out["computed"]
    # Long work shows an ipywidgets progress bar in a notebook, without being asked.
    mimes = {m for o in result.outputs for m in o.get("data", {})}
    assert "application/vnd.jupyter.widget-view+json" in mimes, result.outputs
    # The example notebooks were put in the new home at the first start.
    home = Path(out["home"])
    assert home.stat().st_mode & 0o777 == 0o700
    assert (home / "examples").is_dir()


def test_ctrl_c_stops_every_process_the_platform_started(platform_dir: Path) -> None:
    """A second platform in the foreground: Ctrl-C leaves no process behind."""
    data, env, first = second_platform(platform_dir, "foreground")
    env |= {
        "INSITU_HUB__ISOLATION": "single",
        "INSITU_HUB__SINGLE_AS_ROOT": "true",  # a throw-away platform of the tests
        "INSITU_HUB__IDLE_TIMEOUT": "600",  # the culler too
    }
    proc = subprocess.Popen(
        [*INSITU, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _ctrl_c_stops_everything(proc, data, first)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run([*INSITU, "down"], env=env, capture_output=True, check=False)


def _ctrl_c_stops_everything(proc: subprocess.Popen[str], data: Path, first: int) -> None:
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 180
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C stops it" in line or time.monotonic() > deadline:
            break
    assert "Ctrl-C stops it" in "".join(lines), "".join(lines)
    assert "NO isolation" in "".join(lines)
    state = json.loads((data / "hub" / "platform.json").read_text())
    # A user's server and cluster, so there is something of every kind to stop.
    from tests.integration.hub.client import Hub

    token = (data / "hub" / "admin_token.secret").read_text().strip()
    base = f"http://127.0.0.1:{first}"
    admin = re.search(r"Log in as '([^']+)'", "".join(lines))
    assert admin
    Hub(base, token).start(admin.group(1))
    user_token = Hub(base, token).token_for(admin.group(1))
    run = execute(
        base,
        admin.group(1),
        user_token,
        "import insitu\ncm = insitu.cluster()\nc = cm.__enter__()\n"
        "print(c.submit(sum, [1, 2]).result())",
    )
    assert run.error is None and run.stdout.strip() == "3", run
    before = marked_processes(state["mark"])
    assert len(before) >= 6, before  # hub, proxy, service, gateway (+proxy), server, cluster
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, rest
    assert "Stopped." in rest
    assert marked_processes(state["mark"]) == []
    assert not (data / "hub" / "platform.json").exists()

"""Users' servers in containers: ``hub.spawner = "docker"`` against the real podman.

The container engine is the one ``scripts/podman.sh start`` runs (``make services`` passes
its socket and image as ``INSITU_TEST_PODMAN_URL`` and ``INSITU_TEST_PODMAN_IMAGE``; without
them the test runs the script itself). No podman, no pass: this test never skips. The
spawner's options are those of ``docs/hub-examples/docker.toml``, with this machine's socket
and image.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from insitu.hub.spawner import USER_LABEL
from tests.conftest import REQUIRE_SERVICES
from tests.integration.hub.client import execute
from tests.integration.hub.conftest import Platform, _worker_index, platform_env, running_platform

ROOT = Path(__file__).parents[3]
EXAMPLE = ROOT / "docs" / "hub-examples" / "docker.toml"
PORT_BASE = 19000  # clear of the other hub tests' 18200 on


@pytest.fixture(scope="module")
def podman() -> tuple[str, str]:
    """The podman API's socket URL and the single-user image's name."""
    url = os.environ.get("INSITU_TEST_PODMAN_URL")
    image = os.environ.get("INSITU_TEST_PODMAN_IMAGE")
    if not (url and image):
        if REQUIRE_SERVICES:
            pytest.fail(
                "INSITU_TEST_REQUIRE_SERVICES is set but INSITU_TEST_PODMAN_URL and "
                "INSITU_TEST_PODMAN_IMAGE are not ('make services' writes them to "
                ".cache/podman-engine).",
                pytrace=False,
            )
        out = subprocess.run(
            [str(ROOT / "scripts" / "podman.sh"), "start"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert out.returncode == 0, f"scripts/podman.sh start failed:\n{out.stderr}"
        url, image = out.stdout.strip().splitlines()[-2:]
    return url, image


@pytest.fixture(scope="module")
def engine(podman: tuple[str, str]) -> Iterator[docker.APIClient]:
    client = docker.APIClient(base_url=podman[0], version="auto", timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def container_platform(
    platform_dir: Path, podman: tuple[str, str]
) -> Iterator[tuple[Platform, dict[str, Any]]]:
    """A platform whose users' servers are containers, and the spawner's options."""
    url, image = podman
    options = tomllib.loads(EXAMPLE.read_text())["hub"]["spawner_config"]
    options |= {"image": image, "client_kwargs": {"base_url": url}}
    data = platform_dir / "containers"
    data.mkdir()
    data.chmod(0o755)
    first = PORT_BASE + 20 * _worker_index()
    suffix = secrets.token_hex(2)
    env = platform_env(data, _worker_index()) | {
        "INSITU_HUB__PORT": str(first),
        "INSITU_HUB__INTERNAL_PORTS": str(first + 1),
        "INSITU_ACCESS__PORT": str(first + 10),
        "INSITU_HUB__ADMIN": f"adm-{suffix}",
        "INSITU_HUB__SPAWNER": "docker",
        "INSITU_HUB__SPAWNER_CONFIG": json.dumps(options),
    }
    with running_platform(env, data) as p:
        p.add_user(f"box-{suffix}")
        yield p, options


def _containers(engine: docker.APIClient, user: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = engine.containers(
        all=True, filters={"label": f"{USER_LABEL}={user}"}
    )
    return found


CODE = """
import json, os, insitu
cat = insitu.Catalog()
ids = cat.search(table_id="Amon", source_id="MIROC6").dataset_ids
ds = cat.open_dataset(ids[0])
var = next(v for v in sorted(ds.data_vars) if "time" in ds[v].dims)
root = cat.collection("demo").root
mounts = {l.split()[4]: l.split()[5] for l in open("/proc/self/mountinfo")}
def first(*paths):
    for p in paths:
        if os.path.exists(p):
            return open(p).read().strip()
print(json.dumps({
    "uid": os.getuid(), "home": os.path.expanduser("~"), "cwd": os.getcwd(),
    "containerenv": os.path.exists("/run/.containerenv"),
    "memory": first("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"),
    "cpu_quota": first("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu.max"),
    "datasets": len(ids), "variables": sorted(ds.data_vars),
    "mean": float(ds[var].isel(time=0).mean()),
    "root": root, "root_mount": mounts.get(root, ""),
    "prefix": __import__("sys").prefix, "insitu": insitu.__file__,
}))
"""


def test_a_users_server_runs_in_a_container_and_goes_with_it(
    container_platform: tuple[Platform, dict[str, Any]], engine: docker.APIClient
) -> None:
    platform, options = container_platform
    user = next(n for n in platform.passwords if n.startswith("box-"))
    hub = platform.hub
    assert not _containers(engine, user)
    try:
        seconds = hub.start(user)
    except Exception as exc:
        log = (platform.data_dir / "hub" / "jupyterhub.log").read_text(errors="replace")
        raise AssertionError(f"{exc}\nThe hub's log ends with:\n{log[-6000:]}") from exc
    print(f"server of {user} ready in a container after {seconds:.1f} s")

    # The engine runs it, from the built image, on the host's network, with the limits.
    (box,) = _containers(engine, user)
    assert box["State"] == "running"
    info = engine.inspect_container(box["Id"])
    assert info["Config"]["Image"].endswith(options["image"].split("/")[-1])
    assert info["HostConfig"]["NetworkMode"] == "host"
    account = pwd.getpwnam(user)
    assert info["Config"]["User"] == f"{account.pw_uid}:{account.pw_gid}"

    # In the user's kernel: the platform's catalog, a dataset of the demo archive opened and
    # read, inside the container, as the user, within the configured limits.
    result = execute(platform.base, user, hub.token_for(user), CODE, timeout=120)
    assert result.error is None, result.error
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["containerenv"], out  # podman puts /run/.containerenv in every container
    # The image's venv and its insitu, not the host's.
    assert out["prefix"] == "/opt/insitu" and out["insitu"].startswith("/opt/insitu/"), out
    assert out["uid"] == account.pw_uid != 0
    assert out["home"] == out["cwd"] == account.pw_dir
    assert out["datasets"] > 0 and out["variables"], out
    assert out["mean"] == out["mean"]  # read from the archive: a number, not NaN
    assert out["root_mount"].split(",")[0] == "ro", out  # the archive is mounted read-only
    limit = {"G": 2**30, "M": 2**20}[options["mem_limit"][-1]] * int(options["mem_limit"][:-1])
    assert int(out["memory"]) == limit
    assert out["cpu_quota"].split()[0] == str(int(options["cpu_limit"] * 100_000))

    # Stopping the server removes its container.
    t0 = time.monotonic()
    hub.stop(user)
    print(f"server of {user} stopped after {time.monotonic() - t0:.1f} s")
    deadline = time.monotonic() + 30
    while _containers(engine, user) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _containers(engine, user)

"""The gateway backend against a real Dask-Gateway server (``scripts/gateway.sh``).

The server comes from ``INSITU_TEST_GATEWAY_ADDRESS`` if set (its password from
``INSITU_TEST_GATEWAY_PASSWORD`` or the script's state directory), else the fixture starts
it with the project's script. Tests never skip for want of it: a gateway that cannot start
is a failure. Each test logs in as its own user, so clusters of concurrent runs never mix.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest

from insitu.catalog import Catalog
from insitu.compute import cluster, run
from insitu.compute.backend import WORKER_ENV
from insitu.errors import BackendUnavailable, ConfigError, Unauthorized
from insitu.settings import Settings
from tests.integration import test_worker_env
from tests.integration.test_worker_env import _slab_from_heap

# Gateway workers cannot import the tests package: send its function by value.
cloudpickle.register_pickle_by_value(test_worker_env)

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class GatewayServer:
    address: str
    password: str


@pytest.fixture(scope="session")
def gateway_server() -> GatewayServer:
    """A Dask-Gateway on loopback, started by scripts/gateway.sh unless given by env."""
    address = os.environ.get("INSITU_TEST_GATEWAY_ADDRESS")
    if not address:
        out = subprocess.run(
            ["bash", str(REPO / "scripts" / "gateway.sh"), "start"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if out.returncode != 0:
            pytest.fail(f"scripts/gateway.sh start failed ({out.returncode}):\n{out.stderr}")
        address = out.stdout.strip().splitlines()[-1]
    password = os.environ.get("INSITU_TEST_GATEWAY_PASSWORD")
    if password is None:
        state = Path(os.environ.get("INSITU_GATEWAY_DIR", REPO / ".cache" / "gateway"))
        password = (state / "password").read_text().strip()
    return GatewayServer(address, password)


def _gateway_settings(gw: GatewayServer, user: str, **extra: Any) -> dict[str, Any]:
    return {
        "gateway_address": gw.address,
        "gateway_auth": "basic",
        "gateway_username": user,
        "gateway_password": gw.password,
        **extra,
    }


def _clusters_of(gw: GatewayServer, user: str) -> list[str]:
    """Names of the user's clusters that the gateway is starting or running."""
    # The gateway's REST API: a dask_gateway.Gateway here would need the same care about
    # its event loop as insitu.compute._gateway takes.
    token = base64.b64encode(f"{user}:{gw.password}".encode()).decode()
    request = urllib.request.Request(
        f"{gw.address}/api/v1/clusters/?status=PENDING,RUNNING",
        headers={"Authorization": f"Basic {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return sorted(json.load(response))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[Catalog]:
    tmp = tmp_path_factory.mktemp("gateway")
    cat = Catalog(Settings.load(data_dir=tmp, catalog={"uri": f"sqlite:///{tmp / 'c.db'}"}))
    cat.add_collection("demo", demo_root)
    cat.scan(workers=1)
    yield cat
    cat.close()


@pytest.fixture(scope="module")
def reference(demo: Catalog) -> tuple[str, Any]:
    """A demo dataset and its time mean computed without a cluster."""
    dataset_id = demo.search(source_id="MIROC6", table_id="Amon").all_ids[0]
    return dataset_id, run(demo, "time_mean", [dataset_id], cache=False).open()


def test_time_mean_on_a_gateway_cluster_equals_local(
    demo: Catalog, reference: tuple[str, Any], gateway_server: GatewayServer, tmp_path: Path
) -> None:
    user = f"t-{uuid.uuid4().hex[:8]}"
    settings = Settings.load(
        data_dir=tmp_path,
        compute=_gateway_settings(gateway_server, user, memory_limit="1GiB"),
    )
    dataset_id, local = reference
    with cluster(settings, backend="gateway", workers=2) as client:
        assert client.dashboard_link.startswith(f"{gateway_server.address}/clusters/")
        client.wait_for_workers(2, timeout=60)
        remote = run(demo, "time_mean", [dataset_id], client=client, cache=False).open()
        envs = client.run(lambda: {k: os.environ.get(k) for k in WORKER_ENV})
        from_heap = client.run(_slab_from_heap)
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        assert len(_clusters_of(gateway_server, user)) == 1
    np.testing.assert_array_equal(remote["ta"].values, local["ta"].values)
    assert remote["ta"].attrs == local["ta"].attrs
    # The malloc settings reach the workers through the gateway's environment option,
    # and the worker size comes from the compute settings.
    assert list(envs.values()) == [WORKER_ENV, WORKER_ENV]
    assert list(from_heap.values()) == [True, True]  # glibc saw them at process start
    assert [(w["nthreads"], w["memory_limit"]) for w in workers] == [(1, 2**30)] * 2
    # Leaving the block shut the cluster down on the gateway.
    assert _clusters_of(gateway_server, user) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_an_unreachable_gateway_is_named_in_the_error(tmp_path: Path) -> None:
    address = f"http://127.0.0.1:{_free_port()}"
    settings = Settings.load(data_dir=tmp_path, compute={"gateway_address": address})
    with (
        pytest.raises(
            BackendUnavailable, match=rf"Cannot reach the Dask-Gateway server at {address}"
        ) as err,
        cluster(settings, backend="gateway", workers=1),
    ):
        pass
    assert "INSITU_COMPUTE__GATEWAY_ADDRESS" in str(err.value)
    assert "scripts/gateway.sh status" in str(err.value)


def test_no_gateway_address_says_which_setting(tmp_path: Path) -> None:
    settings = Settings.load(data_dir=tmp_path)
    with (
        pytest.raises(ConfigError, match=r"compute\.gateway_address"),
        cluster(settings, backend="gateway", workers=1),
    ):
        pass


def test_wrong_password_and_unknown_options_are_explained(
    gateway_server: GatewayServer, tmp_path: Path
) -> None:
    user = f"t-{uuid.uuid4().hex[:8]}"
    bad = Settings.load(
        data_dir=tmp_path,
        compute=_gateway_settings(gateway_server, user, gateway_password="not-the-password"),
    )
    with (
        pytest.raises(Unauthorized, match=rf"{gateway_server.address} refused the login.*{user}"),
        cluster(bad, backend="gateway", workers=1),
    ):
        pass
    odd = Settings.load(
        data_dir=tmp_path,
        compute=_gateway_settings(gateway_server, user, gateway_cluster_options={"gpus": 1}),
    )
    with (
        pytest.raises(ConfigError, match=r"'gpus'.*It offers: environment, worker_cores"),
        cluster(odd, backend="gateway", workers=1),
    ):
        pass
    big = Settings.load(
        data_dir=tmp_path,
        compute=_gateway_settings(
            gateway_server, user, gateway_cluster_options={"worker_cores": 99}
        ),
    )
    with (
        pytest.raises(ConfigError, match=r"does not accept cluster option worker_cores=99"),
        cluster(big, backend="gateway", workers=1),
    ):
        pass
    assert _clusters_of(gateway_server, user) == []


def test_cluster_cli_on_the_gateway(
    demo: Catalog, reference: tuple[str, Any], gateway_server: GatewayServer, tmp_path: Path
) -> None:
    user = f"t-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    env.update(
        INSITU_DATA_DIR=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / "cfg"),
        INSITU_COMPUTE__BACKEND="gateway",
        INSITU_COMPUTE__GATEWAY_ADDRESS=gateway_server.address,
        INSITU_COMPUTE__GATEWAY_AUTH="basic",
        INSITU_COMPUTE__GATEWAY_USERNAME=user,
        INSITU_COMPUTE__GATEWAY_PASSWORD=gateway_server.password,
    )

    def insitu(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "insitu.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    shown = insitu("config", "show")
    assert gateway_server.password not in shown
    assert json.loads(shown)["compute"]["gateway_password"] == "**********"
    try:
        # Without --workers the gateway cluster is adaptive (at least one worker).
        started = insitu("cluster", "up")
        assert f"Dashboard: {gateway_server.address}/clusters/" in started
        assert "Scheduler: gateway://" in started
        # insitu.cluster() in another process reuses it, logging in for its TLS credentials.
        settings = Settings.load(data_dir=tmp_path, compute=_gateway_settings(gateway_server, user))
        dataset_id, local = reference
        with cluster(settings) as client:
            client.wait_for_workers(1, timeout=60)
            remote = run(demo, "time_mean", [dataset_id], client=client, cache=False).open()
        np.testing.assert_array_equal(remote["ta"].values, local["ta"].values)
        # Gateway workers arrive after the scheduler: 'scale' waits for them.
        assert "2 workers" in insitu("cluster", "scale", "2")
        status = json.loads(insitu("cluster", "status", "--json"))
        assert (status["backend"], status["workers"], status["threads"]) == ("gateway", 2, 2)
        assert len(_clusters_of(gateway_server, user)) == 1
    finally:
        stopped = insitu("cluster", "down")
    assert "Stopped the gateway cluster" in stopped
    assert _clusters_of(gateway_server, user) == []

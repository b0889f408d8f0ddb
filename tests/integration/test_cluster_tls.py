"""Clusters that listen beyond loopback are closed to everyone but their owner.

On the project's two network-namespace hosts (``scripts/netns.sh``): the ssh backend's
scheduler runs on host 1 and workers on both, the SLURM backend's scheduler and jobs on
this machine's side of the hosts' bridge. From the other host, a client without the
cluster's credentials (plain TCP, or TLS with a CA of its own) is refused, the owner's
credentials work, and the dashboard cannot be reached. Never skipped: without the hosts or
SLURM the tests fail.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from distributed import Client
from distributed.security import Security

from insitu.compute import cluster, running_cluster
from insitu.compute.backend import write_client_credentials
from insitu.errors import ConfigError
from insitu.settings import Settings

REPO = Path(__file__).resolve().parents[2]
BRIDGE = "insitu-br0"  # scripts/netns.sh: this machine's address on the hosts' network

# Run on another host: join the cluster at ADDRESS as MODE and compute 41 + 1.
_PROBE = textwrap.dedent(
    """
    import json, socket, sys
    from distributed import Client
    from distributed.security import Security

    mode, address, creds = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if mode == "dashboard":
        host, port = address.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
            print("OPEN")
        except OSError as exc:
            print("REFUSED", type(exc).__name__, exc)
        sys.exit(0)
    if mode == "plain":
        address, security = "tcp://" + address.split("://", 1)[1], None
    elif mode == "own-ca":
        security = Security.temporary()
    elif mode == "forged":
        # Trusts the cluster's (public) certificate but shows one of its own making.
        other = Security.temporary()
        security = Security(require_encryption=True, tls_ca_file=creds["ca_file"],
                            tls_client_cert=other.tls_client_cert,
                            tls_client_key=other.tls_client_key)
    else:
        security = Security(require_encryption=True, tls_ca_file=creds["ca_file"],
                            tls_client_cert=creds["cert"], tls_client_key=creds["key"])
    try:
        with Client(address, security=security, timeout="8s") as client:
            print("RESULT", client.submit(lambda x: x + 1, 41).result(timeout=60))
    except Exception as exc:
        print("REFUSED", type(exc).__name__, str(exc)[:300])
    """
)


def _probe(namespace: str, mode: str, address: str, creds: dict[str, str]) -> str:
    """The last line :data:`_PROBE` prints, run in network namespace ``namespace``."""
    proc = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            namespace,
            sys.executable,
            "-c",
            _PROBE,
            mode,
            address,
            *[json.dumps(creds)],
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    return lines[-1]


def _assert_closed_to_others(
    namespace: str, scheduler: str, creds: dict[str, str], dashboards: list[str]
) -> None:
    """From ``namespace``: strangers refused, the owner's credentials work, dashboards shut."""
    assert scheduler.startswith("tls://"), scheduler
    for mode in ("plain", "own-ca", "forged"):
        line = _probe(namespace, mode, scheduler, creds)
        assert line.startswith("REFUSED"), (mode, line)
    assert _probe(namespace, "owner", scheduler, creds) == "RESULT 42"
    for dashboard in dashboards:
        line = _probe(namespace, "dashboard", dashboard, creds)
        assert line.startswith("REFUSED ConnectionRefusedError"), (dashboard, line)


def _owner_files(security: Security, directory: Path) -> dict[str, str]:
    """The owner's client credentials as files (as ``insitu cluster up`` writes them)."""
    paths = write_client_credentials(security, directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in paths.values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    return paths


def _http_ports(client: Client) -> tuple[int, list[str]]:
    """The scheduler's dashboard port, and each worker's HTTP server as HOST:PORT (the
    host its worker listens on)."""
    info = client.scheduler_info(n_workers=-1)
    workers = [
        f"{addr.split('://')[1].rsplit(':', 1)[0]}:{w['services']['dashboard']}"
        for addr, w in info["workers"].items()
    ]
    return info["services"]["dashboard"], workers


def _ssh_settings(tmp_path: Path, hosts: list[str], key: Path, **compute: Any) -> Settings:
    return Settings.load(
        data_dir=tmp_path / "data",
        compute={
            "ssh_hosts": hosts,
            "ssh_connect_options": {
                "username": "root",
                "client_keys": [str(key)],
                "known_hosts": None,
            },
            "ssh_python": sys.executable,
            **compute,
        },
    )


def _bridge_address() -> str:
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", BRIDGE], capture_output=True, text=True
    ).stdout
    assert out, f"{BRIDGE} has no address: is scripts/netns.sh up?"
    return out.split()[3].split("/")[0]


def test_ssh_cluster_admits_only_its_owner(
    tmp_path: Path, netns_hosts: tuple[list[str], Path]
) -> None:
    (h1, h2), key = netns_hosts
    settings = _ssh_settings(tmp_path, [h1, h1, h2], key)
    with cluster(settings, backend="ssh", reuse=False) as client:
        client.wait_for_workers(2, timeout=60)
        scheduler = client.scheduler_info()["address"]
        assert scheduler.startswith(f"tls://{h1}:"), scheduler
        assert client.submit(lambda x: x * 2, 21).result(timeout=60) == 42
        assert client.dashboard_link.startswith("http://127.0.0.1:"), client.dashboard_link
        port, worker_http = _http_ports(client)
        assert len(worker_http) == 2
        # Each host's credentials sit in a directory of the owner's only, while it runs.
        dirs = client.cluster.credential_directories
        assert set(dirs) == {h1, h2}
        for directory in dirs.values():
            assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
            for name in ("cert.pem", "key.pem"):
                assert stat.S_IMODE(os.stat(f"{directory}/{name}").st_mode) == 0o600
        creds = _owner_files(client.security, tmp_path / "owner")
        # The scheduler's host answers on its own loopback (the tunnel's end) only.
        assert _probe("insitu-h1", "dashboard", f"127.0.0.1:{port}", creds) == "OPEN"
        _assert_closed_to_others("insitu-h2", scheduler, creds, [f"{h1}:{port}", *worker_http])
        written = list(dirs.values())
    for directory in written:
        assert not os.path.exists(directory), f"credentials left behind in {directory}"


def test_ssh_dashboard_beyond_loopback_is_refused(
    tmp_path: Path, netns_hosts: tuple[list[str], Path]
) -> None:
    (h1, h2), key = netns_hosts
    settings = _ssh_settings(tmp_path, [h1, h2], key, dashboard_address=f"{h1}:0")
    with (
        pytest.raises(ConfigError, match="not a loopback address"),
        cluster(settings, backend="ssh", reuse=False),
    ):
        pass


def test_running_ssh_cluster_is_joined_with_the_owners_files(
    tmp_path: Path, netns_hosts: tuple[list[str], Path]
) -> None:
    """``insitu cluster up`` keeps the client credentials 0600 and its clients use them."""
    (h1, h2), key = netns_hosts
    data = tmp_path / "data"
    env = dict(
        os.environ,
        INSITU_DATA_DIR=str(data),
        INSITU_COMPUTE__SSH_HOSTS=json.dumps([h1, h2]),
        INSITU_COMPUTE__SSH_CONNECT_OPTIONS=json.dumps(
            {"username": "root", "client_keys": [str(key)], "known_hosts": None}
        ),
        INSITU_COMPUTE__SSH_PYTHON=sys.executable,
    )
    insitu = [sys.executable, "-m", "insitu.cli"]
    up = subprocess.run(
        [*insitu, "cluster", "up", "--backend", "ssh", "--timeout", "120"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    settings = Settings.load(data_dir=data)
    try:
        state = running_cluster(settings)
        assert state is not None and state.tls is not None
        assert state.scheduler_address.startswith(f"tls://{h1}:")
        tls_dir = data / "cluster-tls"
        assert stat.S_IMODE(tls_dir.stat().st_mode) == 0o700
        assert set(state.tls.values()) == {
            str(tls_dir / n) for n in ("ca.pem", "cert.pem", "key.pem")
        }
        for path in state.tls.values():
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
        # The owner's session joins with no configuration of its own.
        with cluster(settings) as client:
            client.wait_for_workers(1, timeout=60)
            assert client.submit(lambda x: x + 1, 41).result(timeout=60) == 42
        status = subprocess.run(
            [*insitu, "cluster", "status", "--json"], env=env, capture_output=True, text=True
        )
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["workers"] == 1
        _assert_closed_to_others("insitu-h2", state.scheduler_address, state.tls, [])
        # An ssh cluster cannot scale: the request is refused and the cluster runs on.
        scale = subprocess.run(
            [*insitu, "cluster", "scale", "2", "--no-wait"], env=env, capture_output=True, text=True
        )
        assert scale.returncode == 0, scale.stderr
        deadline = time.monotonic() + 30
        while (data / "cluster-scale.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        assert running_cluster(settings) == state, "the daemon died of a scale request"
        assert "ignored scale request: An ssh cluster" in (data / "cluster.log").read_text()
    finally:
        down = subprocess.run(
            [*insitu, "cluster", "down"], env=env, capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stderr
    assert not (data / "cluster-tls" / "key.pem").exists()


def test_slurm_cluster_admits_only_its_owner(
    tmp_path: Path, slurm_partition: str, netns_hosts: tuple[list[str], Path]
) -> None:
    """Scheduler (here) and SLURM jobs listen on the bridge the namespace hosts reach."""
    bridge = _bridge_address()
    data = tmp_path / "data"
    settings = Settings.load(
        data_dir=data,
        compute={
            "jobqueue": {
                "queue": slurm_partition,
                "memory": "1GB",
                "interface": BRIDGE,
                "walltime": "00:10:00",
            }
        },
    )
    with cluster(settings, backend="slurm", workers=1, reuse=False) as client:
        client.wait_for_workers(1, timeout=120)
        assert set(client.run(lambda: os.environ.get("SLURM_JOB_ID")).values()) != {None}
        scheduler = client.scheduler_info()["address"]
        assert scheduler.startswith(f"tls://{bridge}:"), scheduler
        assert all(w.startswith(f"tls://{bridge}:") for w in client.scheduler_info()["workers"])
        assert client.submit(lambda x: x * 2, 21).result(timeout=60) == 42
        # The jobs' copy of the credentials: files 0600 in a directory 0700.
        tls_dir = data / "tls"
        assert stat.S_IMODE(tls_dir.stat().st_mode) == 0o700
        files = list(tls_dir.iterdir())
        assert {f.name.split(".")[3] for f in files} == {"ca_file", "cert", "key"}, files
        assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files), files
        script = client.cluster.job_script()
        assert "--tls-key" in script and "--protocol tls://" in script, script
        port, worker_http = _http_ports(client)
        creds = _owner_files(client.security, tmp_path / "owner")
        _assert_closed_to_others("insitu-h1", scheduler, creds, [f"{bridge}:{port}", *worker_http])
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # ... and it is there, on this machine's loopback
    assert list(tls_dir.iterdir()) == [], "the workers' credentials outlive their cluster"


def test_slurm_dashboard_beyond_loopback_is_refused(tmp_path: Path) -> None:
    settings = Settings.load(
        data_dir=tmp_path, compute={"dashboard_address": "0.0.0.0:8787", "jobqueue": {}}
    )
    with (
        pytest.raises(ConfigError, match=r"'0\.0\.0\.0:8787' is not a loopback address"),
        cluster(settings, backend="slurm", reuse=False),
    ):
        pass

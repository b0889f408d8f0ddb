"""Workers as real Grid Engine jobs on the single-host SGE that ``scripts/sge.sh`` starts.

Never skipped and never mocked: without Grid Engine the ``sge_queue`` fixture starts it, or
(under ``make test``) the run stops before any test.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from distributed import Client

from insitu.catalog import Catalog
from insitu.compute import cluster, run
from insitu.settings import Settings
from tests.integration.test_cluster_tls import (
    BRIDGE,
    _assert_closed_to_others,
    _bridge_address,
    _http_ports,
    _owner_files,
)


def _sge_settings(data: Path, queue: str, interface: str, **extra: object) -> Settings:
    return Settings.load(
        data_dir=data,
        compute={
            "backend": "sge",
            "jobqueue": {
                "queue": queue,
                "memory": "1GB",
                "interface": interface,
                "walltime": "00:10:00",
            },
        },
        **extra,
    )


def _queued_jobs(queue: str) -> set[str]:
    """The ids of the jobs Grid Engine lists in ``queue`` (any user's, running or waiting)."""
    out = subprocess.run(
        ["qstat", "-u", "*", "-q", queue], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[0] for line in out.splitlines()[2:] if line.strip()}


def test_time_mean_runs_on_sge_jobs(tmp_path: Path, demo_root: Path, sge_queue: str) -> None:
    """``compute.backend = "sge"``: two worker jobs compute what a local run computes."""
    settings = _sge_settings(
        tmp_path, sge_queue, "lo", catalog={"uri": f"sqlite:///{tmp_path / 'c.db'}"}
    )
    with Catalog(settings) as cat:
        cat.add_collection("demo", demo_root)
        cat.scan(workers=1)
        ids = cat.search(source_id="MIROC6", table_id="Amon").all_ids
        local = run(cat, "time_mean", ids, cache=False).open()
        with cluster(settings, workers=2, reuse=False) as client:
            client.wait_for_workers(2, timeout=120)
            # Each worker runs inside its own job of this queue, which qstat lists.
            env = client.run(lambda: (os.environ.get("JOB_ID"), os.environ.get("QUEUE")))
            jobs = {job for job, _ in env.values()}
            assert len(jobs) == 2 and None not in jobs, env
            assert {queue for _, queue in env.values()} == {sge_queue}, env
            assert jobs <= _queued_jobs(sge_queue), (jobs, _queued_jobs(sge_queue))
            script = client.cluster.job_script()
            assert f"#$ -q {sge_queue}" in script and "--protocol tls://" in script, script
            # TLS only: a plain TCP client is refused, the owner's client (this one) works.
            scheduler = client.scheduler_info()["address"]
            assert scheduler.startswith("tls://127.0.0.1:"), scheduler
            plain = "tcp://" + scheduler.split("://", 1)[1]
            with pytest.raises((OSError, TimeoutError)), Client(plain, timeout="5s") as stranger:
                stranger.submit(lambda x: x + 1, 41).result(timeout=10)
            remote = run(cat, "time_mean", ids, client=client, cache=False).open()
        np.testing.assert_allclose(remote["ta"].values, local["ta"].values, rtol=1e-6)
        assert remote["ta"].shape == local["ta"].shape == (2, 2, 2)
    # The jobs end with their cluster (qdel is asynchronous: give them a few seconds).
    deadline = time.monotonic() + 30
    while jobs & _queued_jobs(sge_queue) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not jobs & _queued_jobs(sge_queue)


def test_sge_cluster_admits_only_its_owner(
    tmp_path: Path, sge_queue: str, netns_hosts: tuple[list[str], Path]
) -> None:
    """Scheduler (here) and the SGE job listen on the bridge the namespace hosts reach."""
    bridge = _bridge_address()
    data = tmp_path / "data"
    with cluster(_sge_settings(data, sge_queue, BRIDGE), workers=1, reuse=False) as client:
        client.wait_for_workers(1, timeout=120)
        assert set(client.run(lambda: os.environ.get("JOB_ID")).values()) != {None}
        scheduler = client.scheduler_info()["address"]
        assert scheduler.startswith(f"tls://{bridge}:"), scheduler
        assert all(w.startswith(f"tls://{bridge}:") for w in client.scheduler_info()["workers"])
        # The job's copy of the credentials: files 0600 in a directory 0700.
        tls_dir = data / "tls"
        assert stat.S_IMODE(tls_dir.stat().st_mode) == 0o700
        files = list(tls_dir.iterdir())
        assert {f.name.split(".")[3] for f in files} == {"ca_file", "cert", "key"}, files
        assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files), files
        port, worker_http = _http_ports(client)
        creds = _owner_files(client.security, tmp_path / "owner")
        _assert_closed_to_others("insitu-h1", scheduler, creds, [f"{bridge}:{port}", *worker_http])
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # ... and the dashboard is there, on this machine's loopback
    assert list(tls_dir.iterdir()) == [], "the workers' credentials outlive their cluster"

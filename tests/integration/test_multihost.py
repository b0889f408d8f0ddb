"""Multi-host for real: the ssh compute backend drives Dask over SSH into two separate
network namespaces (hosts 10.250.0.2 and 10.250.0.3 on a private bridge), each with its
own sshd, started by the project's script ``scripts/netns.sh``. Never skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from insitu.catalog import Catalog
from insitu.compute import cluster, run
from insitu.settings import Settings


def test_analysis_runs_on_workers_in_two_network_namespaces(
    tmp_path: Path, demo_root: Path, netns_hosts: tuple[list[str], Path]
) -> None:
    (h1, h2), key = netns_hosts
    settings = Settings.load(
        data_dir=tmp_path,
        catalog={"uri": f"sqlite:///{tmp_path / 'c.db'}"},
        compute={
            # The first host runs the scheduler; one worker on each host.
            "ssh_hosts": [h1, h1, h2],
            "ssh_connect_options": {
                "username": "root",
                "client_keys": [str(key)],
                "known_hosts": None,
            },
            "ssh_python": sys.executable,
        },
    )
    own_netns = os.readlink("/proc/self/ns/net")
    with Catalog(settings) as cat:
        cat.add_collection("demo", demo_root)
        cat.scan(workers=1)
        ids = cat.search(source_id="MIROC6", table_id="Amon").all_ids
        assert ids
        local = run(cat, "field_mean", ids, cache=False).open()
        with cluster(settings, backend="ssh") as client:
            client.wait_for_workers(2, timeout=60)
            scheduler = client.scheduler_info()["address"]
            assert scheduler.startswith(f"tls://{h1}:"), scheduler  # TLS: test_cluster_tls.py
            workers = list(client.scheduler_info()["workers"])
            assert len(workers) == 2
            assert {w.split("://")[1].rsplit(":", 1)[0] for w in workers} == {h1, h2}
            netns = client.run(lambda: os.readlink("/proc/self/ns/net"))
            assert len(set(netns.values())) == 2, netns
            assert own_netns not in netns.values(), (own_netns, netns)
            # Each worker sees only its own host's address (besides loopback).
            addrs = client.run(
                lambda: (
                    subprocess.run(
                        ["ip", "-4", "-o", "addr", "show", "scope", "global"],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                )
            )
            for worker, out in addrs.items():
                host = worker.split("://")[1].rsplit(":", 1)[0]
                assert [line.split()[3] for line in out.splitlines()] == [f"{host}/24"], out
            remote = run(cat, "field_mean", ids, client=client, cache=False).open()
        np.testing.assert_array_equal(remote["ta"].values, local["ta"].values)
        assert remote["ta"].dtype == local["ta"].dtype


def test_ssh_workers_start_with_the_malloc_settings(
    tmp_path: Path, netns_hosts: tuple[list[str], Path]
) -> None:
    """Like the local and SLURM checks in ``test_worker_env.py``, on the ssh hosts."""
    import cloudpickle

    from tests.integration import test_worker_env

    (h1, h2), key = netns_hosts
    settings = Settings.load(
        data_dir=tmp_path,
        compute={
            "ssh_hosts": [h1, h2],
            "ssh_connect_options": {
                "username": "root",
                "client_keys": [str(key)],
                "known_hosts": None,
            },
            "ssh_python": sys.executable,
        },
    )
    # The worker host cannot import the test modules: send the probe by value.
    cloudpickle.register_pickle_by_value(test_worker_env)
    try:
        with cluster(settings, backend="ssh") as client:
            client.wait_for_workers(1, timeout=60)
            assert list(client.run(test_worker_env._slab_from_heap).values()) == [True]
    finally:
        cloudpickle.unregister_pickle_by_value(test_worker_env)

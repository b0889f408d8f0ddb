"""Workers of every backend start with insitu's malloc settings (``WORKER_ENV``).

The ssh backend's check is in ``test_multihost.py``, beside the other test that needs the
network-namespace hosts (one module: two modules on two xdist workers would tear the
hosts down under each other).

glibc reads ``MALLOC_MMAP_THRESHOLD_`` once, at process start, so ``os.environ`` in the
worker tells nothing; where a 12 MB array lands does: with the setting it comes from the
heap, with Dask's defaults from a fresh ``mmap`` (every slab then faults its pages in).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from insitu.compute import cluster
from insitu.compute.backend import WORKER_CONFIG, WORKER_ENV, worker_env_exports
from insitu.settings import Settings


def _slab_from_heap() -> bool:
    """True if a freshly allocated 12 MB array lies in the brk heap (not an mmap)."""
    import numpy as np

    slab = np.ones(12 * 2**20 // 8)
    address = slab.ctypes.data
    for line in Path("/proc/self/maps").read_text().splitlines():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if lo <= address < hi:
            return line.endswith("[heap]")
    return False


def test_local_workers_and_scaled_up_ones_start_with_the_malloc_settings(
    tmp_path: Path,
) -> None:
    with cluster(Settings.load(data_dir=tmp_path), backend="local", workers=1) as client:
        client.wait_for_workers(1, timeout=60)
        assert list(client.run(_slab_from_heap).values()) == [True]
        client.cluster.scale(2)
        client.wait_for_workers(2, timeout=60)
        assert list(client.run(_slab_from_heap).values()) == [True, True]
        first = next(iter(client.run(os.getpid)))
        client.restart_workers([first])
        assert list(client.run(_slab_from_heap).values()) == [True, True]


def _quiet_config() -> dict[str, object]:
    """The worker's values of the keys WORKER_CONFIG sets."""
    import dask.config

    return {key: dask.config.get(key) for key in WORKER_CONFIG}


def test_local_workers_scheduler_and_nannies_run_quieter_housekeeping(tmp_path: Path) -> None:
    """No 10 ms stack sampling, slower ticks and polls: in every worker (also one of a
    scale-up), and in the scheduler and nannies that share the machine's cores."""
    import dask.config
    import distributed  # noqa: F401  (loads Dask's distributed defaults)

    defaults = {key: dask.config.get(key) for key in WORKER_CONFIG}
    assert defaults != WORKER_CONFIG  # Dask's own defaults differ (else this tells nothing)
    with cluster(Settings.load(data_dir=tmp_path), backend="local", workers=1) as client:
        client.wait_for_workers(1, timeout=60)
        assert list(client.run(_quiet_config).values()) == [WORKER_CONFIG]
        client.cluster.scale(2)
        client.wait_for_workers(2, timeout=60)
        assert list(client.run(_quiet_config).values()) == [WORKER_CONFIG] * 2
        scheduler = client.cluster.scheduler
        assert scheduler._tick_interval == 1.0  # seconds, as WORKER_CONFIG's "1s"
        nanny = next(iter(client.cluster.workers.values()))
        assert nanny.periodic_callbacks["memory_monitor"].callback_time == 500
    # Only the cluster's start saw the settings: this process keeps Dask's defaults.
    assert {key: dask.config.get(key) for key in WORKER_CONFIG} == defaults


def test_dask_defaults_would_not_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: a worker started the way Dask starts it mmaps the slab."""
    from distributed import LocalCluster

    # A nanny leaves its pre-spawn environment in this process's environment.
    for name in WORKER_ENV:
        monkeypatch.delenv(name, raising=False)

    with LocalCluster(n_workers=1, processes=True, host="127.0.0.1", dashboard_address=None) as lc:
        from distributed import Client

        with Client(lc) as client:
            assert list(client.run(_slab_from_heap).values()) == [False]


def test_batch_job_prologue_gives_the_nanny_the_settings(tmp_path: Path) -> None:
    """What a SLURM/PBS/LSF/SGE job script runs before its ``dask worker`` command."""
    script = tmp_path / "job.sh"
    code = (
        "import dask, distributed, json; "
        "print(json.dumps(dask.config.get('distributed.nanny.pre-spawn-environ')))"
    )
    script.write_text(
        "\n".join([*worker_env_exports(), f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"])
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    out = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    import json

    spawn_env = json.loads(out.stdout.strip().splitlines()[-1])
    assert {k: spawn_env[k] for k in WORKER_ENV} == WORKER_ENV
    assert str(spawn_env["OMP_NUM_THREADS"]) == "1"  # Dask's own defaults are kept


def test_batch_job_prologue_gives_the_worker_the_quiet_config(tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    code = (
        "import dask, distributed, json; "
        f"print(json.dumps({{k: dask.config.get(k) for k in {sorted(WORKER_CONFIG)!r}}}))"
    )
    script.write_text(
        "\n".join([*worker_env_exports(), f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"])
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    out = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    import json

    assert json.loads(out.stdout.strip().splitlines()[-1]) == WORKER_CONFIG


def test_slurm_job_workers_start_with_the_malloc_settings(
    tmp_path: Path, slurm_partition: str
) -> None:
    settings = Settings.load(
        data_dir=tmp_path,
        compute={
            "jobqueue": {
                "queue": slurm_partition,
                "memory": "1GB",
                "interface": "lo",
                "walltime": "00:10:00",
            }
        },
    )
    before = set(Path.cwd().glob("slurm-*.out"))
    with cluster(settings, backend="slurm", workers=1) as client:
        client.wait_for_workers(1, timeout=120)
        assert list(client.run(_slab_from_heap).values()) == [True]
    # The job's output goes under the data directory, not where the cluster was started.
    assert list((tmp_path / "logs" / "jobqueue").glob("*.out"))
    assert set(Path.cwd().glob("slurm-*.out")) == before

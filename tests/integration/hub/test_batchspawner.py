"""The hub spawns a user's server as a SLURM job (batchspawner), and that user's analysis runs
on SLURM workers submitted from their kernel: the Pangeo-on-HPC pattern on one machine.

A second platform of its own (data folder, ports, users), with ``hub.spawner = "slurm"``.
The hub (root) submits the server's job as the user with ``sudo -u``, so ``sudo`` must be
installed (``scripts/apt-install.sh sudo``). On 2 cores the notebook job and one worker job
must fit side by side: each asks for 1 CPU and a little memory.
"""

from __future__ import annotations

import json
import pwd
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.hub.client import execute
from tests.integration.hub.conftest import (
    Platform,
    running_platform,
    second_platform,
)

pytestmark = pytest.mark.slow

RESULT = "RESULT "
SERVER_JOB = "spawner-jupyterhub"  # batchspawner's job name


def _jobs(user: str) -> list[dict[str, str]]:
    out = subprocess.run(
        ["squeue", "-h", "-u", user, "-o", "%i|%u|%j|%T"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    keys = ("id", "user", "name", "state")
    return [dict(zip(keys, line.split("|"), strict=True)) for line in out.splitlines()]


def _diagnose(platform: Platform, user: str) -> str:
    """The server job's log and the hub's log tail, for a failed start."""
    home = Path(pwd.getpwnam(user).pw_dir)
    logs = sorted(home.glob("jupyterhub_slurmspawner_*.log"))
    job_log = logs[-1].read_text(errors="replace")[-3000:] if logs else "(no job log)"
    hub_log = (platform.data_dir / "hub" / "jupyterhub.log").read_text(errors="replace")
    return f"job log:\n{job_log}\nhub log:\n{hub_log[-4000:]}\nsqueue: {_jobs(user)}"


@pytest.fixture(scope="module")
def slurm_platform(platform_dir: Path, slurm_partition: str) -> Iterator[Platform]:
    """A platform whose users' servers are SLURM jobs, with one user."""
    assert shutil.which("sudo"), "batchspawner submits as the user with sudo: install 'sudo'"
    data, env, _ = second_platform(platform_dir, "batch")
    suffix = secrets.token_hex(2)
    spawner = {
        "req_partition": slurm_partition,
        "req_nprocs": "1",
        "req_memory": "2G",
        "req_runtime": "00:30:00",
        "start_timeout": 300,
        # One machine: the server listens on loopback and the hub reaches it there (by
        # default it listens on every address and is reached at the job's host name).
        "cmd": [str(Path(sys.prefix) / "bin" / "jupyterhub-singleuser"), "--ip=127.0.0.1"],
        "state_exechost_exp": "127.0.0.1",
    }
    env |= {
        "INSITU_HUB__ADMIN": f"adm-{suffix}",
        "INSITU_HUB__SPAWNER": "slurm",
        "INSITU_HUB__SPAWNER_CONFIG": json.dumps(spawner),
    }
    with running_platform(env, data) as p:
        p.add_user(f"carol-{suffix}")
        yield p


def test_server_runs_as_a_slurm_job_of_the_user_and_analysis_on_slurm_workers(
    slurm_platform: Platform, slurm_partition: str
) -> None:
    platform = slurm_platform
    user = next(n for n in platform.passwords if n.startswith("carol-"))
    hub = platform.hub
    try:
        hub.start(user, timeout=300)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_diagnose(platform, user)}") from None
    servers = [j for j in _jobs(user) if j["name"] == SERVER_JOB]
    assert len(servers) == 1 and servers[0]["state"] == "RUNNING", _jobs(user)
    assert servers[0]["user"] == user
    server_job = servers[0]["id"]

    # From the kernel: insitu's compute on SLURM workers (dask-jobqueue), submitted as the user
    # from inside the server's job, on the platform's catalog; one worker job fits beside it.
    code = f"""
import getpass, json, os
import numpy as np
import insitu
from insitu.compute import run

def where():
    return [os.environ.get("SLURM_JOB_ID"), getpass.getuser()]

settings = insitu.Settings.load(compute={{
    "backend": "slurm",
    "workers": 1,
    "jobqueue": {{"queue": {slurm_partition!r}, "interface": "lo", "memory": "1GB",
                 "cores": 1, "walltime": "00:20:00"}},
}})
cat = insitu.Catalog(settings)
ids = cat.search(source_id="MIROC6", table_id="Amon").all_ids
here = run(cat, "field_mean", ids, cache=False).open()
with insitu.cluster(settings) as client:
    client.wait_for_workers(1, timeout=240)
    workers = list(client.run(where).values())
    there = run(cat, "field_mean", ids, client=client, cache=False).open()
    task = client.submit(where, pure=False).result()
print({RESULT!r} + json.dumps({{
    "kernel": where(),
    "workers": workers,
    "task": task,
    "datasets": len(ids),
    "same": bool(np.array_equal(here["ta"].values, there["ta"].values, equal_nan=True)),
}}))
"""
    run = execute(platform.base, user, hub.token_for(user), code, timeout=400)
    assert run.error is None, f"{run.error}\n{run.stdout}\n{_diagnose(platform, user)}"
    lines = [line for line in run.stdout.splitlines() if line.startswith(RESULT)]
    assert lines, run.stdout
    out = json.loads(lines[-1][len(RESULT) :])
    assert out["kernel"] == [server_job, user]
    assert len(out["workers"]) == 1
    worker_job, worker_user = out["workers"][0]
    assert worker_job and worker_job != server_job and worker_user == user
    assert out["task"] == [worker_job, user]
    assert out["datasets"] > 0 and out["same"] is True

    # Stopping the server ends its job (and the worker job ended with the cluster).
    hub.stop(user)
    deadline = time.monotonic() + 60
    while _jobs(user) and time.monotonic() < deadline:
        time.sleep(1)
    assert _jobs(user) == []

"""ipyparallel on the platform: the profiles in each user's home, and engines as SLURM jobs
and as MPI ranks, started from a user's kernel as that user.

The kernel learns the partition as insitu's own setting (``INSITU_COMPUTE__JOBQUEUE__QUEUE``),
which the profiles read; the MPI engines need mpi4py and MPICH in the venv (``scripts/mpi.sh``).
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from insitu.hub.profiles import CONFIG_FILE, PROFILES, profile_text, write_profiles
from tests.integration.hub.client import execute
from tests.integration.hub.conftest import Platform

pytestmark = pytest.mark.slow

NOBODY = 65534
RESULT = "RESULT "


def _owner() -> tuple[int, int]:
    """An account other than ours to own the files (ours when we cannot chown)."""
    return (NOBODY, NOBODY) if os.geteuid() == 0 else (os.getuid(), os.getgid())


def _result(stdout: str) -> object:
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT)]
    assert lines, stdout
    return json.loads(lines[-1][len(RESULT) :])


def _run_in_kernel(platform: Platform, user: str, code: str, timeout: float = 300) -> object:
    hub = platform.hub
    hub.start(user)
    run = execute(platform.base, user, hub.token_for(user), code, timeout=timeout)
    assert run.error is None, f"{run.error}\n{run.stdout}"
    return _result(run.stdout)


def _no_jobs_left(user: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        jobs = subprocess.run(
            ["squeue", "-h", "-u", user, "-o", "%i %j %T"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not jobs or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not jobs, f"jobs of {user} left after the cluster stopped:\n{jobs}"


def test_profiles_are_written_when_missing_and_never_overwritten(tmp_path: Path) -> None:
    uid, gid = _owner()
    home = tmp_path / "home"
    home.mkdir()
    write_profiles(home, uid, gid)
    ipython = home / ".ipython"
    assert (ipython.stat().st_uid, ipython.stat().st_gid) == (uid, gid)
    for name in PROFILES:
        folder = ipython / f"profile_{name}"
        config = folder / CONFIG_FILE
        assert config.read_text() == profile_text(name)
        assert folder.stat().st_uid == uid and config.stat().st_uid == uid
        compile(config.read_text(), str(config), "exec")  # valid Python
    # A user's edits stay; a deleted profile comes back.
    edited = ipython / "profile_slurm" / CONFIG_FILE
    edited.write_text("# mine\n")
    (ipython / "profile_local" / CONFIG_FILE).unlink()
    write_profiles(home, uid, gid)
    assert edited.read_text() == "# mine\n"
    assert (ipython / "profile_local" / CONFIG_FILE).read_text() == profile_text("local")


def test_profiles_are_never_written_through_a_users_symlink(tmp_path: Path) -> None:
    """A user who points ~/.ipython (or a profile folder) elsewhere gets nothing there."""
    uid, gid = _owner()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = elsewhere.stat()
    home = tmp_path / "home"
    home.mkdir()
    (home / ".ipython").symlink_to(elsewhere)
    write_profiles(home, uid, gid)
    assert list(elsewhere.iterdir()) == []
    assert (elsewhere.stat().st_uid, elsewhere.stat().st_gid) == (before.st_uid, before.st_gid)
    # The same one level down: the other profiles are written, the linked one is not.
    other = tmp_path / "other"
    (other / ".ipython").mkdir(parents=True)
    (other / ".ipython" / "profile_mpi").symlink_to(elsewhere)
    write_profiles(other, uid, gid)
    assert list(elsewhere.iterdir()) == []
    assert (other / ".ipython" / "profile_slurm" / CONFIG_FILE).exists()


def test_a_users_home_has_the_profiles_and_each_loads_in_their_kernel(
    platform: Platform, alice: str
) -> None:
    code = f"""
import json, os
import ipyparallel as ipp
found = {{}}
for name in {sorted(PROFILES)!r}:
    cluster = ipp.Cluster(profile=name)
    config = os.path.join(cluster.profile_dir, "ipcluster_config.py")
    found[name] = [cluster.engine_launcher_class.__name__, os.stat(config).st_uid == os.getuid()]
print({RESULT!r} + json.dumps(found))
"""
    found = _run_in_kernel(platform, alice, code)
    assert found == {
        "local": ["LocalEngineSetLauncher", True],
        "mpi": ["SlurmEngineSetLauncher", True],
        "slurm": ["SlurmEngineSetLauncher", True],
        "ssh": ["SSHEngineSetLauncher", True],
    }
    # Seen from outside too: owned by the user, in their home.
    account = pwd.getpwnam(alice)
    for name in PROFILES:
        config = Path(account.pw_dir) / ".ipython" / f"profile_{name}" / CONFIG_FILE
        assert config.stat().st_uid == account.pw_uid, config
        assert config.parent.stat().st_uid == account.pw_uid, config.parent


def test_view_map_on_slurm_engines_runs_as_the_user(
    platform: Platform, alice: str, slurm_partition: str
) -> None:
    code = f"""
import json, os
import ipyparallel as ipp
os.environ["INSITU_COMPUTE__JOBQUEUE__QUEUE"] = {slurm_partition!r}

def where(x):
    import getpass, os
    return [x * x, os.environ.get("SLURM_JOB_ID"), os.environ.get("SLURM_JOB_PARTITION"),
            getpass.getuser()]

cluster = ipp.Cluster(profile="slurm", n=2)
try:
    rc = cluster.start_and_connect_sync()
    rc.wait_for_engines(2, timeout=240)
    out = rc.load_balanced_view().map_sync(where, range(10))
finally:
    cluster.stop_cluster_sync()
print({RESULT!r} + json.dumps(out))
"""
    out = _run_in_kernel(platform, alice, code)
    assert isinstance(out, list)
    assert [row[0] for row in out] == [x * x for x in range(10)]
    job_ids = {row[1] for row in out}
    assert len(job_ids) == 1 and None not in job_ids, job_ids  # one job for the engine set
    assert {row[2] for row in out} == {slurm_partition}
    assert {row[3] for row in out} == {alice}
    _no_jobs_left(alice)


def test_mpi_engines_are_the_ranks_of_one_slurm_job(
    platform: Platform, alice: str, slurm_partition: str
) -> None:
    code = f"""
import json, os
import ipyparallel as ipp
os.environ["INSITU_COMPUTE__JOBQUEUE__QUEUE"] = {slurm_partition!r}
cluster = ipp.Cluster(profile="mpi", n=2)
try:
    rc = cluster.start_and_connect_sync()
    rc.wait_for_engines(2, timeout=240)
    rc[:].activate()
    %pxconfig --block
    %px from mpi4py import MPI; import getpass, os
    %px comm = MPI.COMM_WORLD; total = comm.allreduce(comm.rank + 1)
    %px info = [comm.rank, comm.size, total, os.environ.get("SLURM_JOB_ID"), getpass.getuser()]
    out = rc[:].pull("info", block=True)
finally:
    cluster.stop_cluster_sync()
print({RESULT!r} + json.dumps(out))
"""
    out = _run_in_kernel(platform, alice, code)
    assert isinstance(out, list)
    assert sorted(row[0] for row in out) == [0, 1]  # ranks
    assert {row[1] for row in out} == {2}  # size
    assert {row[2] for row in out} == {1 + 2}  # allreduce(rank + 1)
    job_ids = {row[3] for row in out}
    assert len(job_ids) == 1 and None not in job_ids, job_ids
    assert {row[4] for row in out} == {alice}
    _no_jobs_left(alice)

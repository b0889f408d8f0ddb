"""ipyparallel profiles in each user's home: engines local, over SSH, as SLURM jobs, or MPI.

Before a user's server starts, :func:`write_profiles` puts four profiles in ``~/.ipython``,
each one ``ipcluster_config.py`` that a user starts from a notebook with
``ipp.Cluster(profile=NAME, n=4).start_and_connect_sync()``:

``local``
    engines as processes on this machine, beside the kernel;
``ssh``
    engines on other machines over SSH (the hosts are a commented list the user fills in);
``slurm``
    engines as one SLURM job of ``n`` tasks (``srun``), submitted as the user;
``mpi``
    engines as MPI ranks (mpi4py) of one SLURM job: ``mpiexec -n N`` inside ``sbatch``.

The SLURM profiles read the partition, account and time limit from insitu's settings
(``compute.jobqueue``) when the user's kernel starts a cluster, so they follow the platform's
settings and the user's own. A file is written only when it is missing, so a user's edits
stay; deleting it brings back the current version at the next server start.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

__all__ = ["CONFIG_FILE", "PROFILES", "profile_text", "write_profiles"]

log = logging.getLogger(__name__)

CONFIG_FILE = "ipcluster_config.py"

_HEADER = """\
# ipyparallel profile "{name}", written by insitu because it was missing: edit it freely,
# insitu never overwrites it (delete it to get insitu's current version at your next start).
#
#   import ipyparallel as ipp
#   rc = ipp.Cluster(profile="{name}", n=4).start_and_connect_sync()
#   rc.load_balanced_view().map_sync(f, items)   # or rc[:].activate(), then %px in cells
#
"""

_LOCAL = """\
# Engines run as processes on this machine, beside your kernel.
c = get_config()  # noqa: F821
c.Cluster.engine_launcher_class = "local"
c.Cluster.controller_ip = "127.0.0.1"
"""

_SSH = """\
# Engines run on other machines, started over SSH as you. Before the first use, list the
# hosts below and uncomment the lines: you need SSH without a password to each (a key in
# ~/.ssh) and a Python with ipyparallel there (the same path, on a shared file system).
c = get_config()  # noqa: F821
c.Cluster.engine_launcher_class = "ssh"
# Engines per host ("user@host" and "host:port" work too):
# c.SSHEngineSetLauncher.engines = {"node1": 2, "node2": 2}
# Python on those hosts (default: "python3"); this platform's is:
# c.SSHEngineSetLauncher.remote_python = "@PYTHON@"
# The controller runs beside your kernel; engines elsewhere must reach it, so let it listen
# on every address and tell them this machine's name:
# c.Cluster.controller_ip = "0.0.0.0"
# c.Cluster.controller_location = "this-machine.example.org"
"""

_JOBQUEUE = """\
# Partition, account and time limit: insitu's settings (compute.jobqueue: queue, account,
# walltime), from the platform and your own ~/.config/insitu/insitu.toml.
try:
    from insitu import Settings
except ImportError:  # a kernel without insitu: SLURM's defaults
    jobs = None
else:
    jobs = Settings.load().compute.jobqueue
c = get_config()  # noqa: F821
c.Cluster.engine_launcher_class = "slurm"
# The controller runs beside your kernel and listens on loopback, which engines reach when
# SLURM runs them on this machine. For engines on other nodes, use an address they reach:
#   c.Cluster.controller_ip = "0.0.0.0"; c.Cluster.controller_location = "<this node's name>"
c.Cluster.controller_ip = "127.0.0.1"
c.Cluster.engine_timeout = 300  # seconds to wait for the engines: the job may queue first
# The job script goes in this profile's folder, not in your notebook's.
c.SlurmEngineSetLauncher.batch_file_name = os.path.join(
    os.path.dirname(__file__), "slurm_engine.sbatch"
)
"""

_SLURM = (
    """\
# Engines run as one SLURM job of n tasks (srun), submitted as you; its output goes to
# ~/.ipython/profile_slurm/log/.
import os

"""
    + _JOBQUEUE
    + """\
if jobs is not None:
    c.SlurmEngineSetLauncher.queue = jobs.queue or ""
    c.SlurmEngineSetLauncher.account = jobs.account or ""
    c.SlurmEngineSetLauncher.timelimit = jobs.walltime
"""
)

_MPI = (
    """\
# Engines run as the n ranks of one MPI program (mpi4py's MPI.COMM_WORLD), started by
# mpiexec inside one SLURM job of n tasks, submitted as you; its output goes to
# ~/.ipython/profile_mpi/log/. In the engines: from mpi4py import MPI.
import os
import shlex
import shutil
import sys

"""
    + _JOBQUEUE
    + """\
# MPICH's mpiexec from beside this Python (where scripts/mpi.sh puts it), else the PATH's.
mpiexec = os.path.join(sys.prefix, "bin", "mpiexec")
if not os.path.exists(mpiexec):
    mpiexec = shutil.which("mpiexec") or "mpiexec"
options = []
if jobs is not None:
    options += [f"--partition={jobs.queue}"] if jobs.queue else []
    options += [f"--account={jobs.account}"] if jobs.account else []
    options += [f"--time={jobs.walltime}"]
# {n}, {cluster_id}, {output_file} and {program_and_args} are filled in by ipyparallel.
c.SlurmEngineSetLauncher.batch_template = "\\n".join(
    [
        "#!/bin/sh",
        "#SBATCH --export=ALL",
        "#SBATCH --job-name=ipengine-mpi-{cluster_id}",
        "#SBATCH --ntasks={n}",
        "#SBATCH --output={output_file}",
        *[f"#SBATCH {option}" for option in options],
        f"{shlex.quote(mpiexec)} -n {{n}} {{program_and_args}} --mpi",
        "",
    ]
)
"""
)

PROFILES = {"local": _LOCAL, "ssh": _SSH, "slurm": _SLURM, "mpi": _MPI}
"""Profile name -> body of its ``ipcluster_config.py`` (after a header naming it)."""


def profile_text(name: str) -> str:
    """The ``ipcluster_config.py`` of profile ``name`` (one of :data:`PROFILES`)."""
    return _HEADER.format(name=name) + PROFILES[name].replace("@PYTHON@", sys.executable)


def write_profiles(home: Path, uid: int | None, gid: int | None) -> None:
    """Write the ipyparallel profiles into ``home/.ipython`` when missing.

    Each ``profile_NAME/ipcluster_config.py`` of :data:`PROFILES` that does not exist is
    created, with the folders it needs, owned by ``uid``/``gid`` when given (the hub runs as
    root and writes into users' homes). Existing files are never touched. Nothing is written
    through a symbolic link the user put in place of ``.ipython`` or a profile folder. A
    profile that cannot be written is logged and skipped: it never stops a server's start.
    """
    for name in PROFILES:
        try:
            written = create_missing(
                home, (".ipython", f"profile_{name}"), CONFIG_FILE, profile_text(name), uid, gid
            )
        except OSError as exc:
            log.warning("ipyparallel profile %r not written in %s: %s", name, home, exc)
        else:
            if written:
                log.info("wrote ipyparallel profile %r in %s", name, home)


_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def create_missing(
    home: Path,
    folders: tuple[str, ...],
    filename: str,
    data: str | bytes,
    uid: int | None,
    gid: int | None,
) -> bool:
    """Create ``home/folders.../filename`` with ``data`` unless it exists; True if written.

    Each step opens the next folder relative to the one before, refusing symbolic links
    (O_NOFOLLOW), and ownership is set on the open descriptors: a user who swaps a folder
    for a link to somewhere else gets an error here, never a file or a chown there.
    """
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for folder in folders:
            try:
                os.mkdir(folder, 0o755, dir_fd=fd)
                made = True
            except FileExistsError:
                made = False
            sub = os.open(folder, _OPEN_DIR, dir_fd=fd)
            os.close(fd)
            fd = sub
            if made and uid is not None and gid is not None:
                os.fchown(fd, uid, gid)
        try:
            out = os.open(filename, _CREATE, 0o644, dir_fd=fd)
        except FileExistsError:
            return False
        with os.fdopen(out, "wb") as f:
            if uid is not None and gid is not None:
                os.fchown(f.fileno(), uid, gid)
            f.write(data.encode() if isinstance(data, str) else data)
        return True
    finally:
        os.close(fd)

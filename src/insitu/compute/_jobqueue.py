"""Batch schedulers through dask-jobqueue: each worker is one SLURM/PBS/LSF/SGE job."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

from insitu.compute.backend import ClusterSpec, DaskClusterBackend, worker_env_exports

__all__ = ["LSFBackend", "PBSBackend", "SGEBackend", "SlurmBackend"]


class _JobQueueBackend(DaskClusterBackend):
    """Shared options; subclasses name the dask-jobqueue class."""

    cluster_class: ClassVar[str] = ""
    account_keyword: ClassVar[str] = "account"

    def _make(self, spec: ClusterSpec) -> Any:
        import dask_jobqueue

        opts = dict(spec.options)
        cls = getattr(dask_jobqueue, self.cluster_class)
        interface = opts.get("interface")
        kwargs: dict[str, Any] = {
            "cores": opts.get("cores", 1),
            "processes": 1,
            "memory": opts.get("memory", "2GB"),
            "walltime": opts.get("walltime", "01:00:00"),
            "python": opts.get("python") or sys.executable,
            "scheduler_options": {
                "dashboard_address": spec.dashboard_address,
                **({"interface": interface} if interface else {}),
            },
            "job_extra_directives": list(opts.get("job_extra", [])),
            "job_script_prologue": worker_env_exports(),
        }
        if interface:
            kwargs["interface"] = interface
        if opts.get("log_directory"):
            Path(opts["log_directory"]).mkdir(parents=True, exist_ok=True)
            kwargs["log_directory"] = opts["log_directory"]
        if opts.get("queue"):
            kwargs["queue"] = opts["queue"]
        if opts.get("account"):
            kwargs[self.account_keyword] = opts["account"]
        cluster = cls(**kwargs)
        if spec.workers:
            cluster.scale(jobs=spec.workers)
        return cluster


class SlurmBackend(_JobQueueBackend):
    """Workers as SLURM jobs (``sbatch``)."""

    name: ClassVar[str] = "slurm"
    cluster_class: ClassVar[str] = "SLURMCluster"


class PBSBackend(_JobQueueBackend):
    """Workers as PBS/Torque jobs (``qsub``)."""

    name: ClassVar[str] = "pbs"
    cluster_class: ClassVar[str] = "PBSCluster"


class LSFBackend(_JobQueueBackend):
    """Workers as LSF jobs (``bsub``)."""

    name: ClassVar[str] = "lsf"
    cluster_class: ClassVar[str] = "LSFCluster"
    account_keyword: ClassVar[str] = "project"


class SGEBackend(_JobQueueBackend):
    """Workers as Grid Engine jobs (``qsub``)."""

    name: ClassVar[str] = "sge"
    cluster_class: ClassVar[str] = "SGECluster"
    account_keyword: ClassVar[str] = "project"

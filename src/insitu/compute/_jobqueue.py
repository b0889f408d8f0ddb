"""Batch schedulers through dask-jobqueue: each worker is one SLURM/PBS/LSF/SGE job.

The scheduler (in this process) and the workers (on the compute nodes) listen on the
nodes' network, so they speak TLS only, with credentials made for the cluster
(:func:`~insitu.compute.backend.cluster_security`). dask-jobqueue writes the workers'
copy (CA, certificate, key: files 0600) into ``compute.jobqueue.credentials_directory``,
a 0700 directory of the owner that the compute nodes must see, and the job scripts name
those files (``--tls-ca-file``, ``--tls-cert``, ``--tls-key``); the files go when the
cluster object does. The dashboard listens on this machine's loopback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

from insitu.compute.backend import (
    ClusterSpec,
    DaskClusterBackend,
    check_loopback_dashboard,
    cluster_security,
    owner_directory,
    worker_env_exports,
)
from insitu.errors import ConfigError
from insitu.settings import JobQueueSettings, Settings

__all__ = ["LSFBackend", "PBSBackend", "SGEBackend", "SlurmBackend"]


class _JobQueueBackend(DaskClusterBackend):
    """Shared options; subclasses name the dask-jobqueue class."""

    cluster_class: ClassVar[str] = ""
    account_keyword: ClassVar[str] = "account"
    own_credentials: ClassVar[bool] = True
    option_names: ClassVar[frozenset[str]] = frozenset(JobQueueSettings.model_fields)

    @classmethod
    def options_from_settings(cls, settings: Settings) -> dict[str, Any]:
        """``compute.jobqueue``, its job logs and TLS files under the data directory unless
        it names directories of its own."""
        jobqueue = settings.compute.jobqueue
        options = jobqueue.model_dump()
        options["log_directory"] = jobqueue.log_directory or str(
            settings.data_dir / "logs" / "jobqueue"
        )
        options["credentials_directory"] = jobqueue.credentials_directory or str(
            settings.data_dir / "tls"
        )
        return options

    def _make(self, spec: ClusterSpec) -> Any:
        import dask_jobqueue

        opts = dict(spec.options)
        cls = getattr(dask_jobqueue, self.cluster_class)
        interface = opts.get("interface")
        check_loopback_dashboard(spec.dashboard_address, self.name)
        if not opts.get("credentials_directory"):
            raise ConfigError(
                f"The {self.name} backend needs compute.jobqueue.credentials_directory: a "
                "directory of yours that the compute nodes see, for the workers' TLS files."
            )
        credentials = owner_directory(opts["credentials_directory"])
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
            # In-memory credentials: dask-jobqueue writes the workers' copy into the
            # shared directory and passes the files to 'dask worker' (protocol tls://).
            "security": cluster_security(),
            "shared_temp_directory": str(credentials),
            # The workers' own HTTP servers (metrics, health) stay on loopback too.
            "worker_extra_args": ["--dashboard-address", "127.0.0.1:0"],
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

    def stop(self, handle: Any) -> None:
        """Stop the cluster and delete the workers' copy of its credentials.

        dask-jobqueue keeps that copy as temporary files on the cluster object
        (``_job_ca_file``, ``_job_cert``, ``_job_key``), deleted only when it is collected.
        """
        try:
            super().stop(handle)
        finally:
            for key in ("ca_file", "cert", "key"):
                copy = getattr(handle.cluster, f"_job_{key}", None)
                if copy is not None:
                    copy.close()


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

"""The cluster backend contract (``insitu.testing.ClusterBackendTests``) on real clusters:
local processes, SLURM jobs and Grid Engine jobs on this machine's single-node systems
(``scripts/slurm.sh``, ``scripts/sge.sh``). Never skipped: without SLURM or SGE the
``slurm_partition`` / ``sge_queue`` fixtures start them, or (under ``make test``) the run
stops before any test.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from insitu.compute import ClusterBackend, ClusterSpec, get_backend
from insitu.compute.session import spec_from_settings
from insitu.errors import ConfigError
from insitu.settings import Settings
from insitu.testing import ClusterBackendTests
from insitu.testing.cluster_backend import WorkerProcess


class TestLocalBackend(ClusterBackendTests):
    @pytest.fixture
    def backend(self) -> ClusterBackend:
        return get_backend("local")

    @pytest.fixture
    def spec(self, tmp_path: Path) -> ClusterSpec:
        settings = Settings.load(data_dir=tmp_path, compute={"workers": 1})
        return spec_from_settings(settings, "local", None)


class _BatchBackendTests(ClusterBackendTests):
    """A dask-jobqueue backend: its released workers' jobs are gone from the queue too."""

    name = ""

    def queued_jobs(self) -> set[str]:
        """The ids of every job the batch system lists (any state, any user)."""
        raise NotImplementedError

    def leftovers(self, workers: set[WorkerProcess]) -> list[str]:
        jobs = {w.job for w in workers}
        assert None not in jobs, f"a worker outside a {self.name} job: {workers}"
        listed = sorted(jobs & self.queued_jobs())
        return [*super().leftovers(workers), *(f"{self.name} job {j}" for j in listed)]

    def bad_specs(
        self, spec: ClusterSpec, backend: ClusterBackend
    ) -> list[tuple[ClusterSpec, str]]:
        no_directory = {**spec.options, "credentials_directory": None}
        return [
            *super().bad_specs(spec, backend),
            (replace(spec, options=no_directory), "needs compute.jobqueue.credentials_directory"),
        ]

    @pytest.fixture
    def backend(self) -> ClusterBackend:
        return get_backend(self.name)

    def settings(self, data: Path, queue: str) -> Settings:
        jobqueue = {"queue": queue, "memory": "1GB", "interface": "lo", "walltime": "00:10:00"}
        return Settings.load(data_dir=data, compute={"workers": 1, "jobqueue": jobqueue})


class TestSlurmBackend(_BatchBackendTests):
    name = "slurm"

    @pytest.fixture
    def spec(self, tmp_path: Path, slurm_partition: str) -> ClusterSpec:
        return spec_from_settings(self.settings(tmp_path, slurm_partition), self.name, None)

    def queued_jobs(self) -> set[str]:
        out = subprocess.run(
            ["squeue", "--noheader", "--all", "--format=%i"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return set(out.split())


class TestSGEBackend(_BatchBackendTests):
    name = "sge"

    @pytest.fixture
    def spec(self, tmp_path: Path, sge_queue: str) -> ClusterSpec:
        return spec_from_settings(self.settings(tmp_path, sge_queue), self.name, None)

    def queued_jobs(self) -> set[str]:
        out = subprocess.run(
            ["qstat", "-u", "*"], capture_output=True, text=True, check=True
        ).stdout
        return {line.split()[0] for line in out.splitlines()[2:] if line.strip()}


# Each backend reads its own options from the settings: what used to be one if-chain.


def test_each_backend_reads_its_own_options(tmp_path: Path) -> None:
    settings = Settings.load(
        data_dir=tmp_path,
        compute={
            "workers": 3,
            "threads_per_worker": 2,
            "memory_limit": "2GB",
            "jobqueue": {"queue": "debug", "cores": 2},
            "ssh_hosts": ["a", "b"],
            "ssh_python": "/opt/py/bin/python",
            "gateway_address": "http://127.0.0.1:1",
            "gateway_password": "hidden",
        },
    )
    local = spec_from_settings(settings, "local", None)
    assert (local.workers, local.threads_per_worker, local.memory_limit) == (3, 2, "2GB")
    assert local.options == {}
    assert spec_from_settings(settings, "local", 5).workers == 5
    for name in ("slurm", "pbs", "lsf", "sge"):
        options = spec_from_settings(settings, name, None).options
        assert (options["queue"], options["cores"]) == ("debug", 2)
        assert options["log_directory"] == str(tmp_path / "logs" / "jobqueue")
        assert options["credentials_directory"] == str(tmp_path / "tls")
    ssh = spec_from_settings(settings, "ssh", None).options
    assert ssh == {"hosts": ["a", "b"], "connect_options": {}, "python": "/opt/py/bin/python"}
    gateway = spec_from_settings(settings, "gateway", None).options
    assert gateway["address"] == "http://127.0.0.1:1"
    assert "hidden" not in repr(gateway)  # the password stays a SecretStr
    # A backend object works as well as its name.
    assert spec_from_settings(settings, get_backend("ssh"), None).options == ssh


def test_an_unknown_backend_is_named_with_the_choices(tmp_path: Path) -> None:
    settings = Settings.load(data_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"Unknown compute backend 'yarn'.*gateway.*local.*sge"):
        spec_from_settings(settings, "yarn", None)


def test_only_ssh_cannot_scale() -> None:
    names = ("local", "slurm", "pbs", "lsf", "sge", "ssh", "gateway", "kubernetes")
    backends: dict[str, Any] = {name: get_backend(name) for name in names}
    assert {n for n, b in backends.items() if not b.supports_scale} == {"ssh"}
    assert all(isinstance(b, ClusterBackend) for b in backends.values())

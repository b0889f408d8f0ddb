"""Contract tests every :class:`~insitu.compute.ClusterBackend` must pass.

Subclass :class:`ClusterBackendTests` and provide two fixtures: ``backend`` (the backend)
and ``spec`` (a :class:`~insitu.compute.ClusterSpec` for a small cluster of it, one or two
workers, best made from settings with ``spec_from_settings``)::

    class TestLocalBackend(ClusterBackendTests):
        @pytest.fixture
        def backend(self):
            return get_backend("local")

        @pytest.fixture
        def spec(self, tmp_path):
            settings = Settings.load(data_dir=tmp_path, compute={"workers": 1})
            return spec_from_settings(settings, "local", None)

The suite starts real clusters: a backend whose system is missing fails, it is not
skipped. "Released" means the worker processes on this machine are gone; a backend whose
workers are batch jobs extends :meth:`ClusterBackendTests.leftovers` with the jobs its
batch system still lists (the worker's job id is in :attr:`WorkerProcess.job`), and one
with workers on other machines checks them there.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from insitu.errors import ConfigError

if TYPE_CHECKING:  # imported by the tests that use the suite, not by insitu.testing
    from insitu.compute import ClusterBackend, ClusterHandle, ClusterSpec

__all__ = ["ClusterBackendTests", "WorkerProcess"]

# Where the batch systems put the id of the job a process runs in.
_JOB_VARIABLES = ("SLURM_JOB_ID", "JOB_ID", "PBS_JOBID", "LSB_JOBID")


@dataclass(frozen=True, slots=True)
class WorkerProcess:
    """A worker as it describes itself: its host, its process and its nanny's, its job."""

    host: str
    pid: int
    parent: int
    job: str | None


def _describe() -> WorkerProcess:
    """Run on a worker (by ``client.run``)."""
    job = next((os.environ[v] for v in _JOB_VARIABLES if os.environ.get(v)), None)
    return WorkerProcess(socket.gethostname(), os.getpid(), os.getppid(), job)


def _square(x: int) -> int:
    return x * x


def _start_and_stop(backend: ClusterBackend, spec: ClusterSpec) -> None:
    """Start a cluster and, should it start, stop it again (leave nothing behind)."""
    backend.stop(backend.start(spec))


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


class ClusterBackendTests:
    """Start, compute, scale (where supported), stop, stop again, and refuse bad options."""

    # Seconds to wait for workers to arrive and for a stopped cluster's to go.
    timeout: ClassVar[float] = 120.0

    @pytest.fixture
    def backend(self) -> ClusterBackend:
        raise NotImplementedError("provide a 'backend' fixture: the backend under test")

    @pytest.fixture
    def spec(self) -> ClusterSpec:
        raise NotImplementedError("provide a 'spec' fixture: a small cluster of the backend")

    # -- hooks ------------------------------------------------------------------------

    def leftovers(self, workers: set[WorkerProcess]) -> list[str]:
        """What of ``workers`` still runs: here, their processes on this machine.

        Batch backends add the jobs their system still lists. The nanny of an in-process
        cluster is this process, which is not counted.
        """
        here, me = socket.gethostname(), os.getpid()
        return [
            f"process {pid} of worker {w.pid} on {w.host}"
            for w in workers
            if w.host == here
            for pid in (w.pid, w.parent)
            if pid != me and _alive(pid)
        ]

    def bad_specs(
        self, spec: ClusterSpec, backend: ClusterBackend
    ) -> list[tuple[ClusterSpec, str]]:
        """Specs the backend must refuse with :class:`ConfigError`, and what the message
        says. Extend it with a backend's own."""
        # The message names the option and, where the backend has some, the ones it knows.
        known = "".join(f".*{name}" for name in sorted(spec.options))
        bad = [
            (
                replace(spec, options={**spec.options, "no_such_option": 1}),
                f"(?s)'no_such_option'{known}",
            )
        ]
        if getattr(backend, "own_credentials", False):
            # Reached from other machines: the dashboard (no login) stays on loopback.
            bad.append((replace(spec, dashboard_address="0.0.0.0:0"), "not a loopback address"))
        return bad

    # -- helpers ----------------------------------------------------------------------

    @contextmanager
    def started(self, backend: ClusterBackend, spec: ClusterSpec) -> Iterator[ClusterHandle]:
        """A started cluster, stopped on exit whatever happens."""
        handle = backend.start(spec)
        try:
            yield handle
        finally:
            backend.stop(handle)

    @contextmanager
    def client(self, handle: ClusterHandle, workers: int) -> Iterator[Any]:
        """A client of ``handle``'s cluster once ``workers`` workers are there."""
        from distributed import Client

        # distributed's annotations are partial
        client = Client(handle.cluster, set_as_default=False)  # type: ignore[no-untyped-call]
        try:
            client.wait_for_workers(workers, timeout=self.timeout)
            yield client
        finally:
            client.close()  # type: ignore[no-untyped-call]

    def workers(self, client: Any) -> set[WorkerProcess]:
        """The workers of ``client``'s cluster, as they describe themselves."""
        return set(client.run(_describe).values())

    def wait_until(self, what: str, done: Callable[[], Any]) -> None:
        """Poll ``done`` until it is true, or fail after :attr:`timeout` with ``what``."""
        deadline = time.monotonic() + self.timeout
        while not done():
            assert time.monotonic() < deadline, f"after {self.timeout} s: {what}"
            time.sleep(0.5)

    def assert_released(self, workers: set[WorkerProcess]) -> None:
        """Wait until nothing of ``workers`` runs (jobs may take a moment to end)."""
        assert workers, "no workers to check"
        self.wait_until(
            f"still running: {self.leftovers(workers)}", lambda: not self.leftovers(workers)
        )

    # -- the contract -----------------------------------------------------------------

    def test_start_gives_a_client_that_computes(
        self, backend: ClusterBackend, spec: ClusterSpec
    ) -> None:
        n = spec.workers or 1
        with self.started(backend, spec) as handle, self.client(handle, n) as client:
            assert handle.backend == backend.name
            assert handle.scheduler_address == client.scheduler.address
            futures = client.map(_square, range(10))
            assert sum(client.gather(futures)) == 285
            assert client.submit(sum, range(100)).result(timeout=self.timeout) == 4950
            assert len(self.workers(client)) >= n
            if getattr(backend, "own_credentials", False):
                # Reached from other machines: TLS only, with the cluster's own credentials.
                assert handle.security is not None
                assert handle.scheduler_address.startswith("tls://"), handle.scheduler_address

    def test_scale_up_and_down_or_refuse_clearly(
        self, backend: ClusterBackend, spec: ClusterSpec
    ) -> None:
        n = spec.workers or 1
        with self.started(backend, spec) as handle, self.client(handle, n) as client:
            if not backend.supports_scale:
                with pytest.raises(ConfigError, match=backend.name):
                    backend.scale(handle, n + 1)
                assert len(self.workers(client)) == n  # still running, as it was
                return
            backend.scale(handle, n + 1)
            client.wait_for_workers(n + 1, timeout=self.timeout)
            before = self.workers(client)
            assert len(before) == n + 1
            assert sum(client.gather(client.map(_square, range(10)))) == 285
            backend.scale(handle, 1)
            self.wait_until(
                "the cluster did not scale down to 1 worker",
                lambda: len(client.scheduler_info(n_workers=-1)["workers"]) == 1,
            )
            after = self.workers(client)
            assert len(after) == 1 and after <= before
            self.assert_released(before - after)
            assert client.submit(sum, range(100)).result(timeout=self.timeout) == 4950

    def test_stop_releases_every_worker(self, backend: ClusterBackend, spec: ClusterSpec) -> None:
        n = spec.workers or 1
        with self.started(backend, spec) as handle, self.client(handle, n) as client:
            workers = self.workers(client)
        # started() stopped it on leaving the block
        self.assert_released(workers)

    def test_second_stop_is_harmless(self, backend: ClusterBackend, spec: ClusterSpec) -> None:
        n = spec.workers or 1
        handle = backend.start(spec)
        try:
            with self.client(handle, n) as client:
                workers = self.workers(client)
        finally:
            backend.stop(handle)
        backend.stop(handle)
        self.assert_released(workers)

    def test_bad_options_are_refused_clearly(
        self, backend: ClusterBackend, spec: ClusterSpec
    ) -> None:
        for bad, message in self.bad_specs(spec, backend):
            with pytest.raises(ConfigError, match=message):
                _start_and_stop(backend, bad)

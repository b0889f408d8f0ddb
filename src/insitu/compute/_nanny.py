"""The nanny of insitu's workers: Dask's, with :data:`WORKER_ENV` set before each spawn,
:data:`WORKER_CONFIG` in the configuration it gives its worker, and a quick end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.config
from distributed import Nanny
from distributed.core import Status
from distributed.diskutils import DIR_LOCK_EXT

from insitu.compute.backend import WORKER_ENV, worker_config

__all__ = ["WorkerNanny"]


class WorkerNanny(Nanny):
    """A ``distributed.Nanny`` whose worker processes start with :data:`WORKER_ENV`.

    glibc reads its malloc settings once, at process start, so they must be in the
    environment the nanny spawns its worker with (its pre-spawn environment), not in
    ``env=``, which Dask applies inside the worker once it runs. Being the nanny class,
    this holds for every worker: those of a new cluster, of a scale-up and restarts.

    The worker's Dask configuration is this process's, with :data:`WORKER_CONFIG` over it
    (the nanny hands its configuration to the worker, which applies it over its own).

    A nanny that closes (its cluster stops, or scales down after retiring the worker)
    terminates its worker process rather than asking it to close and waiting for it: the
    worker holds nothing the cluster still needs by then, and a worker process that exits
    by itself spends most of a second tearing its interpreter down (BENCHMARKS.md, "Cold
    `insitu compute`"). The nanny removes the worker's directory as usual, and its lock
    file, which the worker would have removed on its way out.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config = dask.config.merge(self.config, worker_config())
        self.pre_spawn_env.update(WORKER_ENV)
        self.env.update(WORKER_ENV)

    async def kill(self, timeout: float = 5, reason: str = "nanny-kill") -> None:
        worker = self.process
        process = None if worker is None else worker.process
        if self.status != Status.closing or worker is None or process is None:
            await super().kill(timeout=timeout, reason=reason)  # a restart: the worker closes
            return
        directory = worker.worker_dir
        try:
            await process.terminate()
            try:
                await process.join(timeout)
            except TimeoutError:  # in uninterruptible I/O: what Dask's own kill does then
                await process.kill()
                await process.join(timeout)
        except ValueError:
            # The process ended and its exit callback released it (closed, and no longer
            # the worker's) before this could terminate or join it: nothing to wait for.
            if worker.process is process:
                raise
        if directory:  # its exit callback removed the directory itself
            Path(directory + DIR_LOCK_EXT).unlink(missing_ok=True)

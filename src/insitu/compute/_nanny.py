"""The nanny of insitu's workers: Dask's, with :data:`WORKER_ENV` set before each spawn."""

from __future__ import annotations

from typing import Any

from distributed import Nanny

from insitu.compute.backend import WORKER_ENV

__all__ = ["WorkerNanny"]


class WorkerNanny(Nanny):
    """A ``distributed.Nanny`` whose worker processes start with :data:`WORKER_ENV`.

    glibc reads its malloc settings once, at process start, so they must be in the
    environment the nanny spawns its worker with (its pre-spawn environment), not in
    ``env=``, which Dask applies inside the worker once it runs. Being the nanny class,
    this holds for every worker: those of a new cluster, of a scale-up and restarts.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pre_spawn_env.update(WORKER_ENV)
        self.env.update(WORKER_ENV)

"""The nanny of insitu's workers: Dask's, with :data:`WORKER_ENV` set before each spawn and
:data:`WORKER_CONFIG` in the configuration it gives its worker."""

from __future__ import annotations

from typing import Any

import dask.config
from distributed import Nanny

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
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config = dask.config.merge(self.config, worker_config())
        self.pre_spawn_env.update(WORKER_ENV)
        self.env.update(WORKER_ENV)

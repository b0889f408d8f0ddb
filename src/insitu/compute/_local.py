"""Dask ``LocalCluster`` on this machine: one single-threaded worker process per core."""

from __future__ import annotations

import ast
import os
import sys
from typing import Any, ClassVar

from insitu.compute.backend import WORKER_CONFIG, ClusterSpec, DaskClusterBackend
from insitu.errors import ComputeError

__all__ = ["LocalBackend"]


class LocalBackend(DaskClusterBackend):
    """Worker processes on this machine (no threaded HDF5 access), bound to loopback."""

    name: ClassVar[str] = "local"

    def _make(self, spec: ClusterSpec) -> Any:
        import dask.config
        from distributed import LocalCluster

        from insitu.compute._nanny import WorkerNanny

        if dask.config.get("distributed.worker.multiprocessing-method", "spawn") != "fork":
            check_main_guard()

        # The scheduler and the nannies run in this process, beside the workers on the
        # same cores: they take WORKER_CONFIG's quieter housekeeping too (read as they start).
        with dask.config.set(WORKER_CONFIG):
            return LocalCluster(
                n_workers=spec.workers or os.cpu_count() or 1,
                threads_per_worker=spec.threads_per_worker,
                processes=True,
                memory_limit=spec.memory_limit,
                host="127.0.0.1",
                dashboard_address=spec.dashboard_address,
                # Its workers (also those of a later scale-up) start with WORKER_ENV.
                worker_class=WorkerNanny,
            )


def check_main_guard() -> None:
    """Refuse to start worker processes from a script with no ``if __name__ == "__main__":``.

    Worker processes are spawned: each runs the main script's top level again as it starts,
    so a script that starts a cluster there starts one in every worker, and the workers fail
    ("WorkerNanny failed to start"). Interactive sessions, notebooks and ``python -c`` have
    no script and are fine.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec = getattr(main, "__spec__", None)
    if not path or (spec is not None and spec.name.rpartition(".")[2] == "__main__"):
        return  # a package's __main__ is not run again (multiprocessing's rule)
    if os.path.splitext(os.path.basename(path))[0] in ("__main__", "ipython"):
        return
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return  # not Python source we can read: nothing to say
    if not any(_is_main_guard(node) for node in tree.body):
        raise ComputeError(
            f"{path} starts a Dask cluster at its top level. Its worker processes run the "
            "script again as they start, so put the code that starts the cluster (and uses "
            "it) under 'if __name__ == \"__main__\":' at the end of the script."
        )


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    parts = [node.test.left, *node.test.comparators]
    names = [p for p in parts if isinstance(p, ast.Name) and p.id == "__name__"]
    mains = [p for p in parts if isinstance(p, ast.Constant) and p.value == "__main__"]
    return bool(names and mains)

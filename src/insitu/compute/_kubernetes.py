"""Dask clusters on Kubernetes through the dask-kubernetes operator.

insitu writes the ``DaskCluster`` resource itself (from dask-kubernetes'
``make_cluster_spec``), so that its workers get what every other backend's get: the
threads and memory limit of the compute settings, and :data:`WORKER_ENV` through the
nanny's pre-spawn environment. The memory limit is also the worker pods' request and limit,
so Kubernetes places and bounds them as Dask does. Each cluster gets a name of its own
unless the options name one.
"""

from __future__ import annotations

import secrets
from typing import Any, ClassVar

from insitu.compute.backend import (
    PRE_SPAWN_VARIABLE,
    ClusterSpec,
    DaskClusterBackend,
    pre_spawn_environ,
)
from insitu.settings import Settings

__all__ = ["KubernetesBackend", "cluster_resource"]


def cluster_resource(spec: ClusterSpec, name: str) -> dict[str, Any]:
    """The ``DaskCluster`` resource for ``spec``, named ``name``."""
    from dask_kubernetes.operator import make_cluster_spec

    image = spec.options.get("image")  # compute.kubernetes_image; else dask-kubernetes'
    resource: dict[str, Any] = make_cluster_spec(
        name=name,
        n_workers=spec.workers or 1,
        env={PRE_SPAWN_VARIABLE: pre_spawn_environ()},
        **({"image": image} if image else {}),
    )
    (worker,) = resource["spec"]["worker"]["spec"]["containers"]
    worker["args"] += ["--nthreads", str(spec.threads_per_worker)]
    if spec.memory_limit != "auto":
        worker["args"] += ["--memory-limit", spec.memory_limit]
        memory = _quantity(spec.memory_limit)
        worker["resources"] = {"requests": {"memory": memory}, "limits": {"memory": memory}}
    return resource


def _quantity(limit: str) -> str:
    """A Dask memory limit ('4GiB', '4 GB', '4e9') as a Kubernetes quantity, in bytes."""
    from dask.utils import parse_bytes

    return str(parse_bytes(limit))


class KubernetesBackend(DaskClusterBackend):
    """A ``KubeCluster`` (dask-kubernetes operator) made from :func:`cluster_resource`."""

    name: ClassVar[str] = "kubernetes"
    # 'name' (of the DaskCluster) is not a setting: each cluster gets one of its own.
    option_names: ClassVar[frozenset[str]] = frozenset({"image", "namespace", "name"})

    @classmethod
    def options_from_settings(cls, settings: Settings) -> dict[str, Any]:
        """The image and namespace (``compute.kubernetes_*``)."""
        c = settings.compute
        return {"image": c.kubernetes_image, "namespace": c.kubernetes_namespace}

    def _make(self, spec: ClusterSpec) -> Any:
        from dask_kubernetes.operator import KubeCluster

        name = spec.options.get("name") or f"insitu-{secrets.token_hex(4)}"
        return KubeCluster(
            custom_cluster_spec=cluster_resource(spec, name),
            namespace=spec.options.get("namespace"),
            shutdown_on_close=True,
        )

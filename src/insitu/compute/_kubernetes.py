"""Dask clusters on Kubernetes through the dask-kubernetes operator."""

from __future__ import annotations

from typing import Any, ClassVar

from insitu.compute.backend import ClusterSpec, DaskClusterBackend

__all__ = ["KubernetesBackend"]


class KubernetesBackend(DaskClusterBackend):
    """A ``KubeCluster`` whose workers run ``compute.kubernetes_image``."""

    name: ClassVar[str] = "kubernetes"

    def _make(self, spec: ClusterSpec) -> Any:
        from dask_kubernetes.operator import KubeCluster

        return KubeCluster(
            name=spec.options.get("name", "insitu"),
            image=spec.options.get("image", "ghcr.io/dask/dask:latest"),
            n_workers=spec.workers or 1,
            resources={"limits": {"memory": spec.memory_limit}}
            if spec.memory_limit != "auto"
            else None,
        )

"""Compute: named analysis operations on catalog datasets, on Dask clusters of any size."""

from insitu.compute.backend import BACKENDS, ClusterBackend, ClusterHandle, ClusterSpec, get_backend
from insitu.compute.operations import OPERATIONS, Operation, get_operation
from insitu.compute.run import ComputeResult, run
from insitu.compute.session import cluster, running_cluster

__all__ = [
    "BACKENDS",
    "OPERATIONS",
    "ClusterBackend",
    "ClusterHandle",
    "ClusterSpec",
    "ComputeResult",
    "Operation",
    "cluster",
    "get_backend",
    "get_operation",
    "run",
    "running_cluster",
]

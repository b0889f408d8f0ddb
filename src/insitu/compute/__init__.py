"""Compute: named analysis operations on catalog datasets, on Dask clusters of any size."""

from insitu.compute.backend import BACKENDS, ClusterBackend, ClusterHandle, ClusterSpec, get_backend
from insitu.compute.operations import OPERATIONS, NoParams, Operation, get_operation
from insitu.compute.run import ComputeResult, cached_result, in_process, run
from insitu.compute.session import cluster, connect, running_cluster, scale_file, state_file

__all__ = [
    "BACKENDS",
    "OPERATIONS",
    "ClusterBackend",
    "ClusterHandle",
    "ClusterSpec",
    "ComputeResult",
    "NoParams",
    "Operation",
    "cached_result",
    "cluster",
    "connect",
    "get_backend",
    "get_operation",
    "in_process",
    "run",
    "running_cluster",
    "scale_file",
    "state_file",
]

"""The DaskCluster resource the kubernetes backend submits, built without an API server.

No Kubernetes API server can run on the machines this project is tested on (no container
engine), so the backend is not started here; what it would ask the dask-kubernetes
operator for is checked instead.
"""

from __future__ import annotations

import ast

from insitu.compute._kubernetes import cluster_resource
from insitu.compute.backend import PRE_SPAWN_VARIABLE, WORKER_ENV, ClusterSpec
from insitu.compute.session import spec_from_settings
from insitu.settings import Settings


def _worker(resource: dict) -> dict:  # type: ignore[type-arg]
    (container,) = resource["spec"]["worker"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def test_workers_get_the_settings_threads_memory_and_malloc_environment() -> None:
    settings = Settings.load(
        compute={
            "threads_per_worker": 2,
            "memory_limit": "4GiB",
            "kubernetes_image": "registry.example/insitu:1.0",
            "kubernetes_namespace": "climate",
        }
    )
    spec = spec_from_settings(settings, "kubernetes", 3)
    assert spec.options == {"image": "registry.example/insitu:1.0", "namespace": "climate"}
    resource = cluster_resource(spec, "insitu-test")
    assert resource["metadata"]["name"] == "insitu-test"
    assert resource["spec"]["worker"]["replicas"] == 3
    worker = _worker(resource)
    assert worker["image"] == "registry.example/insitu:1.0"
    args = worker["args"]
    assert args[args.index("--nthreads") + 1] == "2"
    assert args[args.index("--memory-limit") + 1] == "4GiB"
    assert worker["resources"] == {
        "requests": {"memory": str(4 * 2**30)},
        "limits": {"memory": str(4 * 2**30)},
    }
    env = {e["name"]: e["value"] for e in worker["env"]}
    assert ast.literal_eval(env[PRE_SPAWN_VARIABLE]) == WORKER_ENV


def test_an_automatic_memory_limit_sets_no_pod_limit() -> None:
    resource = cluster_resource(ClusterSpec(), "insitu-auto")
    worker = _worker(resource)
    assert "--memory-limit" not in worker["args"] and not worker.get("resources")
    assert worker["args"][worker["args"].index("--nthreads") + 1] == "1"
    assert resource["spec"]["worker"]["replicas"] == 1

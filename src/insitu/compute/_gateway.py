"""Per-user clusters from a Dask-Gateway server."""

from __future__ import annotations

from typing import Any, ClassVar

from insitu.compute.backend import ClusterSpec, DaskClusterBackend
from insitu.errors import ConfigError

__all__ = ["GatewayBackend"]


class GatewayBackend(DaskClusterBackend):
    """A new cluster on the gateway at ``compute.gateway_address``."""

    name: ClassVar[str] = "gateway"

    def _make(self, spec: ClusterSpec) -> Any:
        from dask_gateway import Gateway

        address = spec.options.get("address")
        if not address:
            raise ConfigError(
                "The gateway backend needs compute.gateway_address "
                "(INSITU_COMPUTE__GATEWAY_ADDRESS), e.g. http://127.0.0.1:8000/services/dask-gateway."
            )
        gateway = Gateway(address, auth=spec.options.get("auth"))
        cluster = gateway.new_cluster()
        if spec.workers:
            cluster.scale(spec.workers)
        return cluster

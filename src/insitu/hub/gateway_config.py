"""Dask-Gateway's config file for the hub service 'dask-gateway' (see ``insitu.hub.gateway``)."""

from insitu.hub.gateway import configure_gateway
from insitu.settings import Settings

configure_gateway(get_config(), Settings.load())  # type: ignore[name-defined]  # noqa: F821

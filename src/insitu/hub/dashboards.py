"""A user's Dask dashboards, through their own JupyterLab server and so behind the hub.

A gateway cluster's scheduler serves its dashboard on a unix socket in the cluster's folder
that only the cluster's owner can open (:mod:`insitu.hub.dashboard_socket`). This server
extension, loaded in every user's server, proxies it at

    /user/NAME/dask-dashboard/clusters/CLUSTER/status

with jupyter-server-proxy's own proxy handler. The hub lets only the server's owner (and
whoever they share the server with) reach that path, and the server, running as its owner,
can open only its owner's sockets: another user's cluster is simply not found. Dask-Gateway
shows this address as the cluster's dashboard link (the platform sets
``DASK_GATEWAY__PUBLIC_ADDRESS``), so ``cluster.dashboard_link``, the client's repr and
JupyterLab's Dask panel all lead here.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib import parse

__all__ = ["CLUSTERS_ENV", "PREFIX", "socket_path"]

CLUSTERS_ENV = "INSITU_DASK_CLUSTERS_DIR"
# Under the server's base URL; Dask-Gateway's links add "/clusters/NAME/status".
PREFIX = "dask-dashboard"
PATH = f"{PREFIX}/clusters"
SOCKET = "dashboard.sock"
# Dask-Gateway names clusters with uuid4().hex.
_NAME = re.compile(r"[0-9a-f]{32}")


def socket_path(clusters_dir: str, name: str) -> str:
    """Where the dashboard of cluster ``name`` listens."""
    return os.path.join(clusters_dir, name, SOCKET)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "insitu.hub.dashboards"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from dask_labextension.dashboardhandler import DaskDashboardCheckHandler
    from jupyter_server.utils import url_path_join
    from jupyter_server_proxy.handlers import ProxyHandler
    from tornado import web
    from tornado.routing import HostMatches, Rule

    clusters_dir = os.environ.get(CLUSTERS_ENV, "")
    if not clusters_dir:
        serverapp.log.info("insitu: no %s, no Dask dashboards to proxy", CLUSTERS_ENV)
        return
    base_url = serverapp.web_app.settings["base_url"]

    def locate(name: str) -> str:
        if not _NAME.fullmatch(name):
            raise web.HTTPError(404, f"{name!r} is not a Dask-Gateway cluster name")
        path = socket_path(clusters_dir, name)
        try:
            os.stat(path)
        except PermissionError:  # someone else's cluster: it does not exist for us
            raise web.HTTPError(404, f"You have no running cluster named {name}") from None
        except OSError:
            raise web.HTTPError(404, f"You have no running cluster named {name}") from None
        return path

    class DashboardProxy(ProxyHandler):  # type: ignore[misc]
        """jupyter-server-proxy's handler, to the socket of the cluster in the path."""

        def _to(self, name: str) -> None:
            self.unix_socket = locate(name)
            self.proxy_base = f"{PATH}/{name}"

        async def http_get(self, name: str, proxied_path: str) -> Any:
            return await self.proxy(name, proxied_path)

        async def open(self, name: str, proxied_path: str) -> Any:
            self._to(name)
            return await super().proxy_open("localhost", 80, proxied_path)

        def post(self, name: str, proxied_path: str) -> Any:
            return self.proxy(name, proxied_path)

        def put(self, name: str, proxied_path: str) -> Any:
            return self.proxy(name, proxied_path)

        def delete(self, name: str, proxied_path: str) -> Any:
            return self.proxy(name, proxied_path)

        def head(self, name: str, proxied_path: str) -> Any:
            return self.proxy(name, proxied_path)

        def patch(self, name: str, proxied_path: str) -> Any:
            return self.proxy(name, proxied_path)

        def options(self, name: str, proxied_path: str) -> Any:
            return self.proxy(name, proxied_path)

        def proxy(self, name: str, proxied_path: str) -> Any:
            self._to(name)
            return super().proxy("localhost", 80, proxied_path)

    own_link = re.compile(re.escape(url_path_join(base_url, PATH)) + r"/([0-9a-f]{32})/?$")

    class DashboardCheck(DaskDashboardCheckHandler):  # type: ignore[misc]
        """The Dask panel's 'is this a dashboard?' check, which fetches the link from the
        server without the user's login: for our own links it asks the socket instead."""

        @web.authenticated
        async def get(self, url: str) -> None:
            from dask_labextension.dashboardhandler import _normalize_dashboard_link
            from jupyter_server_proxy.unixsock import UnixResolver
            from tornado.simple_httpclient import SimpleAsyncHTTPClient

            link = _normalize_dashboard_link(parse.unquote(url), self.request)
            match = own_link.match(parse.urlparse(link).path)
            if match is None:
                await super().get(url)
                return
            state: dict[str, Any] = {"url": link, "isActive": False, "plots": {}}
            try:
                client = SimpleAsyncHTTPClient(
                    force_instance=True, resolver=UnixResolver(locate(match.group(1)))
                )
                try:
                    reply = await client.fetch("http://localhost/individual-plots.json")
                finally:
                    client.close()
                state |= {"isActive": True, "effectiveUrl": None, "plots": json.loads(reply.body)}
            except Exception as e:  # like the panel's own check: inactive, not an error
                self.log.debug("Dask dashboard %s is not active: %s", link, e)
            self.finish(json.dumps(state))

    handlers = [
        (url_path_join(base_url, PATH, r"(?P<name>[^/]+)(?P<proxied_path>.*)"), DashboardProxy),
        (url_path_join(base_url, "dask/dashboard-check/(?P<url>.+)"), DashboardCheck),
    ]
    # Ahead of dask-labextension's routes (loaded before ours), whose check would answer first.
    router = serverapp.web_app.default_router
    router.rules.insert(0, router.process_rule(Rule(HostMatches(".*$"), handlers)))
    serverapp.log.info("insitu: Dask dashboards of %s proxied at %s", clusters_dir, PATH)

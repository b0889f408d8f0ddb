"""Scheduler preload of the platform's gateway clusters: the dashboard on a unix socket.

Dask's dashboard has no login of its own. On a TCP port, even on loopback, every account of
the machine could open it (and the gateway's proxy would serve it to whoever holds the
cluster's link). The gateway starts each scheduler with this preload and
``INSITU_DASHBOARD_SOCKET`` set to a path in the cluster's own folder (0700, the cluster's
owner's): the dashboard stops listening on TCP and serves that socket (0600) instead, which
only the owner's processes can open. The owner's JupyterLab server reaches it
(:mod:`insitu.hub.dashboards`), so the dashboard is seen through the hub, by its owner.

Only the standard library and tornado here: this runs in every scheduler.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["SOCKET_ENV", "dask_setup"]

SOCKET_ENV = "INSITU_DASHBOARD_SOCKET"


def dask_setup(scheduler: Any) -> None:
    """Move ``scheduler``'s dashboard from its TCP port(s) to the socket named by the
    environment (nothing to do without it)."""
    path = os.environ.get(SOCKET_ENV, "")
    if not path:
        return
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_unix_socket

    # Bound first: should the socket fail, the scheduler fails to start and says why,
    # rather than running with no dashboard or with an open one.
    sock = bind_unix_socket(path, mode=0o600)
    scheduler.http_server.stop()  # no TCP listener any more
    server = HTTPServer(scheduler.http_application)
    server.add_socket(sock)
    # Held by the scheduler (not among its 'services', whose TCP ports clients are told);
    # the socket goes with the cluster's folder when the gateway removes it.
    scheduler.insitu_dashboard_server = server

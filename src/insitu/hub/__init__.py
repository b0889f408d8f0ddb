"""The multi-user platform: JupyterHub next to the data, with the catalog, the data service
and a Dask-Gateway wired in (``insitu up``).

Importing this package loads no JupyterHub: the hub's own config loads it.
"""

from insitu.hub.api import hub_api
from insitu.hub.paths import HubPaths, Ports, isolation
from insitu.hub.platform import (
    PlatformState,
    marked_processes,
    process_alive,
    running,
    start,
    stop,
    wait_ready,
)
from insitu.hub.projects import ProjectRegistry
from insitu.hub.users import (
    Account,
    UserRegistry,
    check_name,
    ensure_unix_account,
    remove_unix_account,
)

__all__ = [
    "Account",
    "HubPaths",
    "PlatformState",
    "Ports",
    "ProjectRegistry",
    "UserRegistry",
    "check_name",
    "ensure_unix_account",
    "hub_api",
    "isolation",
    "marked_processes",
    "process_alive",
    "remove_unix_account",
    "running",
    "start",
    "stop",
    "wait_ready",
]

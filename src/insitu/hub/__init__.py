"""The multi-user platform: JupyterHub next to the data, with the catalog, the data service
and a Dask-Gateway wired in (``insitu up``).

Importing this package loads no JupyterHub: the hub's own config loads it.
"""

from insitu.hub.paths import HubPaths, Ports, isolation
from insitu.hub.platform import PlatformState, marked_processes, running, start, stop, wait_ready
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
    "UserRegistry",
    "check_name",
    "ensure_unix_account",
    "isolation",
    "marked_processes",
    "remove_unix_account",
    "running",
    "start",
    "stop",
    "wait_ready",
]

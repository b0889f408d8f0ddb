"""Access: the data service (HTTP API and web pages) over the catalog and compute.

``insitu serve`` runs :func:`build_app` on uvicorn; tests run it in-process. The app and
FastAPI load on first use: the hub takes :class:`UsageLog` from here at a user's first
spawn, which would otherwise cost it 0.3-1 s with its event loop blocked.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "ACTIVE",
    "API_PREFIX",
    "SCOPES",
    "TOKEN_PREFIX",
    "USE_RESOLUTION",
    "Job",
    "JobStore",
    "Token",
    "TokenStore",
    "UsageLog",
    "build_app",
    "run_processes",
]

if TYPE_CHECKING:
    from insitu.access.app import API_PREFIX, build_app
    from insitu.access.jobstore import ACTIVE, Job, JobStore
    from insitu.access.serve import run_processes
    from insitu.access.tokens import SCOPES, TOKEN_PREFIX, USE_RESOLUTION, Token, TokenStore
    from insitu.access.usage import UsageLog

# Each public name, and the module that defines it (imported when the name is first used).
_LAZY = {
    "API_PREFIX": "app",
    "build_app": "app",
    "ACTIVE": "jobstore",
    "Job": "jobstore",
    "JobStore": "jobstore",
    "SCOPES": "tokens",
    "TOKEN_PREFIX": "tokens",
    "USE_RESOLUTION": "tokens",
    "Token": "tokens",
    "TokenStore": "tokens",
    "UsageLog": "usage",
    "run_processes": "serve",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"insitu.access.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'insitu.access' has no attribute {name!r}")

"""Access: the data service (HTTP API and web pages) over the catalog and compute.

``insitu serve`` runs :func:`build_app` on uvicorn; tests run it in-process. The app and
FastAPI load on first use: the hub imports :mod:`insitu.access.usage` at a user's first
spawn, which would otherwise cost it 0.3-1 s with its event loop blocked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["API_PREFIX", "SCOPES", "Token", "TokenStore", "build_app"]

if TYPE_CHECKING:
    from insitu.access.app import API_PREFIX, build_app
    from insitu.access.tokens import SCOPES, Token, TokenStore


def __getattr__(name: str) -> Any:
    if name in ("API_PREFIX", "build_app"):
        from insitu.access import app

        return getattr(app, name)
    if name in ("SCOPES", "Token", "TokenStore"):
        from insitu.access import tokens

        return getattr(tokens, name)
    raise AttributeError(f"module 'insitu.access' has no attribute {name!r}")

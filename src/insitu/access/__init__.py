"""Access: the data service (HTTP API and web pages) over the catalog and compute.

``insitu serve`` runs :func:`build_app` on uvicorn; tests run it in-process.
"""

from insitu.access.app import API_PREFIX, build_app
from insitu.access.tokens import SCOPES, Token, TokenStore

__all__ = ["API_PREFIX", "SCOPES", "Token", "TokenStore", "build_app"]

"""Calls to the running hub's REST API as the platform's own admin service."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from insitu.errors import BackendUnavailable
from insitu.hub.paths import HubPaths, Ports
from insitu.settings import Settings

__all__ = ["hub_api"]


def hub_api(settings: Settings, method: str, path: str, body: Any = None) -> Any:
    """``METHOD /hub/api/PATH`` on the hub's loopback API; the decoded answer (or None)."""
    token = HubPaths.of(settings).secret("admin_token")
    url = f"http://127.0.0.1:{Ports.of(settings).hub_api}/hub/api/{path.lstrip('/')}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"token {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            raw = r.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404 and method == "DELETE":
            return None
        detail = exc.read().decode(errors="replace")[:300]
        raise BackendUnavailable(f"The hub refused {method} {path}: {exc.code} {detail}") from exc
    except OSError as exc:
        raise BackendUnavailable(f"The hub does not answer at {url}: {exc}") from exc
    return json.loads(raw) if raw else None

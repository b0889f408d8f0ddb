"""Security: every route of a collection refuses callers without its grant.

The routes are enumerated from the app itself, so a route added later is covered without
anyone remembering to add it here; ``_EXAMPLES`` gives a valid value for each path
parameter, and a route whose parameters it does not know fails the test.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.integration.access.conftest import RESTRICTED_IDS, AccessEnv, bearer

_RESTRICTED = RESTRICTED_IDS[0]
_EXAMPLES = {
    "dataset_id": _RESTRICTED,
    "key": "ta/.zarray",
    "path": "ta/.zarray",
}


def _dataset_routes(
    app: FastAPI, examples: dict[str, str] = _EXAMPLES
) -> Iterator[tuple[str, str]]:
    """Every API operation on a dataset (from the OpenAPI spec), and the web dataset page."""
    paths: dict[str, list[str]] = {
        path: [m.upper() for m in ops] for path, ops in app.openapi()["paths"].items()
    }
    paths["/datasets/{dataset_id}"] = ["GET"]
    for template, methods in paths.items():
        if "{dataset_id}" not in template:
            continue
        params = re.findall(r"{(\w+)}", template)
        unknown = [p for p in params if p not in examples]
        assert not unknown, f"add an example value for {unknown} of {template}"
        path = template
        for p in params:
            path = path.replace(f"{{{p}}}", examples[p])
        for method in methods:
            yield method, path


def _shape(response: Any, dataset_id: str) -> tuple[int, str, str]:
    """Status, content type and body of an answer with the dataset id and request id out."""
    text = response.text.replace(dataset_id, "ID").replace(quote(dataset_id, safe=""), "ID")
    text = re.sub(r"[0-9a-f]{16}", "RID", text)
    return response.status_code, response.headers.get("content-type", ""), text


def test_anonymous_callers_cannot_tell_restricted_ids_from_missing_ones(
    app: FastAPI, client: TestClient
) -> None:
    missing = "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn.v20001231"
    routes = list(_dataset_routes(app))
    absent = list(_dataset_routes(app, {**_EXAMPLES, "dataset_id": missing}))
    for (method, path), (_, other) in zip(routes, absent, strict=True):
        restricted = client.request(method, path)
        nothing = client.request(method, other)
        assert restricted.status_code == 404, (method, path, restricted.text)
        assert _shape(restricted, _RESTRICTED) == _shape(nothing, missing), (method, path)
    # A restricted collection's name is as unknown as a made-up one, and not listed.
    for name in ("restricted", "no-such-collection"):
        r = client.get("/api/v1/search", params={"collection": name})
        assert r.status_code == 404 and "restricted" not in r.text.replace(name, "NAME")


def test_dataset_routes_refuse_callers_without_the_grant(
    app: FastAPI, client: TestClient, access_env: AccessEnv
) -> None:
    routes = list(_dataset_routes(app))
    assert len(routes) >= 2
    for method, path in routes:
        anonymous = client.request(method, path)
        assert anonymous.status_code == 404, (method, path, anonymous.text)
        other = client.request(method, path, headers=bearer(access_env.secrets.demo_only))
        assert other.status_code == 403, (method, path, other.text)
        assert "read" in other.text and "restricted" in other.text  # names the grant
        revoked = client.request(method, path, headers=bearer(access_env.secrets.revoked))
        assert revoked.status_code == 401, (method, path, revoked.text)
        granted = client.request(method, path, headers=bearer(access_env.secrets.restricted))
        assert granted.status_code not in (401, 403), (method, path, granted.text)


def test_a_wrong_token_form_is_refused(client: TestClient) -> None:
    for header in ("Basic abc", "Bearer", "ins_nothing"):
        r = client.get("/api/v1/collections", headers={"Authorization": header})
        assert r.status_code == 401, header


def test_a_token_in_the_query_string_is_refused(client: TestClient, access_env: AccessEnv) -> None:
    for secret in (access_env.secrets.everything, "ins_0000_forged"):
        path = f"/api/v1/datasets/{_RESTRICTED}"
        r = client.get(path, params={"token": secret})
        assert r.status_code == 400, r.text
        assert "Authorization: Bearer" in r.json()["error"]["message"]
        page = client.get(f"/datasets/{_RESTRICTED}", params={"token": secret})
        assert page.status_code == 400 and "query string" in page.text


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/datasets/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/datasets/%2e%2e",
        f"/api/v1/zarr/{_RESTRICTED}/..%2F..%2F..%2Fetc%2Fpasswd",
        f"/api/v1/zarr/{_RESTRICTED}/ta/..%2F..%2Fcatalog.db",
        "/api/v1/zarr/..%2F..%2Fetc/passwd",
        "/static/..%2F..%2Fsettings.py",
        "/static/%2e%2e/%2e%2e/errors.py",
    ],
)
def test_path_traversal_gets_404(client: TestClient, access_env: AccessEnv, path: str) -> None:
    r = client.get(path, headers=bearer(access_env.secrets.everything))
    assert r.status_code == 404, r.text
    assert b"root:" not in r.content and b"SQLite format" not in r.content


def test_revocation_takes_effect_at_once(client: TestClient, access_env: AccessEnv) -> None:
    token, secret = access_env.tokens.create("short-lived", collections=["restricted"])
    path = f"/api/v1/datasets/{_RESTRICTED}"
    assert client.get(path, headers=bearer(secret)).status_code == 200
    access_env.tokens.revoke(token.id)
    start = time.monotonic()
    assert client.get(path, headers=bearer(secret)).status_code == 401
    assert time.monotonic() - start < 5


def test_making_a_collection_public_or_private_takes_effect_at_once(
    client: TestClient, access_env: AccessEnv
) -> None:
    path = f"/api/v1/datasets/{_RESTRICTED}"
    assert client.get(path).status_code == 404
    access_env.catalog.set_public("restricted", True)
    try:
        assert client.get(path).status_code == 200
        assert client.get(f"/api/v1/zarr/{_RESTRICTED}/.zmetadata").status_code == 200
    finally:
        access_env.catalog.set_public("restricted", False)
    assert client.get(path).status_code == 404
    assert client.get(f"/api/v1/zarr/{_RESTRICTED}/.zmetadata").status_code == 404

"""The catalog part of the API: collections, search with facet counts, dataset metadata."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.integration.access.conftest import (
    MIROC_AMON_TA,
    RESTRICTED_IDS,
    AccessEnv,
    bearer,
)


def test_openapi_spec_is_served(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/search" in spec["paths"]


def test_collections_show_public_ones_to_anonymous(
    client: TestClient, access_env: AccessEnv
) -> None:
    names = [c["name"] for c in client.get("/api/v1/collections").json()["collections"]]
    assert names == ["demo"]
    everything = bearer(access_env.secrets.everything)
    names = [
        c["name"]
        for c in client.get("/api/v1/collections", headers=everything).json()["collections"]
    ]
    assert names == ["demo", "restricted"]


def test_search_matches_the_catalog_and_counts_facets(
    client: TestClient, access_env: AccessEnv
) -> None:
    body = client.get("/api/v1/search", params={"source_id": "MIROC6", "limit": 5}).json()
    expected = access_env.catalog.search(source_id="MIROC6", collection=["demo"], limit=5)
    assert body["total"] == expected.total > 0
    assert [r["dataset_id"] for r in body["results"]] == expected.dataset_ids
    assert body["facets"]["source_id"] == {"MIROC6": expected.total}
    paged = client.get("/api/v1/search", params={"source_id": "MIROC6", "limit": 2, "offset": 2})
    assert [r["dataset_id"] for r in paged.json()["results"]] == expected.dataset_ids[2:4]


def test_search_hides_restricted_collections(client: TestClient, access_env: AccessEnv) -> None:
    params = {"variable": "ta", "source_id": "MIROC6", "limit": 100}
    anonymous = {
        r["dataset_id"] for r in client.get("/api/v1/search", params=params).json()["results"]
    }
    assert not anonymous & set(RESTRICTED_IDS)
    granted = client.get(
        "/api/v1/search", params=params, headers=bearer(access_env.secrets.restricted)
    ).json()
    # A token adds its collections to the public ones.
    assert {r["dataset_id"] for r in granted["results"]} - anonymous == set(RESTRICTED_IDS)


def test_bad_search_parameters_get_a_clear_400(client: TestClient) -> None:
    r = client.get("/api/v1/search", params={"time": "yesterday/today"})
    assert r.status_code == 400
    assert "yesterday" in r.json()["error"]["message"]
    r = client.get("/api/v1/search", params={"no_such_facet": "x"})
    assert r.status_code == 400
    assert "no_such_facet" in r.json()["error"]["message"]
    assert client.get("/api/v1/search", params={"limit": -1}).status_code == 422


def test_dataset_metadata(client: TestClient, access_env: AccessEnv) -> None:
    body = client.get(f"/api/v1/datasets/{MIROC_AMON_TA}").json()
    files = access_env.catalog.files(MIROC_AMON_TA)
    assert [f["path"] for f in body["files"]] == [f.path for f in files]
    assert body["time"]["steps"] == sum(f.n_times for f in files)
    assert "ta" in [v["name"] for v in body["variables"]]
    assert body["versions"][0]["dataset_id"] == MIROC_AMON_TA


def test_unknown_dataset_is_404_and_restricted_is_404_or_403(
    client: TestClient, access_env: AccessEnv
) -> None:
    r = client.get("/api/v1/datasets/CMIP6.nothing")
    assert r.status_code == 404 and "insitu catalog search" in r.json()["error"]["message"]
    assert client.get(f"/api/v1/datasets/{RESTRICTED_IDS[0]}").status_code == 404
    r = client.get(
        f"/api/v1/datasets/{RESTRICTED_IDS[0]}", headers=bearer(access_env.secrets.demo_only)
    )
    assert r.status_code == 403
    r = client.get(
        f"/api/v1/datasets/{RESTRICTED_IDS[0]}", headers=bearer(access_env.secrets.restricted)
    )
    assert r.status_code == 200


def test_revoked_token_is_refused(client: TestClient, access_env: AccessEnv) -> None:
    r = client.get("/api/v1/collections", headers=bearer(access_env.secrets.revoked))
    assert r.status_code == 401
    assert "revoked" in r.json()["error"]["message"]


def test_api_docs_load_their_assets_from_the_service(client: TestClient) -> None:
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/api/v1/docs-assets/{asset}" in page.text
        assert client.get(f"/api/v1/docs-assets/{asset}").status_code == 200

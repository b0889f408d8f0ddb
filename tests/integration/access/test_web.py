"""The web pages in-process: status codes, facet links, escaping, login, error pages."""

from __future__ import annotations

import re
from html import unescape
from itertools import pairwise
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi.testclient import TestClient

from insitu.access.deps import COOKIE

from .conftest import MIROC_AMON_TA, RESTRICTED_IDS, AccessEnv

HTML = "text/html; charset=utf-8"


def _links(html: str) -> list[str]:
    return [unescape(h) for h in re.findall(r'href="([^"]+)"', html)]


def _count(html: str) -> int:
    match = re.search(r'id="result-count"[^>]*><strong>(\d+)</strong>', html)
    assert match, "the page shows no result count"
    return int(match.group(1))


def test_landing_lists_public_collections_only(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == HTML
    assert "/search?collection=demo" in r.text
    assert "collection=restricted" not in r.text
    assert 'role="search"' in r.text and '<label for="q">' in r.text
    assert "insitu.open_dataset" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]


def test_static_files_are_served_and_nothing_else(client: TestClient) -> None:
    css = client.get("/static/insitu.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get("/static/insitu.js").status_code == 200
    missing = client.get("/static/web.py")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == HTML


def test_search_counts_match_the_api_and_facet_links_add_constraints(
    client: TestClient,
) -> None:
    page = client.get("/search", params={"q": "MIROC6"})
    assert page.status_code == 200
    api = client.get("/api/v1/search", params={"q": "MIROC6"}).json()
    assert _count(page.text) == api["total"] > 0
    # Every value of every facet is a link that adds FACET=VALUE to the current query.
    facet_links = [h for h in _links(page.text) if "table_id=" in h]
    assert facet_links, "no link to filter by table_id"
    link = next(h for h in facet_links if "table_id=Amon" in h)
    query = dict(parse_qsl(urlsplit(link).query))
    assert query == {"q": "MIROC6", "table_id": "Amon"}
    narrowed = client.get(link)
    expected = client.get("/api/v1/search", params=query).json()["total"]
    assert _count(narrowed.text) == expected < api["total"]
    # The selected value can be removed again, back to the text search alone.
    remove = [h for h in _links(narrowed.text) if "table_id" not in h and "q=MIROC6" in h]
    assert "/search?q=MIROC6" in remove


def test_search_page_links_datasets_and_paginates(client: TestClient) -> None:
    page = client.get("/search", params={"limit": 5})
    total = client.get("/api/v1/search").json()["total"]
    assert _count(page.text) == total > 5
    assert len(re.findall(r'href="/datasets/[^"]+"', page.text)) == 5
    nxt = next(h for h in _links(page.text) if "offset=5" in h)
    second = client.get(nxt)
    assert second.status_code == 200 and "Previous page" in second.text


def test_bad_search_input_shows_its_message_with_400(client: TestClient) -> None:
    for params in ({"time": "not-a-date"}, {"limit": "many"}, {"source_id": ""}):
        r = client.get("/search", params=params)
        assert r.status_code == 400, params
        assert r.headers["content-type"] == HTML
        assert 'role="alert"' in r.text
        # The form stays, so the visitor can fix the query.
        assert 'role="search"' in r.text


def test_user_input_is_escaped(client: TestClient) -> None:
    attack = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'
    r = client.get("/search", params={"q": attack, "time": attack})
    assert "<script>alert" not in r.text
    assert "<img src=x" not in r.text
    assert "&lt;script&gt;" in r.text
    r = client.get("/search", params={"source_id": attack})
    assert r.status_code == 200
    assert "<script>alert" not in r.text and "&lt;script&gt;" in r.text
    r = client.get(f"/datasets/{attack}")
    assert r.status_code == 404 and "<script>alert" not in r.text


def test_dataset_page_shows_metadata_quicklooks_and_snippets(client: TestClient) -> None:
    r = client.get(f"/datasets/{MIROC_AMON_TA}")
    assert r.status_code == 200
    text = unescape(r.text)
    for part in ("Air Temperature", "gregorian", "ta_Amon_MIROC6_historical", "<details>"):
        assert part in text
    assert f"/api/v1/datasets/{MIROC_AMON_TA}/quicklook/map.png?variable=ta" in text
    assert f"/api/v1/datasets/{MIROC_AMON_TA}/quicklook/series.png?variable=ta&mean=field" in text
    imgs = re.findall(r"<img [^>]+>", r.text)
    assert len(imgs) == 2
    assert all('alt="' in i and 'width="' in i and 'height="' in i for i in imgs)
    assert f'insitu.open_dataset("{MIROC_AMON_TA}")' in text
    assert "xr.open_zarr(" in text and f"/api/v1/zarr/{MIROC_AMON_TA}" in text
    assert 'service_url = "http://testserver"' in text
    # A public collection: no placeholder token that the service would refuse.
    assert "Bearer <token>" not in text


def test_unknown_dataset_is_a_404_page_with_a_search_link(client: TestClient) -> None:
    r = client.get("/datasets/CMIP6.nothing.here")
    assert r.status_code == 404
    assert r.headers["content-type"] == HTML
    assert 'href="/search"' in r.text and "not in the catalog" in r.text


def test_restricted_dataset_needs_a_login(client: TestClient, access_env: AccessEnv) -> None:
    # Anonymous: the 404 page of a missing dataset, which offers a login for both.
    r = client.get(f"/datasets/{RESTRICTED_IDS[0]}")
    assert r.status_code == 404
    assert r.headers["content-type"] == HTML
    assert "/login?next=" in r.text and "not in the catalog" in r.text
    client.cookies.set(COOKIE, access_env.secrets.demo_only)
    r = client.get(f"/datasets/{RESTRICTED_IDS[0]}")
    assert r.status_code == 403
    assert "demo-reader" in r.text and "Log in with another token" in r.text


def test_login_sets_a_strict_httponly_cookie_and_shows_restricted(
    client: TestClient, access_env: AccessEnv
) -> None:
    assert client.get("/login").status_code == 200
    bad = client.post("/login", data={"token": "nope"})
    assert bad.status_code == 401 and 'role="alert"' in bad.text
    r = client.post(
        "/login",
        data={"token": access_env.secrets.restricted, "next": "/search"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/search"
    cookie = r.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    home = client.get("/")
    assert "/search?collection=restricted" in home.text and "restricted-reader" in home.text
    page = client.get(f"/datasets/{RESTRICTED_IDS[0]}")
    assert page.status_code == 200
    assert "Bearer <token>" in unescape(page.text)
    client.post("/logout")
    assert "collection=restricted" not in client.get("/").text


def test_login_never_redirects_off_site(client: TestClient, access_env: AccessEnv) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        r = client.post(
            "/login",
            data={"token": access_env.secrets.restricted, "next": target},
            follow_redirects=False,
        )
        assert r.headers["location"] == "/", target


def test_a_revoked_cookie_gives_a_401_page_with_a_way_out(
    client: TestClient, access_env: AccessEnv
) -> None:
    client.cookies.set(COOKIE, access_env.secrets.revoked)
    r = client.get("/")
    assert r.status_code == 401
    assert r.headers["content-type"] == HTML
    assert 'href="/logout"' in r.text
    # The login page itself still works, so a new token can replace the bad one.
    assert client.get("/login").status_code == 200


def test_api_errors_stay_json(client: TestClient) -> None:
    r = client.get("/api/v1/datasets/CMIP6.nothing.here")
    assert r.status_code == 404 and r.json()["error"]["type"] == "DatasetNotFound"


def test_pages_load_nothing_from_elsewhere_and_keep_heading_order(client: TestClient) -> None:
    for path in ("/", "/search?q=MIROC6", f"/datasets/{MIROC_AMON_TA}", "/login", "/nope-ds"):
        r = client.get(path if path != "/nope-ds" else "/datasets/nope")
        refs = re.findall(r'(?:src|href|action)="([^"]*)"', r.text)
        assert refs and all(u.startswith(("/", "#", "?")) or u == "" for u in refs), path
        levels = [int(n) for n in re.findall(r"<h([1-6])[ >]", r.text)]
        assert levels[0] == 1 and levels.count(1) == 1, path
        assert all(b - a <= 1 for a, b in pairwise(levels)), (path, levels)


def test_dataset_page_rejects_an_unknown_variable(client: TestClient) -> None:
    r = client.get(f"/datasets/{MIROC_AMON_TA}", params={"variable": "nope"})
    assert r.status_code == 400
    assert "has no data variable 'nope'; it has: ta" in unescape(r.text)


def test_a_mistyped_page_url_is_an_html_404_and_api_paths_stay_json(client: TestClient) -> None:
    page = client.get("/no-such-page")
    assert page.status_code == 404 and page.headers["content-type"] == HTML
    assert "There is no page at /no-such-page" in page.text and 'href="/search"' in page.text
    api = client.get("/api/v1/no-such-route")
    assert api.status_code == 404 and api.json()["error"]["type"] == "HTTPError"


def _snippet(html: str, heading: str) -> str:
    """The code under the snippet heading that starts with ``heading``."""
    part = html.split(f'">{heading}', 1)[1]
    code = re.search(r"<code>(.*?)</code>", part, re.S)
    assert code, heading
    return unescape(code.group(1))


def test_the_notebook_snippets_run_as_printed(live_url: str, access_env: AccessEnv) -> None:
    import httpx

    page = httpx.get(f"{live_url}/datasets/{MIROC_AMON_TA}", timeout=30).text
    remote = _snippet(page, "From anywhere")
    assert f'service_url = "{live_url}"' in remote
    scope: dict[str, Any] = {}
    exec(remote, scope)
    assert scope["ds"]["ta"].shape == (780, 2, 2, 2)
    # A restricted dataset's snippet carries the header; with a real token it opens.
    cookies = {COOKIE: access_env.secrets.restricted}
    page = httpx.get(f"{live_url}/datasets/{RESTRICTED_IDS[0]}", cookies=cookies, timeout=30).text
    remote = _snippet(page, "From anywhere").replace("<token>", access_env.secrets.restricted)
    scope = {}
    exec(remote, scope)
    assert "ta" in scope["ds"]
    assert _snippet(page, "On this platform").startswith("import insitu\n")

"""Tokens in the data service, on SQLite and on PostgreSQL: expiry, last use, signed links,
no tokens in query strings, restricted ids hidden from anonymous callers, and an event loop
that never waits on the database server.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi.testclient import TestClient

from insitu.access import TokenStore, build_app
from insitu.catalog import Catalog
from insitu.settings import Settings
from tests.integration.access.conftest import bearer, free_port

PUBLIC_ID = "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn.v20190311"
SECRET_ID = "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn.v20991231"
MISSING_ID = "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn.v20001231"
_DIR = "CMIP6/CMIP/MIROC/MIROC6/historical/r1i1p1f1/Amon/ta/gn"


@dataclass
class Env:
    settings: Settings
    catalog: Catalog
    tokens: TokenStore
    reader: str  # read on 'priv'
    other: str  # read on 'pub' only
    env: dict[str, str]  # for the CLI on the same databases


def _catalog(root: Path, uri: str, demo_root: Path) -> Env:
    shutil.copytree(demo_root / _DIR / "v20190311", root / "pub" / _DIR / "v20190311")
    shutil.copytree(demo_root / _DIR / "v20190311", root / "priv" / _DIR / "v20991231")
    settings = Settings.load(data_dir=root / "data", catalog={"uri": uri})
    cat = Catalog(settings)
    cat.add_collection("pub", root / "pub", public=True)
    cat.add_collection("priv", root / "priv")
    cat.scan(workers=1)
    tokens = TokenStore.from_uri(uri)
    reader = tokens.create("priv-reader", collections=["priv"])[1]
    other = tokens.create("pub-reader", collections=["pub"])[1]
    env = dict(
        os.environ,
        INSITU_DATA_DIR=str(root / "data"),
        INSITU_CATALOG__URI=uri,
        INSITU_CONFIG=str(root / "none.toml"),
    )
    (root / "none.toml").write_text("")
    return Env(settings, cat, tokens, reader, other, env)


@pytest.fixture(scope="module")
def db(
    module_store_uri: str, tmp_path_factory: pytest.TempPathFactory, demo_root: Path
) -> Iterator[Env]:
    """A small catalog (public 'pub', restricted 'priv') and tokens in one database."""
    e = _catalog(tmp_path_factory.mktemp("tokens"), module_store_uri, demo_root)
    yield e
    e.tokens.close()
    e.catalog.close()


@pytest.fixture(scope="module")
def client(db: Env) -> Iterator[TestClient]:
    with TestClient(build_app(db.settings, catalog=db.catalog, tokens=db.tokens)) as c:
        yield c


def _insitu(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "insitu.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- expiry and last use -------------------------------------------------------------


def test_cli_creates_expiring_tokens_and_lists_expiry_and_last_use(
    db: Env, client: TestClient
) -> None:
    created = _insitu(db.env, "token", "create", "temp", "--collection", "priv", "--expires", "30d")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert "expires 20" in created.stderr
    bad = _insitu(db.env, "token", "create", "x", "--expires", "soon")
    assert bad.returncode != 0 and "'soon' is not a duration" in bad.stderr
    listed = {t["name"]: t for t in json.loads(_insitu(db.env, "token", "list", "--json").stdout)}
    temp = listed["temp"]
    assert temp["expires"] is not None and temp["last_used"] is None and not temp["expired"]
    assert listed["priv-reader"]["expires"] is None

    assert client.get(f"/api/v1/datasets/{SECRET_ID}", headers=bearer(secret)).status_code == 200
    listed = {t["name"]: t for t in json.loads(_insitu(db.env, "token", "list", "--json").stdout)}
    assert listed["temp"]["last_used"] is not None
    text = _insitu(db.env, "token", "list").stdout
    line = next(ln for ln in text.splitlines() if "  temp  " in ln)
    assert "expires 20" in line and "last used 20" in line


def test_an_expired_token_is_refused_with_its_expiry(db: Env, client: TestClient) -> None:
    token, secret = db.tokens.create("brief", collections=["priv"], expires_in=timedelta(seconds=1))
    path = f"/api/v1/datasets/{SECRET_ID}"
    assert client.get(path, headers=bearer(secret)).status_code == 200
    time.sleep(1.2)
    r = client.get(path, headers=bearer(secret))
    assert r.status_code == 401
    message = r.json()["error"]["message"]
    assert "expired on" in message and token.id in message and "insitu token create" in message


# -- anonymous callers -----------------------------------------------------------------


def test_anonymous_callers_get_the_same_404_for_restricted_and_missing(
    client: TestClient, db: Env
) -> None:
    for route in ("/api/v1/datasets/{}", "/api/v1/zarr/{}/.zmetadata", "/datasets/{}"):
        secret, missing = client.get(route.format(SECRET_ID)), client.get(route.format(MISSING_ID))
        assert secret.status_code == missing.status_code == 404, route
        assert secret.headers["content-type"] == missing.headers["content-type"]
        if route.startswith("/api"):
            a, b = secret.json()["error"], missing.json()["error"]
            assert a["type"] == b["type"] and a["message"].replace(SECRET_ID, "X") == b[
                "message"
            ].replace(MISSING_ID, "X")
            assert "not in the catalog" in a["message"]
    # Authenticated without the grant: 403 naming it.
    r = client.get(f"/api/v1/datasets/{SECRET_ID}", headers=bearer(db.other))
    assert r.status_code == 403 and "'read'" in r.text and "'priv'" in r.text


# -- signed links ----------------------------------------------------------------------


def _img_sources(html: str) -> list[str]:
    out = []
    for part in html.split('src="')[1:]:
        src = part.split('"', 1)[0].replace("&amp;", "&")
        if "/quicklook/" in src:
            out.append(src)
    return out


def test_the_dataset_page_links_signed_quicklooks_that_load_without_a_token(
    db: Env, client: TestClient
) -> None:
    page = client.get(f"/datasets/{SECRET_ID}", headers=bearer(db.reader))
    assert page.status_code == 200
    sources = _img_sources(page.text)
    assert len(sources) == 2 and all("signature=" in s for s in sources)
    assert all("token" not in dict(parse_qsl(urlsplit(s).query)) for s in sources)
    with TestClient(client.app) as fresh:  # no header, no cookie
        for src in sources:
            r = fresh.get(src)
            assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    # A public dataset's page needs no signature for an anonymous visitor.
    public = client.get(f"/datasets/{PUBLIC_ID}")
    assert all("signature=" not in s for s in _img_sources(public.text))
    key = db.settings.data_dir / "access" / "url-signing.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def _link(client: TestClient, secret: str, path: str, **body: object) -> Any:
    return client.post("/api/v1/links", json={"path": path, **body}, headers=bearer(secret))


def test_signed_links_are_checked_before_the_first_byte(db: Env, client: TestClient) -> None:
    subset = f"/api/v1/datasets/{SECRET_ID}/subset?variables=ta&time=1990-01&format=csv"
    made = _link(client, db.reader, subset)
    assert made.status_code == 201, made.text
    url = made.json()["url"]
    anonymous = TestClient(client.app)
    ok = anonymous.get(url)
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/csv")

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    tampered = urlencode({**query, "time": "1990-02"})
    r = anonymous.get(f"{parts.path}?{tampered}")
    assert r.status_code == 401 and "signature does not match" in r.json()["error"]["message"]
    # The same signature on another path (the dataset's metadata) is no key to it.
    r = anonymous.get(f"/api/v1/datasets/{SECRET_ID}?{parts.query}")
    assert r.status_code == 401

    short = _link(client, db.reader, subset, expires_in=1).json()["url"]
    time.sleep(2.1)
    r = anonymous.get(short)
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]

    # Refused at signing time: a path that is not for a browser, data not granted, no token.
    assert _link(client, db.reader, f"/api/v1/datasets/{SECRET_ID}").status_code == 400
    assert _link(client, db.other, subset).status_code == 403
    public = subset.replace(SECRET_ID, PUBLIC_ID)
    r = client.post("/api/v1/links", json={"path": public})
    assert r.status_code == 400 and "opens without a link" in r.json()["error"]["message"]
    assert _link(client, db.reader, "https://elsewhere.example/x").status_code == 400


def test_revoking_a_token_kills_its_links(db: Env, client: TestClient) -> None:
    token, secret = db.tokens.create("linker", collections=["priv"])
    url = _link(client, secret, f"/api/v1/datasets/{SECRET_ID}/quicklook/map.png").json()["url"]
    anonymous = TestClient(client.app)
    assert anonymous.get(url).status_code == 200
    db.tokens.revoke(token.id)
    r = anonymous.get(url)
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]


# -- the event loop never waits on the database ------------------------------------------


@pytest.fixture(scope="module")
def pg(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: str, demo_root: Path
) -> Iterator[Env]:
    """The catalog and tokens on a fresh PostgreSQL database (always PostgreSQL)."""
    from tests.conftest import _fresh_postgres_db

    fresh = _fresh_postgres_db(postgres_server)
    uri = next(fresh)
    e = _catalog(tmp_path_factory.mktemp("pg"), uri, demo_root)
    try:
        yield e
    finally:
        e.tokens.close()
        e.catalog.close()
        next(fresh, None)  # drops the database


def test_a_slow_database_round_trip_does_not_stop_other_requests(pg: Env) -> None:
    """While one request's token lookup waits on PostgreSQL (a lock held by another session
    stands for a slow round trip), the server answers other requests."""
    app = build_app(pg.settings, catalog=pg.catalog, tokens=pg.tokens)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    locker = sa.create_engine(pg.settings.catalog_uri)
    try:
        path = f"{base}/api/v1/datasets/{SECRET_ID}"
        assert httpx.get(path, headers=bearer(pg.reader)).status_code == 200  # tables made
        slow: dict[str, object] = {}
        with locker.connect() as conn:
            tx = conn.begin()
            conn.execute(sa.text("LOCK TABLE access_tokens IN ACCESS EXCLUSIVE MODE"))

            def blocked() -> None:
                t0 = time.monotonic()
                r = httpx.get(path, headers=bearer(pg.reader), timeout=60)
                slow.update(status=r.status_code, seconds=time.monotonic() - t0)

            waiter = threading.Thread(target=blocked)
            waiter.start()
            time.sleep(0.5)  # the token lookup is now waiting for the lock
            t0 = time.monotonic()
            other = httpx.get(f"{base}/api/v1/datasets/{PUBLIC_ID}", timeout=5)
            health = httpx.get(f"{base}/api/v1/health", timeout=5)
            answered = time.monotonic() - t0
            assert other.status_code == 200 and health.status_code == 200
            assert answered < 2.0, f"other requests waited {answered:.1f} s"
            assert not slow, "the locked request should still be waiting"
            time.sleep(1.0)
            tx.rollback()
        waiter.join(timeout=30)
        assert slow["status"] == 200 and float(slow["seconds"]) >= 1.4  # type: ignore[arg-type]
    finally:
        locker.dispose()
        server.should_exit = True
        thread.join(timeout=10)

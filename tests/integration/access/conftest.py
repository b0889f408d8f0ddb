"""Fixtures of the data-service tests: a catalog with a public and a restricted collection,
the app in-process, the same app on a real uvicorn server on loopback, and tokens.

``demo`` is the real CMIP6 sample archive, public. ``restricted`` holds a copy of two of
its datasets under a made-up version (so their ids differ) and is readable only with a
token that names it.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from insitu.access import TokenStore, build_app
from insitu.catalog import Catalog
from insitu.settings import Settings

MIROC_AMON_TA = "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn.v20190311"
RESTRICTED_VERSION = "v20991231"
_COPIED = (
    "CMIP6/CMIP/MIROC/MIROC6/historical/r1i1p1f1/Amon/ta/gn/v20190311",
    "CMIP6/CMIP/MIROC/MIROC6/historical/r1i1p1f1/day/ta/gn/v20191016",
)
RESTRICTED_IDS = (
    "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn." + RESTRICTED_VERSION,
    "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.day.ta.gn." + RESTRICTED_VERSION,
)


@dataclass(frozen=True)
class Secrets:
    """Token secrets of the test catalog, by what they grant."""

    everything: str  # read + compute on every collection
    demo_only: str  # read on demo
    restricted: str  # read on restricted
    compute_restricted: str  # read + compute on restricted
    revoked: str  # was read on every collection


@dataclass(frozen=True)
class AccessEnv:
    """The catalog, its settings and token secrets."""

    settings: Settings
    catalog: Catalog
    tokens: TokenStore
    secrets: Secrets


@pytest.fixture(scope="session")
def access_env(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[AccessEnv]:
    """A catalog of the demo archive (public) and a restricted copy of two datasets."""
    tmp = tmp_path_factory.mktemp("access")
    restricted_root = tmp / "restricted"
    for rel in _COPIED:
        dest = restricted_root / rel.rsplit("/", 1)[0] / RESTRICTED_VERSION
        shutil.copytree(demo_root / rel, dest)
    settings = Settings.load(
        data_dir=tmp / "data",
        catalog={"uri": f"sqlite:///{tmp / 'catalog.db'}"},
        access={"max_slice_bytes": 4 * 2**20},
    )
    cat = Catalog(settings)
    cat.add_collection("demo", demo_root, public=True)
    cat.add_collection("restricted", restricted_root)
    cat.scan(workers=2)
    tokens = TokenStore.from_uri(settings.catalog_uri)
    secrets = Secrets(
        everything=tokens.create("everything", scopes=["read", "compute"])[1],
        demo_only=tokens.create("demo-reader", collections=["demo"])[1],
        restricted=tokens.create("restricted-reader", collections=["restricted"])[1],
        compute_restricted=tokens.create(
            "restricted-compute", scopes=["read", "compute"], collections=["restricted"]
        )[1],
        revoked=tokens.create("old")[1],
    )
    tokens.revoke("old")
    yield AccessEnv(settings, cat, tokens, secrets)
    tokens.close()
    cat.close()


@pytest.fixture(scope="session")
def app(access_env: AccessEnv) -> FastAPI:
    """The data service over the test catalog."""
    return build_app(access_env.settings, catalog=access_env.catalog, tokens=access_env.tokens)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """An HTTP client talking to the app in-process."""
    with TestClient(app) as c:
        yield c


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` on a real uvicorn server on 127.0.0.1 while the context lasts; its URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test data service did not start within 30 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_url(app: FastAPI) -> Iterator[str]:
    """The app on a real uvicorn server on 127.0.0.1, for real HTTP clients and browsers."""
    with serving(app) as url:
        yield url


def bearer(secret: str) -> dict[str, str]:
    """Headers that send a token."""
    return {"Authorization": f"Bearer {secret}"}


SMALL_LIMIT = 8 * 1024


@pytest.fixture(scope="module")
def small_limit_client(access_env: AccessEnv) -> Iterator[TestClient]:
    """A client of the same catalog served with a ``max_slice_bytes`` of 8 KiB.

    The demo datasets are all under the test catalog's 4 MiB, so a 413 of a NetCDF subset
    or a series needs a tighter limit.
    """
    access = access_env.settings.access.model_copy(update={"max_slice_bytes": SMALL_LIMIT})
    settings = access_env.settings.model_copy(update={"access": access})
    app = build_app(settings, catalog=access_env.catalog, tokens=access_env.tokens)
    with TestClient(app) as c:
        yield c

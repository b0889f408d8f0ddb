"""Shared fixtures: the demo archive, and SQLite or PostgreSQL catalog stores.

PostgreSQL comes from ``INSITU_TEST_POSTGRES_URI`` if set, else the fixture starts the
project's own server (``scripts/postgres.sh``) on loopback. Tests never skip for want of it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent


def _start(script: str) -> str:
    """Run ``scripts/SCRIPT start`` and return the last line it prints (its address)."""
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / script), "start"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def demo_root() -> Path:
    """Root of the real CMIP6 sample archive (esmvaltool-sample-data), found without import."""
    spec = importlib.util.find_spec("esmvaltool_sample_data")
    assert spec is not None and spec.submodule_search_locations, "pip install '.[demo]'"
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "timeseries"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """URL of a PostgreSQL server for tests; started by the project's script if needed."""
    return os.environ.get("INSITU_TEST_POSTGRES_URI") or _start("postgres.sh")


def _fresh_postgres_db(server: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(server).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty catalog database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        yield from _fresh_postgres_db(request.getfixturevalue("postgres_server"))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_store_uri(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Like ``store_uri``, shared by the tests of one module (for read-only tests)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('cat') / 'catalog.db'}"
    else:
        yield from _fresh_postgres_db(request.getfixturevalue("postgres_server"))


@pytest.fixture(scope="session")
def slurm_partition() -> str:
    """A SLURM partition on this machine; the project's script starts SLURM if needed."""
    return os.environ.get("INSITU_TEST_SLURM_PARTITION") or _start("slurm.sh")


@pytest.fixture(scope="session")
def cdo() -> str:
    """Path of Debian's CDO, installed by the project's script if missing."""
    import shutil

    if shutil.which("cdo") is None:
        subprocess.run(["bash", str(REPO / "scripts" / "tools.sh")], check=True)
    path = shutil.which("cdo")
    assert path, "CDO could not be installed"
    return path

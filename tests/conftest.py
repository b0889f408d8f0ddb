"""Shared fixtures: the demo archive, and SQLite or PostgreSQL catalog stores.

PostgreSQL comes from ``INSITU_TEST_POSTGRES_URI`` if set, else the fixture starts the
project's own server (``scripts/postgres.sh``) on loopback; SLURM and Grid Engine likewise.
Tests never skip for want of a service.

``INSITU_TEST_REQUIRE_SERVICES=1`` (``make test`` sets it) says the services were started
before the run and their addresses given: then a missing address stops the run before any
test (no fixture starts a service of its own), and a test that skips, for any reason, fails.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent

# A catalog opened without a data directory of its own keeps its caches (the saved search
# index) in the default one, which for root is the platform's /var/lib/insitu: the tests'
# default is a directory of this run instead.
if "XDG_DATA_HOME" not in os.environ:
    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="insitu-tests-")
    atexit.register(shutil.rmtree, os.environ["XDG_DATA_HOME"], True)
REQUIRE_SERVICES = os.environ.get("INSITU_TEST_REQUIRE_SERVICES", "") not in ("", "0")
# What 'make test' passes, and who reads it.
SERVICES = {
    "INSITU_TEST_POSTGRES_URI": "postgres_server (tests/conftest.py)",
    "INSITU_TEST_SLURM_PARTITION": "slurm_partition (tests/conftest.py)",
    "INSITU_TEST_SGE_QUEUE": "sge_queue (tests/conftest.py)",
    "INSITU_TEST_GATEWAY_ADDRESS": "gateway (tests/integration/test_gateway.py)",
    "INSITU_TEST_CHROMIUM": "chromium (tests/e2e/conftest.py)",
}


def pytest_configure(config: pytest.Config) -> None:
    """With ``INSITU_TEST_REQUIRE_SERVICES=1``, every service's address must be given."""
    missing = [var for var in SERVICES if not os.environ.get(var)]
    if REQUIRE_SERVICES and missing:
        raise pytest.UsageError(
            f"INSITU_TEST_REQUIRE_SERVICES is set but not {', '.join(missing)}: "
            "'make test' starts the services ('make services') and passes their addresses."
        )


def _no_skips(report: pytest.TestReport | pytest.CollectReport) -> None:
    if REQUIRE_SERVICES and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under INSITU_TEST_REQUIRE_SERVICES=1: {report.longrepr}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A skipped test fails when services are required: it must not pass without them."""
    report = yield
    _no_skips(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """Likewise for a module that skips itself while it is collected (a missing import)."""
    report = yield
    _no_skips(report)
    return report


def _service(var: str, script: str) -> str:
    """The address in ``$VAR``, else the one ``scripts/SCRIPT start`` prints (its last line).

    With ``INSITU_TEST_REQUIRE_SERVICES=1`` the address must be given (see the module doc).
    """
    given = os.environ.get(var)
    if given:
        return given
    if REQUIRE_SERVICES:
        pytest.fail(f"INSITU_TEST_REQUIRE_SERVICES is set but {var} is not.", pytrace=False)
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
    return _service("INSITU_TEST_POSTGRES_URI", "postgres.sh")


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
    return _service("INSITU_TEST_SLURM_PARTITION", "slurm.sh")


@pytest.fixture(scope="session")
def sge_queue() -> str:
    """A Grid Engine queue on this machine; the project's script starts SGE if needed."""
    return _service("INSITU_TEST_SGE_QUEUE", "sge.sh")


@pytest.fixture(scope="session")
def cdo() -> str:
    """Path of Debian's CDO, installed by the project's script if missing."""
    import shutil

    if shutil.which("cdo") is None:
        subprocess.run(["bash", str(REPO / "scripts" / "tools.sh")], check=True)
    path = shutil.which("cdo")
    assert path, "CDO could not be installed"
    return path

"""The platform on PostgreSQL: the hub's database and the catalog, by settings alone.

Users' notebooks get a read-only role's URL for the catalog, never the platform's own.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import _fresh_postgres_db
from tests.integration.hub.client import Hub, execute
from tests.integration.hub.conftest import INSITU, second_platform

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def two_databases(postgres_server: str) -> Iterator[tuple[str, str]]:
    catalog = _fresh_postgres_db(postgres_server)
    hub = _fresh_postgres_db(postgres_server)
    yield next(catalog), next(hub)
    for gen in (catalog, hub):
        next(gen, None)


def test_hub_and_catalog_on_postgresql_with_a_read_only_role_for_notebooks(
    platform_dir: Path, two_databases: tuple[str, str]
) -> None:
    catalog_uri, hub_uri = two_databases
    data, env, first = second_platform(platform_dir, "postgres")
    admin = f"pg-{secrets.token_hex(2)}"
    env |= {
        "INSITU_CATALOG__URI": catalog_uri,
        "INSITU_HUB__DB_URL": hub_uri,
        "INSITU_HUB__ADMIN": admin,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*INSITU, *args], env=env, capture_output=True, text=True)

    # The catalog's tables, with the demo archive.
    assert cli("demo").returncode == 0
    # Without a read-only role for notebooks the platform refuses to start.
    refused = cli("up", "--detach")
    assert refused.returncode == 1
    assert "hub.notebook_catalog_uri" in refused.stderr
    role, password = f"reader_{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    engine = sa.create_engine(catalog_uri, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
        conn.execute(sa.text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
    url = sa.make_url(catalog_uri).set(username=role, password=password)
    env["INSITU_HUB__NOTEBOOK_CATALOG_URI"] = url.render_as_string(hide_password=False)
    try:
        up = cli("up", "--detach")
        assert up.returncode == 0, up.stdout + up.stderr
        with sa.create_engine(hub_uri).connect() as conn:
            users = {r[0] for r in conn.execute(sa.text("SELECT name FROM users"))}
        assert admin in users  # the hub's own tables live in PostgreSQL
        token = (data / "hub" / "admin_token.secret").read_text().strip()
        hub = Hub(f"http://127.0.0.1:{first}", token)
        hub.start(admin)
        code = """
import os, insitu
cat = insitu.Catalog()
print("datasets", cat.search(table_id="Amon").total)
from sqlalchemy import make_url
print("own credentials", make_url(os.environ["INSITU_CATALOG__URI"]).username)
try:
    cat.set_public("demo", False)
    print("write allowed")
except Exception as exc:
    print("write refused", type(exc).__name__)
"""
        run = execute(hub.base, admin, hub.token_for(admin), code)
        assert run.error is None, run.error
        out = dict(line.split(" ", 1) for line in run.stdout.strip().splitlines()[:1])
        assert int(out["datasets"]) > 0
        assert f"own credentials {role}" in run.stdout
        assert "write refused" in run.stdout, run.stdout
    finally:
        cli("down")
        cli("user", "remove", admin, "--delete-home")
        with engine.connect() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        engine.dispose()

"""A running platform for the hub tests: ``insitu up --detach`` as a user runs it.

Each test process gets its own platform (ports, data folder, unix accounts with a random
suffix), so the tests of several pytest-xdist workers do not meet. The data folder is
world-readable, as ``/var/lib/insitu`` is: users' kernels read the catalog from it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.integration.hub.client import Hub

INSITU = [sys.executable, "-m", "insitu.cli"]


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(re.sub(r"\D", "", worker) or 0)


@dataclass
class Platform:
    """A started platform and what the tests need to use it."""

    base: str
    env: dict[str, str]
    data_dir: Path
    admin: str
    admin_password: str
    passwords: dict[str, str] = field(default_factory=dict)
    up_output: str = ""

    def cli(
        self, *args: str, ok: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [*INSITU, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if ok:
            assert out.returncode == 0, f"insitu {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
        return out

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "hub" / "admin_token.secret").read_text().strip()

    @property
    def hub(self) -> Hub:
        return Hub(self.base, self.admin_token)

    @contextmanager
    def web(self, name: str) -> Iterator[httpx.Client]:
        """A browser-like client logged in to the hub as ``name`` (its login form)."""
        with httpx.Client(base_url=self.base, follow_redirects=True, timeout=60) as web:
            web.get("/hub/login")
            xsrf = web.cookies.get("_xsrf")
            r = web.post(
                "/hub/login?next=/hub/home",
                data={"username": name, "password": self.passwords[name], "_xsrf": xsrf},
            )
            assert r.status_code == 200 and r.url.path == "/hub/home", (r.status_code, r.url)
            yield web

    def add_user(self, name: str, *, admin: bool = False) -> str:
        password = secrets.token_urlsafe(12)
        pw_file = self.data_dir / f"{name}.pw"
        pw_file.write_text(password)
        self.cli(
            "user", "add", name, "--password-file", str(pw_file), *(["--admin"] if admin else [])
        )
        pw_file.unlink()
        self.passwords[name] = password
        return password


def platform_env(data_dir: Path, index: int) -> dict[str, str]:
    """The environment of a platform on this worker's own ports (from
    ``INSITU_TEST_HUB_PORT_BASE``, default 18200, 20 ports a worker)."""
    first = int(os.environ.get("INSITU_TEST_HUB_PORT_BASE", "18200")) + 20 * index
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    env |= {
        "INSITU_DATA_DIR": str(data_dir),
        "XDG_CONFIG_HOME": str(data_dir / "config"),
        "INSITU_HUB__PORT": str(first),
        "INSITU_HUB__INTERNAL_PORTS": str(first + 1),
        "INSITU_ACCESS__PORT": str(first + 10),
        "INSITU_HUB__HOME_TEMPLATE": str(data_dir / "home" / "{username}"),
        "INSITU_HUB__IDLE_TIMEOUT": "0",
        "INSITU_HUB__AUTH_CACHE_SECONDS": "2",
        "INSITU_HUB__CLUSTER_MAX_CORES": "3",
        "INSITU_HUB__USER_MAX_CORES": "4",
    }
    return env


@contextmanager
def running_platform(env: dict[str, str], data_dir: Path) -> Iterator[Platform]:
    """The platform ``insitu up --detach`` starts with ``env`` (its port and first admin
    named there), its admin's printed password kept; stopped, and its users removed, after."""
    out = subprocess.run(
        [*INSITU, "up", "--detach"], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, f"insitu up failed:\n{out.stdout}\n{out.stderr}"
    match = re.search(r"with password (\S+)", out.stdout)
    assert match, out.stdout
    p = Platform(
        base=f"http://127.0.0.1:{env['INSITU_HUB__PORT']}",
        env=env,
        data_dir=data_dir,
        admin=env["INSITU_HUB__ADMIN"],
        admin_password=match.group(1),
        up_output=out.stdout,
    )
    p.passwords[p.admin] = p.admin_password
    try:
        yield p
    finally:
        p.cli("down", ok=False)
        for name in list(p.passwords):
            p.cli("user", "remove", name, "--delete-home", ok=False)


def second_platform(platform_dir: Path, name: str) -> tuple[Path, dict[str, str], int]:
    """A data folder, environment and first port for another platform of this worker,
    beside the session's (its ports follow the session platform's block: first + 12 on)."""
    data = platform_dir / name
    data.mkdir()
    data.chmod(0o755)
    env = platform_env(data, _worker_index())
    first = int(env["INSITU_HUB__PORT"]) + 12
    env |= {
        "INSITU_HUB__PORT": str(first),
        "INSITU_HUB__INTERNAL_PORTS": str(first + 1),
        "INSITU_ACCESS__PORT": str(first + 7),
    }
    return data, env, first


@pytest.fixture(scope="session")
def platform_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="insitu-hub-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def platform(platform_dir: Path) -> Iterator[Platform]:
    """A platform started with ``insitu up --detach``, with users ``alice-*`` and ``bob-*``."""
    suffix = secrets.token_hex(2)
    env = platform_env(platform_dir, _worker_index())
    env["INSITU_HUB__ADMIN"] = f"adm-{suffix}"
    with running_platform(env, platform_dir) as p:
        for name in (f"alice-{suffix}", f"bob-{suffix}"):
            p.add_user(name)
        yield p


@pytest.fixture(scope="session")
def alice(platform: Platform) -> str:
    return next(n for n in platform.passwords if n.startswith("alice-"))


@pytest.fixture(scope="session")
def bob(platform: Platform) -> str:
    return next(n for n in platform.passwords if n.startswith("bob-"))

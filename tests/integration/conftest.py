"""Fixtures shared by the integration tests: the project's network-namespace hosts.

Several pytest processes (xdist workers) may use the hosts at once: each registers itself
under a lock, and the last one to leave takes the hosts down.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NETNS = REPO / "scripts" / "netns.sh"


def netns(action: str) -> subprocess.CompletedProcess[str]:
    """``scripts/netns.sh ACTION``."""
    return subprocess.run(
        ["bash", str(NETNS), action], cwd=REPO, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="session")
def netns_hosts() -> Iterator[tuple[list[str], Path]]:
    """The test hosts' addresses and the client key that logs in to them as root."""
    base = Path(os.environ.get("INSITU_NETNS_DIR") or REPO / ".cache" / "netns")
    users = base / "users"
    users.mkdir(parents=True, exist_ok=True)
    me = users / str(os.getpid())
    with (base / "users.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        up = netns("up")
        if up.returncode != 0:
            pytest.fail(f"scripts/netns.sh up failed ({up.returncode}):\n{up.stderr}")
        me.touch()
    hosts = up.stdout.strip().splitlines()[-1].split()
    try:
        yield hosts, base / "id_ed25519"
    finally:
        with (base / "users.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            me.unlink(missing_ok=True)
            if not [u for u in users.iterdir() if Path(f"/proc/{u.name}").exists()]:
                down = netns("down")
                assert down.returncode == 0, down.stderr

"""Project folders: every member reads and writes, nobody else; a hub group of the same name."""

from __future__ import annotations

import grp
import os

import pytest

from tests.integration.hub.client import execute
from tests.integration.hub.conftest import Platform

pytestmark = pytest.mark.slow


def test_members_share_a_project_folder_and_others_cannot_read_it(
    platform: Platform, alice: str, bob: str
) -> None:
    name = f"proj-{alice.split('-')[-1]}"
    out = platform.cli("project", "add", name, "--member", alice, "--member", bob)
    assert name in out.stdout
    try:
        folder = platform.data_dir / "projects" / name
        info = folder.stat()
        assert oct(info.st_mode & 0o7777) == "0o2770"  # setgid: files belong to the group
        assert grp.getgrgid(info.st_gid).gr_name == f"insitu-{name}"
        members = {g["name"]: g["users"] for g in platform.hub.http.get("/groups").json()}
        assert sorted(members[name]) == sorted([alice, bob])

        hub = platform.hub
        for user in (alice, bob, platform.admin):
            hub.stop(user)  # group membership is taken at the server's start
            hub.start(user)
        write = f"""
import pathlib
p = pathlib.Path.home() / "projects" / "{name}" / "notes.txt"
p.write_text("from alice\\n")
print(oct(p.stat().st_mode & 0o777))
"""
        run = execute(platform.base, alice, hub.token_for(alice), write)
        assert run.error is None, run.error
        assert run.stdout.strip() == "0o664"  # umask 002: the project may edit it
        edit = f"""
import pathlib
p = pathlib.Path.home() / "projects" / "{name}" / "notes.txt"
with p.open("a") as f:
    f.write("from bob\\n")
print(p.read_text().replace(chr(10), "|"))
"""
        run = execute(platform.base, bob, hub.token_for(bob), edit)
        assert run.error is None, run.error
        assert run.stdout.strip() == "from alice|from bob|"
        outsider = f"""
import pathlib
try:
    print((pathlib.Path("{folder}") / "notes.txt").read_text())
except PermissionError:
    print("refused")
"""
        run = execute(platform.base, platform.admin, hub.token_for(platform.admin), outsider)
        assert run.error is None, run.error
        assert run.stdout.strip() == "refused"
        # Homes stay private even with umask 002.
        home = os.path.expanduser(f"~{alice}")
        assert os.stat(home).st_mode & 0o777 == 0o700
    finally:
        platform.cli("project", "remove", name, ok=False)
    listing = platform.cli("project", "list").stdout
    assert name not in listing
    assert (platform.data_dir / "projects" / name / "notes.txt").exists()  # files are kept

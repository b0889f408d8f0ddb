"""What the hub does as root in homes their users control: never through a planted link;
never as a system account; never every user as root by accident."""

from __future__ import annotations

from pathlib import Path

import pytest

from insitu.errors import ConfigError, InvalidRequest
from insitu.hub.config import _copy_examples
from insitu.hub.paths import isolation
from insitu.hub.projects import ProjectRegistry, link_projects
from insitu.hub.users import check_name, ensure_unix_account
from insitu.settings import Settings


def test_examples_are_not_written_through_a_planted_link(tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "etc"
    home.mkdir()
    elsewhere.mkdir()
    (home / "examples").symlink_to(elsewhere)
    assert _copy_examples(home, 12345, 12345) is False
    assert list(elsewhere.iterdir()) == []
    assert elsewhere.stat().st_uid == 0


def test_examples_are_copied_into_a_new_folder_of_the_user(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert _copy_examples(home, 12345, 12345) is True
    copied = sorted(p.name for p in (home / "examples").iterdir())
    assert "01-cmip6-global-mean.ipynb" in copied
    assert (home / "examples").stat().st_uid == 12345
    assert all(p.stat().st_uid == 12345 for p in (home / "examples").iterdir())


def test_project_links_are_not_made_through_a_planted_link(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", hub={"isolation": "single", "single_as_root": True}
    )
    ProjectRegistry(settings).add("climate", ["alice"])
    home, elsewhere = tmp_path / "home", tmp_path / "site-packages"
    home.mkdir()
    elsewhere.mkdir()
    (home / "projects").symlink_to(elsewhere)
    link_projects(settings, "alice", home, 12345, 12345)  # logs, does not raise
    assert list(elsewhere.iterdir()) == []
    (home / "projects").unlink()
    link_projects(settings, "alice", home, 12345, 12345)
    link = home / "projects" / "climate"
    assert link.is_symlink() and link.lstat().st_uid == 12345
    assert link.resolve() == (tmp_path / "data" / "projects" / "climate").resolve()


def test_a_hub_user_cannot_be_a_system_account() -> None:
    with pytest.raises(InvalidRequest, match="system account"):
        ensure_unix_account("daemon", Path("/nonexistent"))
    with pytest.raises(InvalidRequest, match="not allowed"):
        check_name("alice\n")


def test_single_isolation_as_root_needs_saying_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="as root"):
        isolation(Settings(data_dir=tmp_path, hub={"isolation": "single"}))
    ok = Settings(data_dir=tmp_path, hub={"isolation": "single", "single_as_root": True})
    assert isolation(ok) == "single"
    assert isolation(Settings(data_dir=tmp_path)) == "users"

"""Project folders: one folder per project that every member can read and write.

A project is a folder under ``hub.projects_dir``, a unix group ``insitu-NAME`` owning it
(mode 2770: new files belong to the group; users' servers run with umask 002, so members
can edit each other's files), a JupyterHub group of the same name (to share a server with
the whole project), and a link ``~/projects/NAME`` in each member's home, made when their
server starts. In 'single' isolation there are no unix groups: the folder is just shared.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from insitu.errors import InvalidRequest, NotFound
from insitu.hub.paths import HubPaths, isolation
from insitu.hub.users import check_name
from insitu.settings import Settings

__all__ = ["Project", "ProjectRegistry", "link_projects", "project_group"]

GROUP_PREFIX = "insitu-"
log = logging.getLogger(__name__)


def project_group(name: str) -> str:
    """The unix group of project ``name``."""
    return f"{GROUP_PREFIX}{name}"


@dataclass(frozen=True)
class Project:
    """A project: its name, folder and members."""

    name: str
    folder: Path
    members: tuple[str, ...]


def _run(cmd: list[str]) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise InvalidRequest(f"{' '.join(cmd)} failed: {out.stderr.strip() or out.stdout}")


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class ProjectRegistry:
    """The projects of a platform (``DATA_DIR/hub/projects.json``) and their folders."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.path = HubPaths.of(settings).root / "projects.json"
        self.root = Path(settings.hub.projects_dir or settings.data_dir / "projects")
        self.users_mode = isolation(settings) == "users"

    def _read(self) -> dict[str, list[str]]:
        try:
            data: dict[str, list[str]] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return data

    def _write(self, data: dict[str, list[str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".projects-")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def projects(self) -> list[Project]:
        return [
            Project(name, self.root / name, tuple(sorted(members)))
            for name, members in sorted(self._read().items())
        ]

    def of_user(self, user: str) -> list[Project]:
        return [p for p in self.projects() if user in p.members]

    def get(self, name: str) -> Project:
        members = self._read().get(name)
        if members is None:
            raise NotFound(f"No project {name!r}. See 'insitu project list'.")
        return Project(name, self.root / name, tuple(sorted(members)))

    def add(self, name: str, members: list[str]) -> Project:
        """Make project ``name`` (or add members to it) and its folder."""
        check_name(name)
        for member in members:
            check_name(member)
        data = self._read()
        data[name] = sorted(set(data.get(name, [])) | set(members))
        self._ensure_folder(name, data[name])
        self._write(data)
        return self.get(name)

    def remove_members(self, name: str, members: list[str]) -> Project:
        data = self._read()
        if name not in data:
            raise NotFound(f"No project {name!r}. See 'insitu project list'.")
        data[name] = sorted(set(data[name]) - set(members))
        if self.users_mode:
            for member in members:
                _run([_tool("gpasswd"), "--delete", member, project_group(name)])
        self._write(data)
        return self.get(name)

    def remove(self, name: str) -> Project:
        """Forget project ``name``; its folder and files stay where they are."""
        project = self.get(name)
        data = self._read()
        del data[name]
        self._write(data)
        if self.users_mode:
            try:
                grp.getgrnam(project_group(name))
            except KeyError:
                pass
            else:
                _run([_tool("groupdel"), project_group(name)])
        return project

    def _ensure_folder(self, name: str, members: list[str]) -> None:
        folder = self.root / name
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        folder.mkdir(exist_ok=True)
        if not self.users_mode:
            os.chmod(folder, 0o775)
            return
        group = project_group(name)
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            _run([_tool("groupadd"), group])
            gid = grp.getgrnam(group).gr_gid
        current = set(grp.getgrnam(group).gr_mem)
        for member in members:
            if member not in current:
                _run([_tool("usermod"), "--append", "--groups", group, member])
        os.chown(folder, 0, gid)
        os.chmod(folder, 0o2770)


def link_projects(
    settings: Settings, user: str, home: Path, uid: int | None, gid: int | None
) -> None:
    """Links ``home/projects/NAME`` to the folders of the user's projects."""
    projects = ProjectRegistry(settings).of_user(user)
    if not projects:
        return
    try:
        _link_into(home, projects, uid, gid)
    except OSError as exc:  # e.g. a link the user put in place of ~/projects: not followed
        log.warning("No project links in %s: %s", home, exc)


def _link_into(home: Path, projects: list[Project], uid: int | None, gid: int | None) -> None:
    """As root in a home its user controls: descriptor-relative, links refused (O_NOFOLLOW),
    ownership set without following anything."""
    home_fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            os.mkdir("projects", 0o755, dir_fd=home_fd)
            made = True
        except FileExistsError:
            made = False
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        base = os.open("projects", flags, dir_fd=home_fd)
    finally:
        os.close(home_fd)
    try:
        if made and uid is not None and gid is not None:
            os.fchown(base, uid, gid)
        for project in projects:
            try:
                os.symlink(project.folder, project.name, dir_fd=base)
            except FileExistsError:
                continue
            if uid is not None and gid is not None:
                os.chown(project.name, uid, gid, dir_fd=base, follow_symlinks=False)
    finally:
        os.close(base)

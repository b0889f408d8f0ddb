"""Walking an archive: every regular file with its size, mtime and identity.

A directory named ``*.zarr`` is a Zarr store: one dataset file, not descended into, whose
size is its files' total and whose mtime is the newest of theirs
(:func:`insitu.formats.stat_dataset`), so a rescan sees a store change like a file's.

Symbolic links to directories are followed (sites link parts of an archive in), but a link
back into its own ancestry is a loop and is reported, not followed. Files reached by
several paths (ESGF ``latest`` links, ``files/`` trees) share one identity (device, inode),
so the scan can keep one path per file; a bad entry reached by several paths (a broken
link inside a directory that ``latest`` points to) is reported once, under its most direct
path. Nothing here raises for a bad entry: each becomes a :class:`WalkProblem`.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from insitu.catalog.models import FileStatus
from insitu.formats import ZARR_SUFFIX, stat_dataset

__all__ = ["Entry", "WalkProblem", "display_name", "walk_archive"]

Identity = tuple[int, int]  # (device, inode)


@dataclass(frozen=True, slots=True)
class Entry:
    """A regular file found under the root."""

    relpath: str
    size: int
    mtime_ns: int
    identity: Identity
    via_link: bool


@dataclass(frozen=True, slots=True)
class WalkProblem:
    """An entry that cannot be indexed, with the reason."""

    relpath: str
    status: FileStatus
    reason: str


def display_name(name: str) -> str:
    """A printable form of a file name that may not be valid UTF-8."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _valid(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _own_identity(entry: os.DirEntry[str]) -> Identity | None:
    """Identity of the entry itself (of a link, not of its target), or None if it vanished."""
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class _Problems:
    """Problems met on the walk, one per bad entry however many paths reach it."""

    def __init__(self) -> None:
        self._by_identity: dict[Identity, tuple[tuple[bool, int, str], WalkProblem]] = {}
        self._other: list[WalkProblem] = []

    def add(self, problem: WalkProblem, identity: Identity | None, linked: bool) -> None:
        """Keep ``problem``, unless the same entry was already met by a more direct path.

        ``identity`` is the entry's own (of a link, not its target); ``linked`` says whether
        its directory was reached through a link (as in ``latest/``), which makes a path less
        direct than one through real directories.
        """
        if identity is None:
            self._other.append(problem)
            return
        rank = (linked, len(problem.relpath), problem.relpath)
        kept = self._by_identity.get(identity)
        if kept is None or rank < kept[0]:
            self._by_identity[identity] = (rank, problem)

    def all(self) -> list[WalkProblem]:
        """Every problem kept, sorted by path."""
        found = self._other + [p for _, p in self._by_identity.values()]
        return sorted(found, key=lambda p: p.relpath)


def walk_archive(root: str) -> tuple[list[Entry], list[WalkProblem]]:
    """Every regular file below ``root`` and every problem met on the way."""
    entries: list[Entry] = []
    problems = _Problems()
    try:
        top = os.stat(root)
    except OSError as exc:
        status = FileStatus.DENIED if exc.errno == errno.EACCES else FileStatus.UNREADABLE
        problems.add(
            WalkProblem(
                ".",
                status,
                f"cannot read the archive root {root!r}: "
                f"{exc.strerror}; check that it exists and is mounted",
            ),
            None,
            False,
        )
        return entries, problems.all()
    top_id = (top.st_dev, top.st_ino)
    # (absolute dir, relative prefix, its identity, identities of it and its ancestors,
    #  reached by link)
    stack: list[tuple[str, str, Identity, frozenset[Identity], bool]] = [
        (root, "", top_id, frozenset({top_id}), False)
    ]
    while stack:
        abs_dir, prefix, dir_id, ancestors, linked = stack.pop()
        here = prefix.rstrip("/") or "."
        try:
            with os.scandir(abs_dir) as it:
                children = list(it)
        except PermissionError:
            problems.add(
                WalkProblem(
                    here,
                    FileStatus.DENIED,
                    "permission denied: cannot list this directory; give the "
                    "scanning user read and execute permission on it",
                ),
                dir_id,
                linked,
            )
            continue
        except OSError as exc:
            problems.add(
                WalkProblem(
                    here, FileStatus.UNREADABLE, f"cannot list this directory: {exc.strerror}"
                ),
                dir_id,
                linked,
            )
            continue
        for child in children:
            name = child.name
            if name.startswith("."):
                continue  # hidden files and transfer leftovers (.file.nc.part)
            rel = prefix + name
            is_link = child.is_symlink()
            via_link = linked or is_link
            if not _valid(name):
                kind = "directory" if _is_dir(child) else "file"
                problems.add(
                    WalkProblem(
                        prefix + display_name(name),
                        FileStatus.BAD_NAME,
                        f"{kind} name is not valid UTF-8 (undecodable bytes shown as \\xNN); "
                        "rename it",
                    ),
                    _own_identity(child),
                    linked,
                )
                continue
            try:
                st = child.stat()  # follows links
            except OSError as exc:
                problems.add(_stat_problem(rel, child, is_link, exc), _own_identity(child), linked)
                continue
            if stat.S_ISDIR(st.st_mode) and name.endswith(ZARR_SUFFIX):
                # A Zarr store is one dataset file: its size is its files', its mtime
                # the newest of theirs; never descended into.
                try:
                    zs = stat_dataset(child.path)
                except OSError as exc:
                    problems.add(
                        _stat_problem(rel, child, is_link, exc), _own_identity(child), linked
                    )
                    continue
                entries.append(
                    Entry(rel, zs.st_size, zs.st_mtime_ns, (st.st_dev, st.st_ino), via_link)
                )
            elif stat.S_ISDIR(st.st_mode):
                ident = (st.st_dev, st.st_ino)
                if ident in ancestors:
                    problems.add(
                        WalkProblem(
                            rel,
                            FileStatus.LOOP,
                            "symbolic link loop: this directory links back to one of its parents; "
                            "remove the link",
                        ),
                        _own_identity(child),
                        linked,
                    )
                    continue
                stack.append((child.path, rel + "/", ident, ancestors | {ident}, via_link))
            elif stat.S_ISREG(st.st_mode):
                entries.append(
                    Entry(rel, st.st_size, st.st_mtime_ns, (st.st_dev, st.st_ino), via_link)
                )
            # Sockets, pipes and devices are not data files: skipped, never opened.
    return entries, problems.all()


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _stat_problem(rel: str, child: os.DirEntry[str], is_link: bool, exc: OSError) -> WalkProblem:
    """Why ``child`` cannot be looked at."""
    if exc.errno == errno.ELOOP:
        return WalkProblem(
            rel,
            FileStatus.LOOP,
            "symbolic link loop: the link leads back to itself (directly or "
            "through other links); remove the link",
        )
    if exc.errno in (errno.ENOENT, errno.ENOTDIR) and is_link:
        try:
            target = os.readlink(child.path)
        except OSError:
            target = "?"
        return WalkProblem(
            rel,
            FileStatus.BROKEN_LINK,
            f"broken symbolic link to {display_name(target)!r}: the target does "
            "not exist; remove the link or restore its target",
        )
    if exc.errno == errno.EACCES:
        return WalkProblem(
            rel,
            FileStatus.DENIED,
            "permission denied: cannot look up this entry; give the scanning "
            "user execute permission on its directory",
        )
    return WalkProblem(rel, FileStatus.UNREADABLE, f"cannot look up this entry: {exc.strerror}")

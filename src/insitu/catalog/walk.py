"""Walking an archive: every regular file with its size, mtime and identity.

Symbolic links to directories are followed (sites link parts of an archive in), but a link
back into its own ancestry is a loop and is reported, not followed. Files reached by
several paths (ESGF ``latest`` links, ``files/`` trees) share one identity (device, inode),
so the scan can keep one path per file. Nothing here raises for a bad entry: each becomes a
:class:`WalkProblem`.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from insitu.catalog.models import FileStatus

__all__ = ["Entry", "WalkProblem", "display_name", "walk_archive"]


@dataclass(frozen=True, slots=True)
class Entry:
    """A regular file found under the root."""

    relpath: str
    size: int
    mtime_ns: int
    identity: tuple[int, int]
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


def walk_archive(root: str) -> tuple[list[Entry], list[WalkProblem]]:
    """Every regular file below ``root`` and every problem met on the way."""
    entries: list[Entry] = []
    problems: list[WalkProblem] = []
    try:
        top = os.stat(root)
    except OSError as exc:
        problems.append(WalkProblem(".", FileStatus.DENIED, f"cannot read the root: {exc}"))
        return entries, problems
    # (absolute dir, relative prefix, identities of the dir and its ancestors, reached by link)
    stack: list[tuple[str, str, frozenset[tuple[int, int]], bool]] = [
        (root, "", frozenset({(top.st_dev, top.st_ino)}), False)
    ]
    while stack:
        abs_dir, prefix, ancestors, linked = stack.pop()
        try:
            with os.scandir(abs_dir) as it:
                children = list(it)
        except PermissionError:
            problems.append(WalkProblem(prefix.rstrip("/") or ".", FileStatus.DENIED,
                                        "permission denied: cannot list this directory"))
            continue
        except OSError as exc:
            problems.append(WalkProblem(prefix.rstrip("/") or ".", FileStatus.UNREADABLE,
                                        f"cannot list this directory: {exc.strerror}"))
            continue
        for child in children:
            name = child.name
            if name.startswith("."):
                continue  # hidden files and transfer leftovers (.file.nc.part)
            rel = prefix + name
            if not _valid(name):
                problems.append(WalkProblem(
                    prefix + display_name(name), FileStatus.BAD_NAME,
                    "file name is not valid UTF-8; rename it"))
                continue
            is_link = child.is_symlink()
            try:
                st = child.stat()  # follows links
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    problems.append(WalkProblem(rel, FileStatus.LOOP,
                                                "symbolic link loop: the link resolves to itself"))
                elif exc.errno == errno.ENOENT and is_link:
                    target = os.readlink(child.path)
                    problems.append(WalkProblem(rel, FileStatus.BROKEN_LINK,
                                                f"broken symbolic link to {target!r}"))
                elif exc.errno == errno.EACCES:
                    problems.append(WalkProblem(rel, FileStatus.DENIED, "permission denied"))
                else:
                    problems.append(WalkProblem(rel, FileStatus.UNREADABLE, str(exc)))
                continue
            if stat.S_ISDIR(st.st_mode):
                ident = (st.st_dev, st.st_ino)
                if ident in ancestors:
                    problems.append(WalkProblem(
                        rel, FileStatus.LOOP,
                        "symbolic link loop: this directory links back to one of its parents"))
                    continue
                stack.append((child.path, rel + "/", ancestors | {ident}, linked or is_link))
            elif stat.S_ISREG(st.st_mode):
                entries.append(Entry(rel, st.st_size, st.st_mtime_ns, (st.st_dev, st.st_ino),
                                     linked or is_link))
    return entries, problems

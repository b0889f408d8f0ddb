"""The gallery: notebooks users publish for everyone on the platform to read.

Published notebooks live in ``DATA_DIR/gallery/AUTHOR/NAME.ipynb``, written by the data
service only (users publish through its API with their hub token; ``insitu publish``), and
readable by every account: each home has a link ``~/gallery`` to the folder, read-only for
users since the service's account owns it. A notebook is checked with nbformat before it is
stored, written whole or not at all, and only its author (or a hub admin) may withdraw it.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from insitu.errors import Forbidden, InvalidRequest, NotFound, TooLarge

__all__ = ["MAX_NOTEBOOK_BYTES", "Gallery", "Published"]

MAX_NOTEBOOK_BYTES = 32 * 2**20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class Published:
    """One published notebook."""

    author: str
    name: str
    title: str
    published: datetime
    size: int


def _check_name(kind: str, value: str) -> str:
    if not _NAME.fullmatch(value) or value.endswith(".ipynb"):
        raise InvalidRequest(
            f"The {kind} {value!r} is not allowed: use letters, digits, '.', '_' or '-' "
            "(1 to 100 characters, starting with a letter or digit, without '.ipynb')."
        )
    return value


def _title(nb: Any, name: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in str(cell.source).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip() or name
    return name


class Gallery:
    """The published notebooks of one platform."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)

    def _path(self, author: str, name: str) -> Path:
        return self.root / _check_name("author", author) / f"{_check_name('name', name)}.ipynb"

    def publish(self, author: str, name: str, content: bytes) -> Published:
        """Store ``content`` (a notebook) as ``author``'s ``name``, replacing an older one."""
        import nbformat

        if len(content) > MAX_NOTEBOOK_BYTES:
            raise TooLarge(
                f"The notebook is {len(content) / 2**20:.1f} MiB; the gallery takes up to "
                f"{MAX_NOTEBOOK_BYTES // 2**20} MiB. Clear large outputs and publish again."
            )
        try:
            nb = nbformat.reads(content.decode("utf-8"), as_version=4)
            nbformat.validate(nb)
        except (UnicodeDecodeError, ValueError, nbformat.ValidationError) as exc:
            raise InvalidRequest(
                f"That is not a valid Jupyter notebook ({type(exc).__name__}: {exc}). "
                "Publish the .ipynb file itself."
            ) from exc
        path = self._path(author, name)
        self.ensure()
        path.parent.mkdir(exist_ok=True)
        os.chmod(path.parent, 0o755)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".publish-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                nbformat.write(nb, f)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self._entry(path, nb)

    def _entry(self, path: Path, nb: Any | None = None) -> Published:
        if nb is None:
            import nbformat

            nb = nbformat.read(path, as_version=4)
        stat = path.stat()
        return Published(
            author=path.parent.name,
            name=path.stem,
            title=_title(nb, path.stem),
            published=datetime.fromtimestamp(stat.st_mtime, UTC),
            size=stat.st_size,
        )

    def entries(self) -> list[Published]:
        """Every published notebook, newest first."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.glob("*/*.ipynb"):
            try:
                found.append(self._entry(path))
            except (OSError, ValueError, json.JSONDecodeError):
                continue  # a file being replaced, or one put there by hand and broken
        return sorted(found, key=lambda p: p.published, reverse=True)

    def read(self, author: str, name: str) -> bytes:
        path = self._path(author, name)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"No notebook {name!r} of {author!r} in the gallery.") from None

    def withdraw(self, author: str, name: str, *, by: str, admin: bool = False) -> None:
        """Remove ``author``'s ``name``; only its author or an admin may."""
        if by != author and not admin:
            raise Forbidden(f"{by} cannot withdraw {author}'s notebook {name!r}: only its author.")
        path = self._path(author, name)
        try:
            path.unlink()
        except FileNotFoundError:
            raise NotFound(f"No notebook {name!r} of {author!r} in the gallery.") from None

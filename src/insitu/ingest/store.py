"""A pipeline's store: the inbox it watches, the raw store and the quarantine.

Layout under the store folder::

    raw/<sha256[:2]>/<sha256>.<ext>            content-addressed, read-only, never removed
    quarantine/<code>/<sha256>/report.json    what went wrong and what to do
    quarantine/resolved/<sha256>/report.json  items a retry ingested, with their retries
    tmp/                                      products being written (emptied by each run)

The state of each raw file is a row of the catalog database (``ingest_items``, through
:class:`~insitu.ingest.registry.Registry`), where the shot records are too, so one
transaction records a product and its raw file's state. The ``ledger.db`` an older version
kept here is taken into it once (then renamed ``ledger.db.imported``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from insitu.errors import IngestError, NotFound
from insitu.ingest.registry import Item, Registry

__all__ = [
    "Candidate",
    "FileChanged",
    "Item",
    "RawStore",
    "candidates",
    "check_manifest",
    "sha256_of",
]

MANIFEST = ".manifest.json"
_BLOCK = 1 << 20


def check_manifest(name: str, sha: str, size: int, manifest: dict[str, Any] | None) -> None:
    """``E_INCOMPLETE`` when the manifest gives another size or hash than the file's."""
    if manifest is None:
        return
    want_sha, want_size = manifest.get("sha256"), manifest.get("size")
    if (want_sha and want_sha != sha) or (want_size is not None and int(want_size) != size):
        raise IngestError(
            "E_INCOMPLETE",
            "secure",
            f"{name} is {size} bytes of hash {sha}; its manifest says {want_size} bytes of "
            f"hash {want_sha}.",
            "The file was cut short or changed after its manifest: copy it again.",
        )


def sha256_of(path: Path) -> str:
    """The sha256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Candidate:
    """An inbox file ready to take, with its manifest if the writer left one."""

    path: Path
    manifest: dict[str, Any] | None


def candidates(
    inbox: Path, pattern: str, stable_seconds: float, now: float | None = None
) -> list[Candidate]:
    """Inbox files that are complete: their manifest exists (written last), or their size
    and mtime have not changed for ``stable_seconds``. Files being written are left."""
    now = time.time() if now is None else now
    found = []
    for entry in sorted(os.scandir(inbox), key=lambda e: e.name) if inbox.is_dir() else []:
        if not entry.is_file() or entry.name.endswith(MANIFEST) or entry.name.startswith("."):
            continue
        if not fnmatch(entry.name, pattern):
            continue
        manifest_path = inbox / (entry.name + MANIFEST)
        if manifest_path.is_file():
            try:
                manifest = json.loads(manifest_path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # being written; the next poll reads it
            found.append(Candidate(Path(entry.path), manifest))
        elif now - entry.stat().st_mtime >= stable_seconds:
            found.append(Candidate(Path(entry.path), None))
    return found


class RawStore:
    """The store of one pipeline (see the module docstring)."""

    def __init__(self, root: Path, registry: Registry) -> None:
        self.root = root
        self.registry = registry
        for sub in ("raw", "quarantine", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        ledger = root / "ledger.db"
        if ledger.exists():  # an older version's: its rows go to the catalog database
            con = sqlite3.connect(ledger)
            try:
                rows = con.execute(
                    "SELECT sha256, name, state, shot, code, product, version, updated FROM items"
                ).fetchall()
            except sqlite3.OperationalError:
                rows = []
            finally:
                con.close()
            registry.import_ledger(rows)
            ledger.replace(root / "ledger.db.imported")

    # -- raw bytes -------------------------------------------------------------------------

    def raw_path(self, sha: str, name: str) -> Path:
        """Where the raw file of hash ``sha`` (named ``name`` when it arrived) is kept."""
        return self.root / "raw" / sha[:2] / (sha + Path(name).suffix.lower())

    def secure(self, path: Path, manifest: dict[str, Any] | None) -> tuple[str, Path]:
        """Copy ``path`` into the raw store, read-only, check the copy's hash and keep its
        manifest beside it. Returns the hash and the raw path. The inbox file stays until
        :meth:`release` (after the ledger knows it), so a kill at any point loses nothing.

        Raises :class:`FileChanged` when the file changed while it was read (the writer
        was not done after all): nothing is kept, and the file is taken once stable again.
        """
        before = path.stat()
        sha = sha256_of(path)
        raw = self.raw_path(sha, path.name)
        if not raw.exists():
            raw.parent.mkdir(parents=True, exist_ok=True)
            part = raw.with_name(raw.name + f".part-{os.getpid()}")
            try:
                _copy_verified(path, part, sha, before)
                os.replace(part, raw)
            except BaseException:  # interrupted too: no partial file is left in raw/
                part.unlink(missing_ok=True)
                raise
        else:
            _check_unchanged(path, before)
        kept = raw.with_name(raw.name + MANIFEST)
        if manifest is not None and not kept.exists():
            _write_json(kept, manifest)
        return sha, raw

    def release(self, path: Path) -> None:
        """Remove a secured inbox file and its manifest."""
        path.unlink(missing_ok=True)
        path.with_name(path.name + MANIFEST).unlink(missing_ok=True)

    def manifest(self, sha: str, name: str) -> dict[str, Any] | None:
        """The manifest raw file ``sha`` came with, if any."""
        kept = self.raw_path(sha, name)
        kept = kept.with_name(kept.name + MANIFEST)
        if not kept.exists():
            return None
        found: dict[str, Any] = json.loads(kept.read_text())
        return found

    # -- item states (rows of the catalog database) ---------------------------------------

    def item(self, sha: str) -> Item | None:
        """The state of raw file ``sha``."""
        return self.registry.item(sha)

    def items(self, state: str | None = None) -> list[Item]:
        """Raw files, oldest change first (of one state if given)."""
        return self.registry.items(state)

    def ingested_shot(self, shot: str) -> Item | None:
        """The ingested raw file of shot ``shot``, if any."""
        return self.registry.ingested_shot(shot)

    def record(self, item: Item) -> None:
        """Insert or replace the state of a raw file."""
        self.registry.record(item)

    # -- quarantine ------------------------------------------------------------------------

    def quarantine(self, sha: str, name: str, raw: Path, exc: IngestError) -> Path:
        """Write the report of ``exc`` for raw file ``sha`` (keeping earlier retries)."""
        retries: list[Any] = []
        for old in self.root.glob(f"quarantine/*/{sha}/report.json"):
            retries = json.loads(old.read_text()).get("retries", [])
            shutil.rmtree(old.parent)
        folder = self.root / "quarantine" / exc.code / sha
        folder.mkdir(parents=True, exist_ok=True)
        report = {
            "code": exc.code,
            "stage": exc.stage,
            "message": exc.detail,
            "exception": type(exc.__cause__ or exc).__name__,
            "suggested_action": exc.action,
            "sha256": sha,
            "file": name,
            "raw": str(raw),
            "at": now_iso(),
            "retries": retries,
        }
        _write_json(folder / "report.json", report)
        return folder / "report.json"

    def report(self, sha: str) -> dict[str, Any]:
        """The quarantine report of ``sha`` (``NotFound`` if it is not quarantined)."""
        for path in self.root.glob(f"quarantine/*/{sha}*/report.json"):
            if path.parent.parent.name != "resolved":
                report: dict[str, Any] = json.loads(path.read_text())
                return report
        raise NotFound(
            f"No quarantined item {sha!r}; 'insitu ingest quarantine PIPELINE' lists them."
        )

    def resolve(self, sha: str, retry: dict[str, Any]) -> None:
        """Move ``sha``'s report to ``quarantine/resolved`` with ``retry`` recorded."""
        for path in self.root.glob(f"quarantine/*/{sha}/report.json"):
            if path.parent.parent.name == "resolved":
                continue
            report = json.loads(path.read_text())
            report.setdefault("retries", []).append(retry)
            target = self.root / "quarantine" / "resolved" / sha
            target.mkdir(parents=True, exist_ok=True)
            _write_json(target / "report.json", report)
            shutil.rmtree(path.parent)

    def add_retry(self, sha: str, retry: dict[str, Any]) -> None:
        """Record a retry that failed again in ``sha``'s current report."""
        for path in self.root.glob(f"quarantine/*/{sha}/report.json"):
            if path.parent.parent.name != "resolved":
                report = json.loads(path.read_text())
                report.setdefault("retries", []).append(retry)
                _write_json(path, report)


class FileChanged(Exception):
    """An inbox file changed while it was being secured: it is not complete yet."""


def _check_unchanged(path: Path, before: os.stat_result) -> None:
    after = path.stat()
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise FileChanged(
            f"{path.name} changed while it was read ({before.st_size} bytes, "
            f"now {after.st_size}); taken once stable"
        )


def _copy_verified(path: Path, part: Path, sha: str, before: os.stat_result) -> None:
    """Copy ``path`` to ``part``, read-only, checking the copy hashes to ``sha`` and the
    source did not change meanwhile."""
    shutil.copyfile(path, part)
    copied = sha256_of(part)
    _check_unchanged(path, before)
    if copied != sha:
        raise OSError(f"copy of {path} to {part} does not hash to {sha}; disk fault?")
    os.chmod(part, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def now_iso() -> str:
    """Now, UTC, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(data, indent=2, default=str))
    os.replace(part, path)

"""Workflows an operator published for the data service to run as server-side jobs.

A server-side run executes the workflow's code as the data service's own account, next to
the data and with the service's rights. So the service runs only what an operator chose:
``insitu workflow publish DIR --name NAME`` checks the workflow, copies its
``workflow.yaml`` and the components it uses into ``WORKFLOWS_DIR/NAME`` (a folder of the
service, which the users' later edits of their own copy do not reach) and records in the
catalog database the name, the workflow's hash and a digest of every copied file. Before
each run the service checks that digest again: a published folder changed afterwards is
refused (:class:`~insitu.errors.Conflict`) until an operator publishes it again. Users with
the ``workflows`` scope (the hub's users have it) choose a published workflow and its
parameter values; they cannot send code.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from insitu import db
from insitu.errors import Conflict, InvalidRequest, NotFound
from insitu.workflows.runs import workflows_root
from insitu.workflows.workflow import Workflow, load_workflow

if TYPE_CHECKING:
    from insitu.settings import Settings

__all__ = ["PublishedWorkflow", "PublishedWorkflows", "published_t"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SKIP = {"runs", ".cache", "__pycache__"}

published_t = sa.Table(
    "workflow_published",
    db.metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("workflow_hash", sa.String(64), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("directory", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("published", sa.String(40), nullable=False),
    sa.Column("published_by", sa.String(200), nullable=False),
)


@dataclass(frozen=True)
class PublishedWorkflow:
    """One published workflow as recorded."""

    name: str
    workflow_hash: str
    digest: str
    directory: Path
    source: str
    description: str
    published: str
    published_by: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "workflow_hash": self.workflow_hash,
            "description": self.description,
            "published": self.published,
            "published_by": self.published_by,
        }


def _files(directory: Path) -> list[Path]:
    """The files of a published folder that its runs depend on (not runs/ or the cache)."""
    found = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if (rel.parts and rel.parts[0] in _SKIP) or "__pycache__" in rel.parts:
            continue
        if path.is_file():
            found.append(path)
    return found


def folder_digest(directory: Path) -> str:
    """sha256 over the names and contents of :func:`_files`."""
    h = hashlib.sha256()
    for path in _files(directory):
        h.update(str(path.relative_to(directory)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _copy_workflow(wf: Workflow, target: Path) -> None:
    """workflow.yaml and each node's component folder, at the same relative places."""
    (target / "workflow.yaml").write_bytes((wf.directory / "workflow.yaml").read_bytes())
    for nid in sorted(wf.nodes):
        source = wf.component_dir(nid)
        rel = Path(os.path.relpath(source, wf.directory.resolve()))
        if rel.parts and rel.parts[0] == "..":
            raise InvalidRequest(
                f"node {nid!r} uses component {str(source)!r}, outside the workflow's folder "
                f"{str(wf.directory)!r}; copy the component into that folder (as "
                "'insitu workflow from-notebook' does) and point the node at it"
            )
        dest = target / rel
        if not dest.exists():
            shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__"))


class PublishedWorkflows:
    """The published workflows of the catalog database at ``uri``, their folders under
    ``root``."""

    def __init__(self, uri: str, root: Path) -> None:
        self.root = root
        self.engine: Engine = db.opened(uri)

    @classmethod
    def from_settings(cls, settings: Settings) -> PublishedWorkflows:
        return cls(settings.catalog_uri, workflows_root(settings))

    def close(self) -> None:
        db.release(self.engine)

    def __enter__(self) -> PublishedWorkflows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def publish(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        *,
        description: str = "",
        replace: bool = False,
        by: str | None = None,
    ) -> PublishedWorkflow:
        """Check the workflow at ``path`` (a folder or its workflow.yaml), copy it to
        ``root/name`` and record it; Conflict if ``name`` is taken (``replace`` to
        publish a new version over it: the old folder's runs are kept)."""
        wf = load_workflow(path)  # WorkflowInvalid (with every error) before anything else
        name = name or wf.name
        if not _NAME.match(name):
            raise InvalidRequest(
                f"{name!r} cannot name a published workflow: use letters, digits, '.', '_' "
                "and '-' (at most 100, starting with a letter or digit); give --name"
            )
        target = self.root / name
        existing = self._get(name)
        if existing is not None and not replace:
            raise Conflict(
                f"a workflow named {name!r} is already published (hash "
                f"{existing.workflow_hash[:12]}, by {existing.published_by} on "
                f"{existing.published}); choose another --name, or add --replace"
            )
        if existing is None and not replace and target.exists() and any(target.iterdir()):
            raise Conflict(
                f"{str(target)!r} exists and is not a published workflow; give another "
                "--name, or move that folder away"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=self.root))
        try:
            _copy_workflow(wf, staging)
            load_workflow(staging)  # the copy is whole
            digest = folder_digest(staging)
            if target.exists():  # a new version over the old: keep its runs and cache
                for keep in _SKIP & {p.name for p in target.iterdir()}:
                    (target / keep).rename(staging / keep)
                shutil.rmtree(target)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        entry = PublishedWorkflow(
            name=name,
            workflow_hash=wf.hash,
            digest=digest,
            directory=target,
            source=str(wf.directory),
            description=description or _description(wf),
            published=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            published_by=by or getpass.getuser(),
        )
        row = {**entry.__dict__, "directory": str(target)}
        with self.engine.begin() as conn:
            conn.execute(published_t.delete().where(published_t.c.name == name))
            conn.execute(published_t.insert().values(**row))
        return entry

    def unpublish(self, name: str) -> PublishedWorkflow:
        """Take ``name`` off the list the service runs; its folder and runs stay."""
        entry = self.get(name)
        with self.engine.begin() as conn:
            conn.execute(published_t.delete().where(published_t.c.name == name))
        return entry

    def list(self) -> list[PublishedWorkflow]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(published_t).order_by(published_t.c.name)).all()
        return [_entry(r) for r in rows]

    def _get(self, name: str) -> PublishedWorkflow | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(published_t).where(published_t.c.name == name)).first()
        return _entry(row) if row is not None else None

    def get(self, name: str) -> PublishedWorkflow:
        entry = self._get(name)
        if entry is None:
            known = ", ".join(e.name for e in self.list()) or "none yet"
            raise NotFound(
                f"No workflow {name!r} is published (published: {known}). An operator "
                "publishes one with 'insitu workflow publish DIR --name NAME'."
            )
        return entry

    def for_directory(self, directory: Path) -> PublishedWorkflow | None:
        """The entry whose folder is ``directory``, if any."""
        where = directory.resolve()
        return next((e for e in self.list() if e.directory.resolve() == where), None)

    def load(self, name: str) -> tuple[PublishedWorkflow, Workflow]:
        """The entry and its workflow, checked unchanged since it was published."""
        entry = self.get(name)
        changed = Conflict(
            f"published workflow {name!r} was changed in {str(entry.directory)!r} after "
            f"{entry.published_by} published it on {entry.published}; the service runs only "
            "what an operator published: publish it again ('insitu workflow publish "
            f"{entry.source} --name {name} --replace')"
        )
        if not (entry.directory / "workflow.yaml").is_file():
            raise changed
        wf = load_workflow(entry.directory)
        if wf.hash != entry.workflow_hash or folder_digest(entry.directory) != entry.digest:
            raise changed
        return entry, wf


def _description(wf: Workflow) -> str:
    return f"from notebook {Path(wf.source_notebook).name}" if wf.source_notebook else ""


def _entry(row: Any) -> PublishedWorkflow:
    return PublishedWorkflow(
        name=row.name,
        workflow_hash=row.workflow_hash,
        digest=row.digest,
        directory=Path(row.directory),
        source=row.source,
        description=row.description,
        published=row.published,
        published_by=row.published_by,
    )

"""The component catalog: components registered in the catalog database, searchable by
text, port name and type, and dependency (``insitu cells register|search|show``).

A component folder (``<name>-<hash8>/component.json`` and its ``task.py``, as
:func:`~insitu.workflows.write_component` writes it) is registered as one row of
``workflow_components`` keyed by its content hash, with one row per port
(``workflow_component_ports``: inputs, outputs, params and secrets, by name and type) and per
pinned distribution (``workflow_component_deps``, by its normalized name). Registering the
same hash again only updates where its folder is. The text search matches words (and word
prefixes) of the name, title, description, source notebook and the cell's code: SQLite's
FTS5 (``porter`` stemming), PostgreSQL's ``to_tsvector('english')`` with its GIN index;
only a SQLite built without FTS5 falls back to ``LIKE`` on each word.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from packaging.utils import canonicalize_name
from sqlalchemy.engine import Connection, Engine

from insitu import db
from insitu.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from insitu.settings import Settings

__all__ = [
    "FTS_INDEX",
    "FTS_TABLE",
    "ComponentCatalog",
    "ComponentEntry",
    "component_deps_t",
    "component_ports_t",
    "components_t",
]

FTS_TABLE = "workflow_components_fts"  # SQLite FTS5 table (migration 0004), not on metadata
FTS_INDEX = "ix_workflow_components_fts"  # PostgreSQL GIN expression index, likewise
_SCHEMA = "insitu.component/1"
_DIRECTIONS = ("input", "output", "param", "secret")
_WORD = re.compile(r"\w+", re.UNICODE)

components_t = sa.Table(
    "workflow_components",
    db.metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("source_notebook", sa.Text, nullable=False),
    sa.Column("cell_id", sa.String(200), nullable=False),
    sa.Column("language", sa.String(40), nullable=False),
    sa.Column("inputs", sa.Text, nullable=False),
    sa.Column("outputs", sa.Text, nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("secrets", sa.Text, nullable=False),
    sa.Column("dependencies", sa.Text, nullable=False),
    sa.Column("base_image", sa.Text, nullable=False),
    sa.Column("previous_version", sa.String(64)),
    sa.Column("directory", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("search_text", sa.Text, nullable=False),
    sa.Column("created", sa.String(40), nullable=False),
    sa.Index("ix_workflow_components_name", "name", "created"),
    sa.Index("ix_workflow_components_cell", "source_notebook", "cell_id"),
    sa.Index("ix_workflow_components_previous", "previous_version"),
)

component_ports_t = sa.Table(
    "workflow_component_ports",
    db.metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("direction", sa.String(8), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Index("ix_workflow_component_ports_name", "name"),
    sa.Index("ix_workflow_component_ports_type", "type"),
)

component_deps_t = sa.Table(
    "workflow_component_deps",
    db.metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("distribution", sa.String(200), primary_key=True),
    sa.Column("version", sa.String(100)),
    sa.Index("ix_workflow_component_deps_distribution", "distribution"),
)


@dataclass(frozen=True)
class ComponentEntry:
    """One registered component: its metadata, the cell's code and where its folder is."""

    hash: str
    name: str
    title: str
    description: str
    source_notebook: str
    cell_id: str
    language: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    params: list[dict[str, Any]]
    secrets: list[dict[str, Any]]
    dependencies: list[dict[str, Any]]
    base_image: str
    previous_version: str | None
    directory: str
    source: str
    created: str
    new: bool = field(default=False, compare=False)

    @property
    def short(self) -> str:
        return self.hash[:8]

    def to_json(self) -> dict[str, Any]:
        doc = {k: v for k, v in self.__dict__.items() if k != "new"}
        return doc

    @classmethod
    def from_row(cls, row: Any) -> ComponentEntry:
        return cls(
            row.hash,
            row.name,
            row.title,
            row.description,
            row.source_notebook,
            row.cell_id,
            row.language,
            json.loads(row.inputs),
            json.loads(row.outputs),
            json.loads(row.params),
            json.loads(row.secrets),
            json.loads(row.dependencies),
            row.base_image,
            row.previous_version,
            row.directory,
            row.source,
            row.created,
        )


def _cell_code(task: str) -> str:
    """The cell's part of a generated task.py (what follows the copied runtime)."""
    from insitu.workflows.component import _runtime_source

    tail = _runtime_source().rstrip()[-200:]
    _, found, rest = task.partition(tail)
    return rest.strip() if found else task


def _component_files(path: Path) -> list[Path]:
    """The component.json files of ``path``: one component folder, one component.json, or
    a folder of component folders."""
    if path.is_file() and path.name == "component.json":
        return [path]
    if (path / "component.json").is_file():
        return [path / "component.json"]
    if path.is_dir():
        found = sorted(path.glob("*/component.json"))
        if found:
            return found
    raise NotFound(
        f"No component at {path}: give a component folder (with component.json), its "
        "component.json, or a folder of them ('insitu cells extract NOTEBOOK --out DIR' "
        "writes one)."
    )


def _read_component(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"Cannot read component {path}: {exc}.") from exc
    if not isinstance(meta, dict) or meta.get("schema") != _SCHEMA:
        got = meta.get("schema") if isinstance(meta, dict) else type(meta).__name__
        raise InvalidRequest(
            f"{path} is not a component of schema {_SCHEMA!r} (got {got!r}); write it "
            "again with 'insitu cells extract NOTEBOOK --out DIR'."
        )
    missing = [k for k in ("name", "hash", "inputs", "outputs") if k not in meta]
    digest = str(meta.get("hash", ""))
    if missing or not re.fullmatch(r"[0-9a-f]{64}", digest):
        what = f"lacks {', '.join(missing)}" if missing else f"has a bad hash {digest!r}"
        raise InvalidRequest(f"Component {path} {what}; extract it again.")
    return meta


def _ports(meta: dict[str, Any]) -> list[dict[str, str]]:
    rows: dict[tuple[str, str], str] = {}
    for direction, key in zip(_DIRECTIONS, ("inputs", "outputs", "params", "secrets"), strict=True):
        for port in meta.get(key) or []:
            rows[(direction, str(port["name"]))] = str(port.get("type") or "any")
    return [{"direction": d, "name": n, "type": t} for (d, n), t in rows.items()]


def _terms(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


class ComponentCatalog:
    """The component catalog in the catalog database at ``uri``."""

    def __init__(self, uri: str) -> None:
        self.engine: Engine = db.engine(uri)
        try:
            db.upgrade(self.engine)
            with self.engine.connect() as conn:
                self.fts = conn.dialect.name == "postgresql" or (
                    conn.dialect.name == "sqlite" and sa.inspect(conn).has_table(FTS_TABLE)
                )
        except BaseException:
            db.release(self.engine)
            raise

    @classmethod
    def from_settings(cls, settings: Settings) -> ComponentCatalog:
        return cls(settings.catalog_uri)

    def close(self) -> None:
        db.release(self.engine)

    def __enter__(self) -> ComponentCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- registering ----------------------------------------------------------------------

    def register(self, path: str | Path) -> list[ComponentEntry]:
        """Register the component(s) at ``path`` (see :func:`_component_files`); each
        entry's ``new`` says whether it was not in the catalog before."""
        files = _component_files(Path(path).expanduser())
        metas = [(f, _read_component(f)) for f in files]  # every one read before any write
        done = []
        with self.engine.begin() as conn:
            for f, meta in metas:
                done.append(self._register(conn, f.parent.resolve(), meta))
        return done

    def _register(self, conn: Connection, folder: Path, meta: dict[str, Any]) -> ComponentEntry:
        digest = meta["hash"]
        old = conn.execute(sa.select(components_t).where(components_t.c.hash == digest)).first()
        if old is not None:
            if old.directory != str(folder):
                conn.execute(
                    components_t.update()
                    .where(components_t.c.hash == digest)
                    .values(directory=str(folder))
                )
            return ComponentEntry.from_row(old)
        task = folder / "task.py"
        source = _cell_code(task.read_text(encoding="utf-8")) if task.is_file() else ""
        text_fields = {
            "name": str(meta["name"]),
            "title": str(meta.get("title") or meta["name"]),
            "description": str(meta.get("description") or ""),
            "source_notebook": str(meta.get("source_notebook") or ""),
            # the runtime's own lines (parameters read, outputs written) are not the cell's
            "source": "\n".join(line for line in source.splitlines() if "_insitu" not in line),
        }
        row = {
            "hash": digest,
            **text_fields,
            "cell_id": str(meta.get("cell_id") or ""),
            "language": str(meta.get("language") or "python"),
            **{
                k: json.dumps(meta.get(k) or [])
                for k in ("inputs", "outputs", "params", "secrets", "dependencies")
            },
            "base_image": str(meta.get("base_image") or ""),
            "previous_version": meta.get("previous_version"),
            "directory": str(folder),
            "source": source,
            # words only: PostgreSQL's parser would read 'df.mean' as one host name
            "search_text": " ".join(_WORD.findall("\n".join(text_fields.values()))),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        conn.execute(components_t.insert().values(**row))
        ports = _ports(meta)
        if ports:
            conn.execute(component_ports_t.insert(), [{"hash": digest, **p} for p in ports])
        deps = {
            canonicalize_name(str(d["distribution"])): d.get("version")
            for d in meta.get("dependencies") or []
            if d.get("distribution")
        }
        if deps:
            conn.execute(
                component_deps_t.insert(),
                [{"hash": digest, "distribution": k, "version": v} for k, v in deps.items()],
            )
        if self.fts and conn.dialect.name == "sqlite":
            conn.execute(
                sa.text(
                    f"INSERT INTO {FTS_TABLE} (hash, name, title, description, "
                    "source_notebook, source) VALUES (:hash, :name, :title, :description, "
                    ":source_notebook, :source)"
                ),
                {"hash": digest, **text_fields},
            )
        found = conn.execute(sa.select(components_t).where(components_t.c.hash == digest)).one()
        entry = ComponentEntry.from_row(found)
        return ComponentEntry(**{**entry.__dict__, "new": True})

    # -- reading --------------------------------------------------------------------------

    def search(
        self,
        text: str | None = None,
        *,
        port: str | None = None,
        type: str | None = None,  # the port's type, named as the CLI option
        uses: str | None = None,
        limit: int = 50,
    ) -> list[ComponentEntry]:
        """Components matching every criterion given: ``text`` (every word, or a word's
        beginning, in the name, title, description, notebook or code), a port named
        ``port`` and/or of type ``type`` (one port with both when both are given), a
        dependency on distribution ``uses``. The best text matches first, else newest."""
        if limit < 1:
            raise InvalidRequest(f"limit must be at least 1, got {limit}.")
        c = components_t.c
        query = sa.select(components_t)
        order: list[Any] = []
        terms = _terms(text or "")
        if text is not None and text.strip() and not terms:
            raise InvalidRequest(
                f"Search text {text!r} has no word to look for; give letters or digits."
            )
        if terms:
            query, order = self._text_filter(query, terms)
        if port or type:
            p = component_ports_t.c
            cond = [p.hash == c.hash]
            if port:
                cond.append(p.name == port)
            if type:
                cond.append(sa.func.lower(p.type) == type.lower())
            query = query.where(sa.exists().where(*cond))
        if uses:
            d = component_deps_t.c
            query = query.where(
                sa.exists().where(d.hash == c.hash, d.distribution == canonicalize_name(uses))
            )
        query = query.order_by(*order, c.created.desc(), c.name, c.hash).limit(limit)
        with self.engine.connect() as conn:
            return [ComponentEntry.from_row(r) for r in conn.execute(query)]

    def _text_filter(self, query: Any, terms: list[str]) -> tuple[Any, list[Any]]:
        c = components_t.c
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            vector = sa.func.to_tsvector(sa.literal_column("'english'"), c.search_text)
            ts = sa.func.to_tsquery(
                sa.literal_column("'english'"), " & ".join(f"{t}:*" for t in terms)
            )
            return query.where(vector.op("@@")(ts)), [sa.func.ts_rank(vector, ts).desc()]
        if self.fts:
            match = " AND ".join(f'"{t}"*' for t in terms)
            hits = sa.text(
                f"SELECT hash, bm25({FTS_TABLE}) AS rank FROM {FTS_TABLE} "
                f"WHERE {FTS_TABLE} MATCH :match"
            ).columns(hash=sa.String, rank=sa.Float)
            sub = hits.bindparams(match=match).subquery("fts")
            query = query.join(sub, sub.c.hash == c.hash)
            return query, [sub.c.rank]  # bm25: smaller is better
        for t in terms:  # no FTS5: every word somewhere in the text
            query = query.where(sa.func.lower(c.search_text).contains(t, autoescape=True))
        return query, []

    def get(self, ref: str) -> ComponentEntry:
        """The component of hash ``ref`` (or a unique beginning of it, 4 characters or more)."""
        ref = ref.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{4,64}", ref):
            raise InvalidRequest(
                f"{ref!r} is not a component hash; give at least its first 4 hex digits "
                "('insitu cells search' lists them)."
            )
        c = components_t.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(components_t).where(c.hash.startswith(ref)).limit(2)
            ).all()
        if not rows:
            raise NotFound(
                f"No component {ref!r} in the catalog; 'insitu cells search' lists them."
            )
        if len(rows) > 1:
            raise InvalidRequest(f"Several components start with {ref!r}; give more of the hash.")
        return ComponentEntry.from_row(rows[0])

    def versions(self, entry: ComponentEntry) -> list[ComponentEntry]:
        """Every registered version of ``entry``'s cell (same notebook and cell, or linked
        by ``previous_version``), oldest first (by that chain, then registration),
        ``entry`` included."""
        c = components_t.c
        with self.engine.connect() as conn:
            same = conn.execute(
                sa.select(components_t).where(
                    c.source_notebook == entry.source_notebook, c.cell_id == entry.cell_id
                )
            ).all()
            found = {r.hash: ComponentEntry.from_row(r) for r in same}
            for link in self._chain(conn, entry):
                found.setdefault(link.hash, link)

        def depth(e: ComponentEntry) -> int:  # versions before it in the catalog
            n, prev, seen = 0, e.previous_version, {e.hash}
            while prev is not None and prev in found and prev not in seen:
                n, seen, prev = n + 1, seen | {prev}, found[prev].previous_version
            return n

        return sorted(found.values(), key=lambda e: (depth(e), e.created, e.hash))

    def _chain(self, conn: Connection, entry: ComponentEntry) -> Iterator[ComponentEntry]:
        c = components_t.c
        seen = {entry.hash}
        prev = entry.previous_version
        while prev and prev not in seen:
            seen.add(prev)
            row = conn.execute(sa.select(components_t).where(c.hash == prev)).first()
            if row is None:
                return
            found = ComponentEntry.from_row(row)
            yield found
            prev = found.previous_version
        newer: Sequence[Any] = conn.execute(
            sa.select(components_t).where(c.previous_version == entry.hash)
        ).all()
        for r in newer:
            if r.hash not in seen:
                yield ComponentEntry.from_row(r)

    def known(self, hashes: Sequence[str]) -> set[str]:
        """Which of ``hashes`` are registered."""
        if not hashes:
            return set()
        c = components_t.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(c.hash).where(c.hash.in_(sorted(set(hashes)))))
            return {r.hash for r in rows}

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(components_t)).scalar_one()
            )

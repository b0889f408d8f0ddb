"""The catalog's free-text index and the search index's change tracking (issue 17):
``datasets.written`` is the store generation that wrote a row (indexed: the search index
re-reads only rows written since it was built); ``datasets.search_text`` holds each dataset's
words (its id, variable names, long and standard names, string and number attributes,
lowercase, one blank between words), filled here for the datasets already stored; an
FTS5 table ``datasets_fts`` over it, kept in step by triggers, on SQLite (left out where
SQLite was built without FTS5: the search then falls back to ``LIKE``), a GIN index on
``to_tsvector('simple', search_text)`` on PostgreSQL.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TEXT_TABLE = "datasets_fts"
TEXT_INDEX = "ix_datasets_fts"
_BATCH = 5000

# The catalog's DatasetRecord.search_text() as of this revision (a migration keeps its own
# copy: the catalog's may change later, and the database layer does not import it).
_WORD = re.compile(r"[^\W_]+")


def _search_text(dataset_id: str, variables: list[dict[str, Any]], attrs: dict[str, Any]) -> str:
    parts = [dataset_id]
    for v in variables:
        parts.append(v["name"])
        for key in ("long_name", "standard_name"):
            value = (v.get("attrs") or {}).get(key)
            if isinstance(value, str):
                parts.append(value)
    parts.extend(str(v) for v in attrs.values() if isinstance(v, str | int | float))
    return " ".join(_WORD.findall(" ".join(parts).lower()))


def upgrade() -> None:
    op.add_column("datasets", sa.Column("search_text", sa.Text, nullable=False, server_default=""))
    op.add_column(
        "datasets", sa.Column("written", sa.BigInteger, nullable=False, server_default="0")
    )
    op.create_index("ix_datasets_written", "datasets", ["written", "id"])
    bind = op.get_bind()
    datasets = sa.table(
        "datasets",
        sa.column("id", sa.Integer),
        sa.column("dataset_id", sa.Text),
        sa.column("variables", sa.Text),
        sa.column("attrs", sa.Text),
        sa.column("search_text", sa.Text),
    )
    c = datasets.c
    last = -1
    while True:
        rows = bind.execute(
            sa.select(c.id, c.dataset_id, c.variables, c.attrs)
            .where(c.id > last)
            .order_by(c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        last = rows[-1][0]
        bind.execute(
            datasets.update().where(c.id == sa.bindparam("row")),
            [
                {"row": r[0], "search_text": _search_text(r[1], json.loads(r[2]), json.loads(r[3]))}
                for r in rows
            ],
        )
    if bind.dialect.name == "postgresql":
        op.execute(
            f"CREATE INDEX {TEXT_INDEX} ON datasets USING gin (to_tsvector('simple', search_text))"
        )
    elif bind.dialect.name == "sqlite":
        options = {r[0] for r in bind.exec_driver_sql("PRAGMA compile_options")}
        if "ENABLE_FTS5" in options:  # else the text search falls back to LIKE
            op.execute(
                f"CREATE VIRTUAL TABLE {TEXT_TABLE} USING fts5(search_text, "
                "content='datasets', content_rowid='id', tokenize='unicode61')"
            )
            new = f"INSERT INTO {TEXT_TABLE}(rowid, search_text) VALUES (new.id, new.search_text);"
            old = (
                f"INSERT INTO {TEXT_TABLE}({TEXT_TABLE}, rowid, search_text) "
                "VALUES ('delete', old.id, old.search_text);"
            )
            op.execute(f"CREATE TRIGGER {TEXT_TABLE}_ai AFTER INSERT ON datasets BEGIN {new} END")
            op.execute(f"CREATE TRIGGER {TEXT_TABLE}_ad AFTER DELETE ON datasets BEGIN {old} END")
            op.execute(
                f"CREATE TRIGGER {TEXT_TABLE}_au AFTER UPDATE OF search_text ON datasets "
                f"BEGIN {old} {new} END"
            )
            op.execute(f"INSERT INTO {TEXT_TABLE}({TEXT_TABLE}) VALUES ('rebuild')")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for suffix in ("_ai", "_ad", "_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {TEXT_TABLE}{suffix}")
        op.execute(f"DROP TABLE IF EXISTS {TEXT_TABLE}")
    else:
        op.execute(f"DROP INDEX IF EXISTS {TEXT_INDEX}")
    op.drop_index("ix_datasets_written", "datasets")
    op.drop_column("datasets", "written")
    op.drop_column("datasets", "search_text")

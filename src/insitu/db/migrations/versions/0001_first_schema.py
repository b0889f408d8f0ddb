"""The first schema: the catalog (collections, files, datasets, meta), access tokens with
their hub-user grants, and data-service jobs.

Databases made before migrations existed hold some of these tables already (each store
created its own on first use); this revision creates only the missing ones, and adds the
``expires`` and ``last_used`` columns a token table of the first release lacks, so such a
database keeps its data.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _tables() -> list[sa.Table]:
    m = sa.MetaData()
    return [
        sa.Table(
            "collections",
            m,
            sa.Column("name", sa.String(200), primary_key=True),
            sa.Column("root", sa.Text, nullable=False),
            sa.Column("template", sa.String(200), nullable=False),
            sa.Column("public", sa.Boolean, nullable=False),
        ),
        sa.Table(
            "files",
            m,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("collection", sa.String(200), nullable=False),
            sa.Column("path", sa.Text, nullable=False),
            sa.Column("size", sa.BigInteger, nullable=False),
            sa.Column("mtime_ns", sa.BigInteger, nullable=False),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("dataset_id", sa.Text),
            sa.Column("master_id", sa.Text),
            sa.Column("version", sa.String(100)),
            sa.Column("facets", sa.Text),
            sa.Column("data_model", sa.String(40)),
            sa.Column("dims", sa.Text),
            sa.Column("variables", sa.Text),
            sa.Column("global_attrs", sa.Text),
            sa.Column("time_var", sa.String(200)),
            sa.Column("time_units", sa.String(200)),
            sa.Column("calendar", sa.String(40)),
            sa.Column("time_start", sa.String(40)),
            sa.Column("time_end", sa.String(40)),
            sa.Column("tkey_start", sa.BigInteger),
            sa.Column("tkey_end", sa.BigInteger),
            sa.Column("n_times", sa.Integer, nullable=False),
            sa.Column("time_values", sa.LargeBinary),
            sa.Column("bbox", sa.Text),
            sa.UniqueConstraint("collection", "path", name="uq_files_path"),
            sa.Index("ix_files_dataset", "collection", "dataset_id"),
        ),
        sa.Table(
            "datasets",
            m,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("collection", sa.String(200), nullable=False),
            sa.Column("dataset_id", sa.Text, nullable=False),
            sa.Column("master_id", sa.Text, nullable=False),
            sa.Column("version", sa.String(100), nullable=False),
            sa.Column("version_key", sa.String(200), nullable=False),
            sa.Column("latest", sa.Boolean, nullable=False),
            sa.Column("facets", sa.Text, nullable=False),
            sa.Column("n_files", sa.Integer, nullable=False),
            sa.Column("size", sa.BigInteger, nullable=False),
            sa.Column("variables", sa.Text, nullable=False),
            sa.Column("attrs", sa.Text, nullable=False),
            sa.Column("calendar", sa.String(40)),
            sa.Column("time_start", sa.String(40)),
            sa.Column("time_end", sa.String(40)),
            sa.Column("tkey_start", sa.BigInteger),
            sa.Column("tkey_end", sa.BigInteger),
            sa.Column("bbox", sa.Text),
            sa.UniqueConstraint("collection", "dataset_id", name="uq_datasets_id"),
            sa.Index("ix_datasets_master", "collection", "master_id"),
            sa.Index("ix_datasets_id", "dataset_id"),
        ),
        sa.Table(
            "meta",
            m,
            sa.Column("key", sa.String(100), primary_key=True),
            sa.Column("value", sa.BigInteger, nullable=False),
        ),
        sa.Table(
            "access_tokens",
            m,
            sa.Column("id", sa.String(16), primary_key=True),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("digest", sa.String(64), nullable=False, unique=True),
            sa.Column("scopes", sa.Text, nullable=False),
            sa.Column("collections", sa.Text, nullable=False),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.Column("revoked", sa.DateTime(timezone=True)),
            sa.Column("expires", sa.DateTime(timezone=True)),
            sa.Column("last_used", sa.DateTime(timezone=True)),
        ),
        sa.Table(
            "access_user_grants",
            m,
            sa.Column("user", sa.String(200), primary_key=True),
            sa.Column("collection", sa.String(200), primary_key=True),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        ),
        sa.Table(
            "access_jobs",
            m,
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("status", sa.String(16), nullable=False, index=True),
            sa.Column("token_id", sa.String(16), index=True),
            sa.Column("operation", sa.String(64), nullable=False),
            sa.Column("datasets", sa.Text, nullable=False),
            sa.Column("collections", sa.Text, nullable=False),
            sa.Column("variable", sa.String(200)),
            sa.Column("params", sa.Text, nullable=False),
            sa.Column("time", sa.String(100)),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.Column("started", sa.DateTime(timezone=True)),
            sa.Column("finished", sa.DateTime(timezone=True)),
            sa.Column("server", sa.String(300), nullable=False),
            sa.Column("heartbeat", sa.DateTime(timezone=True)),
            sa.Column("cached", sa.Boolean, nullable=False),
            sa.Column("result_key", sa.String(64)),
            sa.Column("result_path", sa.Text),
            sa.Column("provenance", sa.Text),
            sa.Column("error_type", sa.String(100)),
            sa.Column("error", sa.Text),
        ),
    ]


# Columns added to a table after the first release made it (all nullable).
_ADDED = {"access_tokens": ("expires", "last_used")}


def upgrade() -> None:
    conn = op.get_bind()
    inspector = sa.inspect(conn)
    tables = _tables()
    for table in tables:
        if not inspector.has_table(table.name):
            table.create(conn)  # with its indexes and constraints
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for name in _ADDED.get(table.name, ()):
            if name not in have:
                op.add_column(table.name, sa.Column(name, table.c[name].type))
    # The catalog's generation, bumped by every write (readers cache by it).
    meta = next(t for t in tables if t.name == "meta")
    if conn.execute(sa.select(meta.c.key).where(meta.c.key == "generation")).first() is None:
        conn.execute(meta.insert().values(key="generation", value=0))


def downgrade() -> None:
    for table in reversed(_tables()):
        op.drop_table(table.name)

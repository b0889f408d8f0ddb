"""The component catalog (issue 16): ``workflow_components`` (one row per component
version, its interface and dependencies as JSON), ``workflow_component_ports`` and
``workflow_component_deps`` (what the port and dependency searches answer from), and a
full-text index over name, title, description, notebook and code: an FTS5 table
``workflow_components_fts`` on SQLite (left out where SQLite was built without FTS5: the
text search then falls back to LIKE), a GIN index on ``to_tsvector`` on PostgreSQL.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

FTS_TABLE = "workflow_components_fts"
FTS_INDEX = "ix_workflow_components_fts"


def upgrade() -> None:
    op.create_table(
        "workflow_components",
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
    )
    op.create_index("ix_workflow_components_name", "workflow_components", ["name", "created"])
    op.create_index(
        "ix_workflow_components_cell", "workflow_components", ["source_notebook", "cell_id"]
    )
    op.create_index("ix_workflow_components_previous", "workflow_components", ["previous_version"])
    op.create_table(
        "workflow_component_ports",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("direction", sa.String(8), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("type", sa.String(200), nullable=False),
    )
    op.create_index("ix_workflow_component_ports_name", "workflow_component_ports", ["name"])
    op.create_index("ix_workflow_component_ports_type", "workflow_component_ports", ["type"])
    op.create_table(
        "workflow_component_deps",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("distribution", sa.String(200), primary_key=True),
        sa.Column("version", sa.String(100)),
    )
    op.create_index(
        "ix_workflow_component_deps_distribution", "workflow_component_deps", ["distribution"]
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            f"CREATE INDEX {FTS_INDEX} ON workflow_components "
            "USING gin (to_tsvector('english', search_text))"
        )
    elif bind.dialect.name == "sqlite":
        options = {r[0] for r in bind.exec_driver_sql("PRAGMA compile_options")}
        if "ENABLE_FTS5" in options:  # else the text search falls back to LIKE
            op.execute(
                f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(hash UNINDEXED, name, title, "
                "description, source_notebook, source, tokenize='porter unicode61')"
            )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute(f"DROP TABLE IF EXISTS {FTS_TABLE}")
    op.drop_table("workflow_component_deps")
    op.drop_table("workflow_component_ports")
    op.drop_table("workflow_components")

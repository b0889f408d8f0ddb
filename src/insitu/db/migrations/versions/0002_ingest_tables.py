"""Ingest's tables: raw items and their states (the per-pipeline ledger files before), shot
records with their signals, summary scalars and configuration components (what the shot
search answers from), calibration definitions and configuration snapshots.

A catalog of revision 0001 gets the new, empty tables; a pipeline's ledger file is taken
into ``ingest_items`` the first time the pipeline opens (insitu.ingest).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _tables() -> list[sa.Table]:
    m = sa.MetaData()
    return [
        sa.Table(
            "ingest_items",
            m,
            sa.Column("pipeline", sa.String(200), primary_key=True),
            sa.Column("sha256", sa.String(64), primary_key=True),
            sa.Column("name", sa.Text, nullable=False),
            sa.Column("state", sa.String(32), nullable=False),
            sa.Column("shot", sa.String(200)),
            sa.Column("code", sa.String(40)),
            sa.Column("product", sa.String(64)),
            sa.Column("version", sa.Integer),
            sa.Column("updated", sa.String(40), nullable=False),
            sa.Index("ix_ingest_items_state", "pipeline", "state", "updated"),
            sa.Index("ix_ingest_items_shot", "pipeline", "shot"),
        ),
        sa.Table(
            "ingest_shots",
            m,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("pipeline", sa.String(200), nullable=False),
            sa.Column("collection", sa.String(200), nullable=False),
            sa.Column("shot", sa.String(200), nullable=False),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("latest", sa.Boolean, nullable=False),
            sa.Column("state", sa.String(20), nullable=False),
            sa.Column("product_id", sa.String(64), nullable=False),
            sa.Column("raw_sha256", sa.String(64), nullable=False),
            sa.Column("campaign", sa.String(200)),
            sa.Column("operator", sa.String(200)),
            sa.Column("acquired_at", sa.String(40), nullable=False),
            sa.Column("acquired_us", sa.BigInteger, nullable=False),
            sa.Column("ingested_at", sa.String(40), nullable=False),
            sa.Column("configuration_id", sa.String(64)),
            sa.Column("calibrations", sa.Text, nullable=False),
            sa.Column("signals", sa.Text, nullable=False),
            sa.Column("components", sa.Text, nullable=False),
            sa.Column("summary", sa.Text, nullable=False),
            sa.Column("pipeline_version", sa.String(40), nullable=False),
            sa.Column("path", sa.Text, nullable=False),
            sa.UniqueConstraint("pipeline", "shot", "version", name="uq_ingest_shots_version"),
            sa.Index("ix_ingest_shots_time", "latest", "acquired_us"),
            sa.Index("ix_ingest_shots_campaign", "campaign", "latest", "acquired_us"),
            sa.Index("ix_ingest_shots_shot", "shot"),
        ),
        sa.Table(
            "ingest_shot_signals",
            m,
            sa.Column("shot_row", sa.Integer, primary_key=True),
            sa.Column("signal", sa.String(200), primary_key=True),
            sa.Column("min", sa.Float),
            sa.Column("max", sa.Float),
            sa.Column("mean", sa.Float),
            sa.Index("ix_ingest_shot_signals_max", "signal", "max"),
            sa.Index("ix_ingest_shot_signals_min", "signal", "min"),
            sa.Index("ix_ingest_shot_signals_mean", "signal", "mean"),
        ),
        sa.Table(
            "ingest_shot_components",
            m,
            sa.Column("shot_row", sa.Integer, primary_key=True),
            sa.Column("component", sa.String(200), primary_key=True),
            sa.Index("ix_ingest_shot_components", "component", "shot_row"),
        ),
        sa.Table(
            "ingest_calibrations",
            m,
            sa.Column("id", sa.String(200), primary_key=True),
            sa.Column("version", sa.Integer, primary_key=True),
            sa.Column("signal", sa.String(200), nullable=False, index=True),
            sa.Column("kind", sa.String(20), nullable=False),
            sa.Column("valid_from", sa.String(40), nullable=False),
            sa.Column("valid_to", sa.String(40)),
            sa.Column("supersedes", sa.Integer),
            sa.Column("document", sa.Text, nullable=False),
            sa.Column("sha256", sa.String(64), nullable=False),
            sa.Column("author", sa.String(200)),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.Column("source", sa.Text),
        ),
        sa.Table(
            "ingest_configurations",
            m,
            sa.Column("row", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("configuration_id", sa.String(64), nullable=False, index=True),
            sa.Column("testbed", sa.String(200), nullable=False),
            sa.Column("valid_from", sa.String(40)),
            sa.Column("valid_to", sa.String(40)),
            sa.Column("shot_first", sa.BigInteger),
            sa.Column("shot_last", sa.BigInteger),
            sa.Column("document", sa.Text, nullable=False),
            sa.Column("author", sa.String(200)),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.Column("source", sa.Text),
        ),
    ]


def upgrade() -> None:
    conn = op.get_bind()
    inspector = sa.inspect(conn)
    for table in _tables():
        if not inspector.has_table(table.name):
            table.create(conn)  # with its indexes and constraints


def downgrade() -> None:
    for table in reversed(_tables()):
        op.drop_table(table.name)

"""Published workflows (issue 16): ``workflow_published``, one row per workflow an operator
published for the data service to run as a server-side job: its name, the workflow's hash,
a digest of the published folder's files, where that folder is and who published it when.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workflow_published",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("workflow_hash", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("directory", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("published", sa.String(40), nullable=False),
        sa.Column("published_by", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("workflow_published")

"""A random id for each catalog database (issue 17): ``meta.store_id``, what the search
index saved in the data directory is filed under (with where the database is), so that
no other database -- a new one made at the same path, or a copy -- is served it.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_meta = sa.table("meta", sa.column("key", sa.String), sa.column("value", sa.BigInteger))


def upgrade() -> None:
    bind = op.get_bind()
    if bind.execute(sa.select(_meta.c.key).where(_meta.c.key == "store_id")).first() is None:
        bind.execute(_meta.insert().values(key="store_id", value=secrets.randbits(63)))


def downgrade() -> None:
    op.execute(_meta.delete().where(_meta.c.key == "store_id"))

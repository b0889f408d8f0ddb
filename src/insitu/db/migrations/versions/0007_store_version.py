"""What the search index saved in the data directory is filed under (issue 17), so that
no other database, or state of one, is served it: ``meta.store_id``, a random id for each
catalog database (with where the database is: not a new one made at the same path, not a
copy), and ``meta.stamp``, drawn again by every write that bumps the generation (not a
database restored in place from a backup and written again up to the same generation).

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
_KEYS = ("store_id", "stamp")


def upgrade() -> None:
    bind = op.get_bind()
    for key in _KEYS:
        if bind.execute(sa.select(_meta.c.key).where(_meta.c.key == key)).first() is None:
            bind.execute(_meta.insert().values(key=key, value=secrets.randbits(63)))


def downgrade() -> None:
    op.execute(_meta.delete().where(_meta.c.key.in_(_KEYS)))

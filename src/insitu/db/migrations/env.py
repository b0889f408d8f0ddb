"""Alembic's environment: the migrations run on the connection :func:`insitu.db.upgrade`
passes, inside its transaction (which holds the upgrade lock); no alembic.ini is read."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "insitu upgrades its database itself, when a command opens it "
        "(insitu.db.upgrade): run 'insitu catalog list', not 'alembic upgrade'."
    )
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()

"""Alembic migrations of insitu's database, run by :func:`insitu.db.upgrade`.

A new revision goes in ``versions/`` (write it by hand or with ``alembic revision``),
names the previous one as ``down_revision``, and :data:`insitu.db.HEAD` names it.
``tests/integration/test_migrations.py`` fails while the tables the stores define and
the newest revision differ.
"""

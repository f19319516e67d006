"""Alembic's entry point for the store: run on the connection :func:`upgrade` passes in.

``abflow.store.migrations.upgrade`` opens the write transaction and takes the lock; the
revisions run inside that transaction (Alembic joins it), so an upgrade is all or nothing.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

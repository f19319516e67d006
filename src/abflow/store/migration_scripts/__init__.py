"""Alembic's script directory for the event store: ``versions/`` holds one file per revision.

Revisions are numbered ``0001``, ``0002``…: the number is the schema version that
``abflow db status`` shows. Run them with :func:`abflow.store.migrations.upgrade`.
"""

"""Events, experiments and phases, audit log, API tokens.

Creates the tables with ``checkfirst``, so it also adopts a database whose tables were
created directly from the metadata. Because it reads the current table definitions, a later
revision that adds a column must check that the column is missing first
(:func:`abflow.store.migrations.add_column_if_missing`): a fresh database gets it from here.
"""

from __future__ import annotations

from alembic import op

from abflow.store import schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    tables = [
        schema.experiment_versions,
        schema.phases,
        schema.exposures,
        schema.predictions,
        schema.outcomes,
        schema.audit_log,
        schema.api_tokens,
    ]
    schema.metadata.create_all(op.get_bind(), tables=tables, checkfirst=True)


def downgrade() -> None:
    msg = "the store's schema only moves forward"
    raise NotImplementedError(msg)
